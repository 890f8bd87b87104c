"""Parse flowlang text into an AST, reporting every independent syntax error once.

The fast path is one LALR parse of the whole file with the builder as an inline
transformer. When it fails, the file is split into its top-level declarations and
each one is parsed alone; inside a declaration, a broken statement is blanked out
(keeping the braces that belong to the blocks around it) and the declaration is
parsed again, so one run finds each independent error and none of their echoes.
"""
from __future__ import annotations

import functools
import re
import threading

import attrs
from lark import Lark, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from flowlang import nodes as n
from flowlang.diagnostics import Diagnostic
from flowlang.resources import grammar_file
from flowlang.source import SourceFile, Span
from flowlang.syntax import messages, scan
from flowlang.syntax.builder import BuildContext, Builder

#: Recovery gives up on a declaration after this many errors in it.
MAX_ERRORS_PER_DECLARATION = 25

_LOCK = threading.Lock()


@attrs.frozen
class ParseResult:
    file: n.File
    diagnostics: tuple[Diagnostic, ...]
    #: Lines of declarations that had syntax errors (later stages skip them).
    broken: tuple[range, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


class _Parser:
    def __init__(self):
        self.builder = Builder()
        self.lark = Lark(
            grammar_file().read_text(encoding="utf-8"),
            parser="lalr",
            lexer="contextual",
            transformer=self.builder,
            lexer_callbacks={"COMMENT": self.builder.collect_comment,
                             "_SEP": self.builder.collect_separator},
            maybe_placeholders=False,
        )
        self.literals = {t.name: t.pattern.value for t in self.lark.terminals
                         if isinstance(t.pattern, PatternStr)}
        self.bare = None

    def run(self, text: str, ctx: BuildContext) -> tuple:
        self.builder.ctx = ctx
        return self.lark.parse(text)


@functools.cache
def _parser() -> _Parser:
    return _Parser()


def bare_lark() -> Lark:
    """The same grammar with no builder: Lark alone, for benchmarks."""
    return Lark(grammar_file().read_text(encoding="utf-8"), parser="lalr", lexer="contextual")


def parse(source: SourceFile) -> ParseResult:
    return parse_text(source.text, source.path)


def parse_text(text: str, path: str = "<string>") -> ParseResult:
    if "\r" in text:  # old Mac line ends: same length, so positions stay right
        text = re.sub(r"\r(?!\n)", "\n", text)
    parser = _parser()
    with _LOCK:
        ctx = BuildContext(path)
        try:
            declarations = parser.run(text, ctx)
        except UnexpectedInput:
            return _recover(parser, text, path)
        return ParseResult(_file(path, declarations, ctx), tuple(ctx.diagnostics))


def _file(path: str, declarations, ctx: BuildContext) -> n.File:
    comments = tuple(c for _, c in sorted(ctx.comments.items()))
    lines = 1 + (declarations[-1].span.end_line if declarations else 0)
    return n.File(path, tuple(declarations), comments,
                  span=Span(path, 1, 1, max(lines, 1), 1))


def _recover(parser: _Parser, text: str, path: str) -> ParseResult:
    lines = text.split("\n")
    starts = scan.declaration_starts(text)
    bounds = sorted({0, *starts, len(lines)})
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    declarations: list = []
    diagnostics: list[Diagnostic] = []
    comments: dict = {}
    broken: list[range] = []
    for a, b in zip(bounds, bounds[1:]):
        chunk = "\n".join(lines[a:b]) + ("\n" if b < len(lines) else "")
        found, diags, chunk_comments, errors = _parse_chunk(parser, chunk, path, a, offsets[a])
        declarations.extend(found)
        diagnostics.extend(diags)
        comments.update(chunk_comments)
        if errors:
            broken.append(range(a + 1, b + 1))
    ctx = BuildContext(path)
    ctx.comments = comments
    diagnostics.sort(key=Diagnostic.sort_key)
    return ParseResult(_file(path, declarations, ctx), tuple(diagnostics), tuple(broken))


def _parse_chunk(parser: _Parser, chunk: str, path: str, line_offset: int, pos_offset: int):
    errors: list[Diagnostic] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(MAX_ERRORS_PER_DECLARATION):
        ctx = BuildContext(path, line_offset, pos_offset)
        try:
            declarations = parser.run(chunk, ctx)
        except UnexpectedInput as error:
            where = _position(error, chunk)
            if where in seen:
                return [], errors, {}, errors
            seen.add(where)
            errors.append(_diagnostic(parser, error, chunk, path, line_offset, pos_offset))
            repaired = _repair(chunk, error, where)
            if repaired is None or repaired == chunk:
                return [], errors, {}, errors
            chunk = repaired
            continue
        return list(declarations), errors + ctx.diagnostics, ctx.comments, errors
    return [], errors, {}, errors


def _position(error: UnexpectedInput, text: str) -> tuple[int, int]:
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        return (len(text), len(text))
    if isinstance(error, UnexpectedToken):
        return (error.token.start_pos, error.token.end_pos)
    return (error.pos_in_stream, error.pos_in_stream + 1)


def _diagnostic(parser, error, chunk, path, line_offset, pos_offset) -> Diagnostic:
    message, help_line = messages.message(error, chunk, parser.literals)
    start, end = _position(error, chunk)
    if isinstance(error, UnexpectedToken) and error.token.type == "_SEP":
        end = start + 1  # point at the end of the line, not at the blank lines after it
    if start >= len(chunk.rstrip()):  # the end of the text: point at its last character
        start = max(0, len(chunk.rstrip()) - 1)
        end = start + 1
    line = chunk.count("\n", 0, start) + 1
    column = start - (chunk.rfind("\n", 0, start) + 1) + 1
    end = max(end, start + 1)
    end_line = chunk.count("\n", 0, end - 1) + 1
    end_column = end - (chunk.rfind("\n", 0, end - 1) + 1) + 1
    span = Span(path, line + line_offset, column, end_line + line_offset, end_column,
                start + pos_offset, end + pos_offset)
    return Diagnostic.at("FL100", span, message, help=help_line)


def _repair(text: str, error: UnexpectedInput, where: tuple[int, int]) -> str | None:
    """The text with the statement around the error blanked out, or closing
    braces added when the text ended inside a block."""
    start = where[0]
    if isinstance(error, UnexpectedCharacters) and messages._opens_triple(text, start):
        # an unclosed """ swallows the rest: drop it, close the blocks still open
        opening = start if text.startswith('"""', start) else start - 2
        depth = 0
        for _, char in scan.braces(text, 0, opening):
            depth += {"{": 1, "}": -1}.get(char, 0)
        tail = "".join(c if c == "\n" else " " for c in text[opening:])
        return text[:opening] + tail + "}" * max(depth, 0)
    if start >= len(text) or not text[start:].strip():
        depth = 0
        for _, char in scan.braces(text):
            depth += {"{": 1, "}": -1}.get(char, 0)
        return text + "\n" + "}" * depth if depth > 0 else None
    line_start = text.rfind("\n", 0, start) + 1
    if line_start == 0:
        return None  # the declaration's own first line is broken: nothing to recover
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    keep: set[int] = set()
    stack: list[int] = []
    end = line_end
    for offset, char in scan.braces(text, line_start):
        if char == "\n":
            if offset >= line_end and not stack:
                break
            continue
        if char == "{":
            stack.append(offset)
        elif stack:
            stack.pop()
            if not stack and offset >= line_end:
                end = offset + 1
                break
        elif offset < line_end:
            keep.add(offset)  # closes a block opened before this line
        else:
            break
    chars = list(text)
    for i in range(line_start, end):
        if i not in keep and chars[i] != "\n":
            chars[i] = " "
    return "".join(chars)
