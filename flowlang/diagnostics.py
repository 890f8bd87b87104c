"""Diagnostics are data: a stable code, a severity, a place, related places, a help line.

Every stage collects them; the CLI renders them in one place (see `flowlang.report`).
"""
from __future__ import annotations

import enum

import attrs

from flowlang.source import Span


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class CodeInfo:
    code: str
    severity: Severity
    title: str


_E, _W = Severity.ERROR, Severity.WARNING

#: Every code flowlang can emit, its default severity and a one-line title
#: (DESIGN §5). `docs/diagnostics.md` explains each one at length.
CODES: dict[str, CodeInfo] = {
    info.code: info
    for info in (
        CodeInfo("FL001", _W, "unused suppression"),
        CodeInfo("FL100", _E, "syntax error"),
        CodeInfo("FL101", _E, "invalid literal"),
        CodeInfo("FL201", _E, "unknown action"),
        CodeInfo("FL202", _E, "unknown setting"),
        CodeInfo("FL203", _E, "duplicate name"),
        CodeInfo("FL204", _E, "undefined reference"),
        CodeInfo("FL205", _E, "unknown field"),
        CodeInfo("FL206", _E, "unknown event"),
        CodeInfo("FL301", _E, "missing required setting"),
        CodeInfo("FL302", _E, "setting value of the wrong type"),
        CodeInfo("FL303", _E, "value out of range"),
        CodeInfo("FL304", _E, "flow setting missing for a step"),
        CodeInfo("FL305", _E, "template syntax error"),
        CodeInfo("FL306", _E, "automatic e-mail without authorization"),
        CodeInfo("FL307", _E, "action not available for this participant type"),
        CodeInfo("FL401", _W, "unreachable step"),
        CodeInfo("FL402", _E, "loop without a wait"),
        CodeInfo("FL403", _W, "shadowed split branch"),
        CodeInfo("FL404", _E, "behaviour condition before the message is sent"),
        CodeInfo("FL405", _W, "`wait until` earlier than a previous one"),
        CodeInfo("FL406", _E, "automatic move out of a final stage or backwards"),
        CodeInfo("FL407", _W, "flows hand participants to each other in a cycle"),
        CodeInfo("FL501", _E, "conflicting actions with no wait between them"),
        CodeInfo("FL502", _W, "duplicate action on one path"),
        CodeInfo("FL503", _W, "flow action duplicates its form's or link's action"),
        CodeInfo("FL504", _W, "flow action contradicts its form's or link's action"),
        CodeInfo("FL601", _W, "SMS longer than one segment"),
        CodeInfo("FL602", _W, "SMS with characters outside GSM-7"),
    )
}


@attrs.frozen
class Related:
    """A second place a diagnostic involves (the earlier duplicate, the label)."""

    message: str
    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def at(cls, span: Span, message: str) -> Related:
        return cls(message, span.file, span.line, span.column, span.end_line, span.end_column)


@attrs.frozen
class Diagnostic:
    code: str
    severity: Severity
    message: str
    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    related: tuple[Related, ...] = ()
    help: str | None = None

    @classmethod
    def at(cls, code: str, span: Span, message: str, *, help: str | None = None,
           related: tuple[Related, ...] = (), severity: Severity | None = None) -> Diagnostic:
        """A diagnostic of `code` at `span`, with the code's default severity."""
        return cls(code, severity or CODES[code].severity, message, span.file, span.line,
                   span.column, span.end_line, span.end_column, tuple(related), help)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple:
        return (self.file, self.line, self.column, self.code)

    def to_json(self) -> dict:
        data = attrs.asdict(self, recurse=True)
        data["severity"] = self.severity.value
        return data
