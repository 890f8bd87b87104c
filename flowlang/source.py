"""Source files and spans: where a node or a diagnostic sits in the text."""
from __future__ import annotations

from typing import NamedTuple

import attrs


class Span(NamedTuple):
    """A region of one file. Lines and columns are 1-based; `end_column` is the
    column just past the last character, as Lark reports it; `start`/`end` are
    character offsets. A named tuple rather than an attrs class: the parser makes
    one per token, and a tuple is built in C."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0
    end: int = 0

    def to(self, other: Span) -> Span:
        """The span from the start of `self` to the end of `other`."""
        return Span(self.file, self.line, self.column, other.end_line, other.end_column,
                    self.start, other.end)

    @property
    def lines(self) -> range:
        return range(self.line, self.end_line + 1)


@attrs.define(eq=False)
class SourceFile:
    """The text of one `.flow` file, with cheap access to its lines for messages."""

    path: str
    text: str
    _lines: list[str] | None = attrs.field(default=None, init=False, repr=False)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return self._lines

    def line(self, number: int) -> str:
        """The text of line `number` (1-based), or '' past the end."""
        lines = self.lines
        return lines[number - 1] if 0 < number <= len(lines) else ""
