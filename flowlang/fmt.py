r'''The canonical formatter: an AST and its comments to text.

One layout for every file, so that a diff shows a change of meaning and never a change
of taste, and golden files stay stable. The formatter prints the AST rather than
shuffling tokens, so its output is canonical by construction; the grammar keeps
comments out of the tree, so they are put back by their spans. `format_file` is pure
and works on any AST, with or without spans; `format_text` parses first and refuses a
file with syntax errors, since a tree rebuilt around an error would drop the text in it.

Layout
------
- Two spaces of indentation; one statement per line (a `;` becomes a line break);
  `}` on its own line at the indentation of the line that opened the block.
- Top-level declarations are separated by exactly one blank line; so is a declaration
  from a comment that follows it. The file ends with one newline (an empty file stays
  empty).
- Inside a block, blank lines between statements and comments are kept, at most one in a
  row (a gap in line numbers that is not filled by comments); never right after `{` or
  right before `}`. Between comments before the first declaration, likewise.
- A block written on one line in the source, holding exactly one statement that has no
  block of its own and prints on one line, stays on one line: `{ subject "Hello" }`,
  `stage qualified "Qualified" { final }`. An empty block with no comment in it is `{}`.
  Every other block is expanded, as is every block of an AST without spans. The rule is
  the same for every pair of braces (flows, splits, stages, settings, ...).
- Comments keep their place. A comment on its own line stays on its own line, at the
  indentation of the statement (or `}`) after it. A comment after code stays at the end
  of that line, two spaces after it; one after `{` stays after the `{`. A comment in a
  place that the layout folds onto one line (inside a multi-line list) moves to its own
  line just before its statement. None is lost, duplicated or reordered.
- Lists are written on one line, `["a", "b"]`, without a trailing comma.
- One-line strings are escaped with `literals.escape`. A `"""` string opens with
  `"""` and a line break; each line of its value is indented two spaces deeper than
  the statement (empty lines stay empty), and the closing `"""` sits on its own line
  at that same indentation. Inside it a backslash is written `\\`, a tab `\t`, and
  every third `"` in a row `\"`; where a value line would end in whitespace, or where
  every line starts with a space (which the dedent would remove), the line break is
  written `\n` instead. A value ending in a space cannot be written as a `"""` string
  (the parser strips it), nor can any string hold a carriage return (the parser reads
  one as a line end); the parser never produces such values.
- Numbers by value: an int in digits, a float by `repr` (in positional notation where
  `repr` uses an exponent, which the grammar lacks). Durations `1 day 12 hours` (the
  singular for exactly 1), sizes `3 MB`, percentages `50%`, dates `2026-12-24`, times
  `09:30`. An invalid literal prints the text the parser kept for it.
- Expressions get the fewest parentheses the precedence allows (`or` < `and` < `not` <
  comparisons, `in`, `is set`; a comparison's operands are plain operands):
  `not a == 1` is `not (a == 1)`, `(a or b) and c` keeps its parentheses.
- The order of items in flows, pipelines, forms, splits and blocks is the AST's order.
'''
from __future__ import annotations

import bisect
import decimal
from typing import Any, Callable, Sequence

import attrs

from flowlang import literals, nodes as n
from flowlang.diagnostics import Diagnostic
from flowlang.syntax import parse_text

INDENT = "  "
Pos = tuple[int, int]


# ----------------------------------------------------------------------------- API

def format_file(file: n.File) -> str:
    """The canonical text of `file`, with its comments where they were."""
    top = _Body(file.declarations, start=None, end=None, open_line=None, one_line=False)
    _, lines = _body_lines(top, list(file.comments), "", separate=True)
    return "\n".join(lines) + "\n" if lines else ""


def format_text(text: str, path: str = "<string>") -> tuple[str | None, tuple[Diagnostic, ...]]:
    """(canonical text, diagnostics), or (None, diagnostics) if `text` has a syntax
    error: recovery blanks out broken statements, so printing its tree would lose text."""
    result = parse_text(text, path)
    if any(d.code == "FL100" for d in result.diagnostics):
        return None, result.diagnostics
    return format_file(result.file), result.diagnostics


# ----------------------------------------------------------------------------- literals

def _number(value: literals.Number) -> str:
    """By value. NUMBER has no exponent, so a float that `repr` writes with one
    (`1e+16`) is written out in full, keeping a `.0` so it reads back as a float."""
    text = repr(value)
    if isinstance(value, float) and "e" in text:
        text = format(decimal.Decimal(text), "f")
        text += "" if "." in text else ".0"
    return text


def _duration(value: literals.Duration) -> str:
    return " ".join(f"{_number(amount)} {literals.unit_text(unit, amount)}"
                    for amount, unit in value.parts)


def _string(node: n.Str, indent: str) -> str:
    if not node.triple:
        return '"' + literals.escape(node.value) + '"'
    inner = indent + INDENT
    body = "\n".join(inner + line if line else "" for line in _triple_lines(node.value))
    return f'"""\n{body}\n{inner}"""'


def _triple_lines(value: str) -> list[str]:
    """The raw lines of a `\"\"\"` string that reads back as `value`. The parser strips
    each line's end and dedents the lines before it resolves escapes, so whitespace at
    a line's end and a margin common to every line need an escape to survive."""
    raw: list[str] = []
    for line in value.split("\n"):
        text = _escape_triple(line)
        if raw and raw[-1] != raw[-1].rstrip():
            raw[-1] += "\\n" + text  # the line break as an escape keeps that whitespace
        else:
            raw.append(text)
    content = [line for line in raw if line]
    if content and all(line.startswith(" ") for line in content):
        # The dedent would take the common leading spaces: join a blank line to the line
        # after it, so that one line starts with `\n` and there is no common margin.
        blank = next((i for i, line in enumerate(raw[:-1]) if not line), None)
        if blank is not None:
            raw[blank:blank + 2] = ["\\n" + raw[blank + 1]]
    return raw


def _escape_triple(line: str) -> str:
    out: list[str] = []
    quotes = 0
    for char in line.replace("\\", "\\\\").replace("\t", "\\t"):
        quotes = quotes + 1 if char == '"' else 0
        if quotes == 3:
            out.append("\\")
            quotes = 0
        out.append(char)
    return "".join(out)


def _time(node: n.TimeLit) -> str:
    if node.value is None:
        return node.text
    return f"{node.value.hour:02d}:{node.value.minute:02d}"


def _words(parts: Sequence[n.Node], indent: str) -> str:
    return " ".join(_expr(part, indent) for part in parts)


# ----------------------------------------------------------------------------- expressions

#: How tightly each kind of expression binds; anything not listed is an operand.
_BINDING: dict[Any, int] = {"or": 1, "and": 2, n.Not: 3, n.Compare: 4, n.IsSet: 4}
_OPERAND = 5


def _binding(node: n.Node) -> int:
    key = node.op if isinstance(node, n.BoolOp) else type(node)
    return _BINDING.get(key, _OPERAND)


def _expr(node: n.Node, indent: str, binding: int = 0) -> str:
    """`node` as text, in parentheses if it binds less tightly than its place needs."""
    text = _TERMS[type(node)](node, indent)
    return f"({text})" if _binding(node) < binding else text


def _bool_op(node: n.BoolOp, indent: str) -> str:
    own = _binding(node)  # left-associative: the right operand must bind tighter
    return f"{_expr(node.left, indent, own)} {node.op} {_expr(node.right, indent, own + 1)}"


def _compare(node: n.Compare, indent: str) -> str:
    return f"{_expr(node.left, indent, _OPERAND)} {node.op} {_expr(node.right, indent, _OPERAND)}"


def _is_set(node: n.IsSet, indent: str) -> str:
    return f"{_expr(node.operand, indent, _OPERAND)} is {'not set' if node.negated else 'set'}"


_TERMS: dict[type, Callable[[Any, str], str]] = {
    n.Str: _string,
    n.Num: lambda node, _: _number(node.value),
    n.Percent: lambda node, _: node.text if node.value is None else _number(node.value) + "%",
    n.DateLit: lambda node, _: node.text if node.value is None else node.value.isoformat(),
    n.TimeLit: lambda node, _: _time(node),
    n.DurationLit: lambda node, _: _duration(node.value),
    n.SizeLit: lambda node, _: f"{_number(node.value.amount)} {node.value.unit}",
    n.InvalidLit: lambda node, _: node.text,
    n.BoolLit: lambda node, _: "true" if node.value else "false",
    n.ListLit: lambda node, indent: "[" + ", ".join(_expr(i, indent) for i in node.items) + "]",
    n.Word: lambda node, _: node.text,
    n.Name: lambda node, _: node.text,
    n.Ref: lambda node, _: node.dotted,
    n.Equals: lambda node, _: "=",
    n.Phrase: lambda node, indent: _words(node.parts, indent),
    n.EventPhrase: lambda node, indent: _words(node.parts, indent),
    n.Not: lambda node, indent: "not " + _expr(node.operand, indent, _BINDING[n.Not]),
    n.BoolOp: _bool_op,
    n.Compare: _compare,
    n.IsSet: _is_set,
}


# ----------------------------------------------------------------------------- statements

@attrs.frozen
class _Body:
    """The items between a pair of braces, and where the braces were."""

    items: tuple[n.Node, ...]
    start: Pos | None  # comments after this and before `end` are inside the braces
    end: Pos | None
    open_line: int | None  # the line of `{`
    one_line: bool  # `{` and `}` were on one line


def _block(block: n.Block | None) -> _Body | None:
    if block is None:
        return None
    span = block.span
    if span is None:
        return _Body(block.statements, None, None, None, False)
    return _Body(block.statements, (span.line, span.column), (span.end_line, span.end_column),
                 span.line, span.line == span.end_line)


def _braced(node: n.Node, items: tuple[n.Node, ...], *head: n.Node | None) -> _Body:
    """A body whose items sit in `node` itself: its `{` follows the last head child."""
    span = node.span
    if span is None:
        return _Body(items, None, None, None, False)
    ends = [(h.span.end_line, h.span.end_column) for h in head if h is not None and h.span]
    start = ends[-1] if ends else (span.line, span.column)
    return _Body(items, start, (span.end_line, span.end_column), start[0],
                 start[0] == span.end_line)


Shape = tuple[str, "_Body | None"]


def _titled(keyword: str, node: Any, indent: str) -> str:
    title = "" if node.title is None else " " + _expr(node.title, indent)
    return f"{keyword} {node.name.text}{title}"


def _wait_for(node: n.WaitFor, indent: str) -> Shape:
    head = "wait for " + _expr(node.condition, indent)
    if node.within is not None:
        head += " within " + _expr(node.within, indent)
    if isinstance(node.otherwise, n.ElseContinue):
        return head + " else continue", None
    if isinstance(node.otherwise, n.ElseExit):
        return head + " else exit", _block(node.otherwise.body)
    return head, None


def _split(node: n.Split, indent: str) -> Shape:
    head = "split"
    if node.title is not None:
        head += " " + _expr(node.title, indent)
    if node.mode == "random":
        head += " random"
    elif node.mode == "value":
        head += " on " + _expr(node.subject, indent)
    return head, _braced(node, node.items, node.title, node.subject)


def _branch(node: n.Branch, indent: str) -> Shape:
    head = "branch " + _expr(node.name, indent)
    if node.condition is not None:
        head += " when " + _expr(node.condition, indent)
    if node.weight is not None:
        head += " " + _expr(node.weight, indent)
    return head, _block(node.body)


def _stage(node: n.Stage, indent: str) -> Shape:
    body = None if node.items is None else _braced(node, node.items, node.name, node.title)
    return _titled("stage", node, indent), body


def _handler(node: n.Handler, indent: str) -> Shape:
    where = "" if node.where is None else " where " + _expr(node.where, indent)
    return f"on {_expr(node.event, indent)}{where}", _block(node.body)


def _field(node: n.FieldDecl, indent: str) -> Shape:
    limit = "" if node.max_length is None else " max " + _expr(node.max_length, indent)
    return f"field {node.name.text} {' '.join(node.type_words)}{limit}", None


def _wait_until(node: n.WaitUntil, indent: str) -> Shape:
    time = "" if node.time is None else " " + _expr(node.time, indent)
    return f"wait until {_expr(node.date, indent)}{time}", None


#: Each statement-like node as (its head line, the body in its braces or None).
_SHAPES: dict[type, Callable[[Any, str], Shape]] = {
    n.Flow: lambda x, i: (_titled("flow", x, i), _braced(x, x.items, x.name, x.title)),
    n.Pipeline: lambda x, i: (_titled("pipeline", x, i), _braced(x, x.items, x.name, x.title)),
    n.Form: lambda x, i: (_titled("form", x, i), _braced(x, x.items, x.name, x.title)),
    n.Link: lambda x, i: (f"link {x.name.text} {_expr(x.url, i)}", _braced(x, x.items, x.url)),
    n.Schema: lambda x, i: (f"schema {x.entity.text}", _braced(x, x.fields, x.entity)),
    n.ActionDecl: lambda x, i: ("action " + _expr(x.phrase, i), _block(x.body)),
    n.EventDecl: lambda x, i: ("event " + _expr(x.phrase, i), _block(x.body)),
    n.FieldDecl: _field,
    n.ForClause: lambda x, i: ("for " + x.entity.text, None),
    n.Settings: lambda x, i: ("settings", _block(x.body)),
    n.Trigger: lambda x, i: ("trigger", _braced(x, x.items)),
    n.OnEvent: lambda x, i: ("on " + _expr(x.event, i), None),
    n.Filter: lambda x, i: ("filter " + _expr(x.condition, i), None),
    n.Success: lambda x, i: ("success when " + _expr(x.condition, i), None),
    n.Stage: _stage,
    n.Move: lambda x, i: (f"move {x.source.text} to {x.target.text} on "
                          + ", ".join(_expr(e, i) for e in x.events), None),
    n.Handler: _handler,
    n.Command: lambda x, i: (_words(x.parts, i), _block(x.body)),
    n.Wait: lambda x, i: ("wait " + _expr(x.duration, i), None),
    n.WaitUntil: _wait_until,
    n.WaitFor: _wait_for,
    n.Goto: lambda x, i: ("goto " + x.target.text, None),
    n.Exit: lambda x, i: ("exit", _block(x.body)),
    n.Complete: lambda x, i: ("complete", _block(x.body)),
    n.Split: _split,
    n.Branch: _branch,
    n.ValueBranch: lambda x, i: (", ".join(_expr(v, i) for v in x.values), _block(x.body)),
    n.Otherwise: lambda x, i: ("otherwise exit" if x.exit else "otherwise", _block(x.body)),
}


def _shape(node: n.Node, indent: str) -> Shape:
    head, body = _SHAPES[type(node)](node, indent)
    label = getattr(node, "label", None)
    return (head if label is None else f"{label.text}: {head}"), body


# ----------------------------------------------------------------------------- layout

def _start(node: n.Node) -> Pos:
    return (node.span.line, node.span.column)


def _end(node: n.Node) -> Pos:
    return (node.span.end_line, node.span.end_column)


def _node_lines(node: n.Node, comments: list[n.Comment], indent: str) -> list[str]:
    """The lines of one statement (or declaration, branch, ...) and the comments inside
    its span: those between its braces stay there, the others go before it."""
    head, body = _shape(node, indent)
    inside: list[n.Comment] = []
    hoisted: list[n.Comment] = []
    for comment in comments:
        is_inside = body is not None and body.start is not None and \
            body.start <= _start(comment) < body.end
        (inside if is_inside else hoisted).append(comment)
    lines = [indent + c.text for c in hoisted] + (indent + head).split("\n")
    if body is None:
        return lines
    if not inside and not body.items:
        lines[-1] += " {}"
        return lines
    if not inside and body.one_line and len(body.items) == 1:
        only = body.items[0]
        text = _node_lines(only, [], "")
        if _shape(only, "")[1] is None and len(text) == 1:
            lines[-1] += " { " + text[0] + " }"
            return lines
    header, inner = _body_lines(body, inside, indent + INDENT)
    lines[-1] += " {" + ("" if header is None else "  " + header.text)
    return lines + inner + [indent + "}"]


@attrs.define
class _Slot:
    """The comments that go with one item of a body."""

    leading: list[n.Comment] = attrs.Factory(list)
    inner: list[n.Comment] = attrs.Factory(list)
    trailing: n.Comment | None = None


@attrs.frozen
class _Entry:
    """Output lines for one item or one own-line comment, with its source lines."""

    first: int | None
    last: int | None
    is_item: bool
    lines: list[str]


def _body_lines(body: _Body, comments: list[n.Comment], indent: str,
                separate: bool = False) -> tuple[n.Comment | None, list[str]]:
    """(the comment that trails `{`, the lines between the braces). With `separate`
    (the top level), an item is always followed by a blank line."""
    items = body.items
    slots = [_Slot() for _ in items]
    header: n.Comment | None = None
    dangling: list[n.Comment] = []
    if any(item.span is None for item in items):
        dangling = list(comments)  # no positions to place them by: keep them, at the end
        comments = []
    ends = [_end(item) for item in items] if comments else []
    for comment in comments:
        pos, line = _start(comment), comment.span.line
        k = bisect.bisect_right(ends, pos)  # the first item that ends after the comment
        if k < len(items) and _start(items[k]) <= pos:
            slots[k].inner.append(comment)
        elif k > 0 and items[k - 1].span.end_line == line and slots[k - 1].trailing is None:
            slots[k - 1].trailing = comment
        elif k == 0 and header is None and line == body.open_line:
            header = comment
        elif k < len(items):
            slots[k].leading.append(comment)
        else:
            dangling.append(comment)

    def comment_entry(comment: n.Comment) -> _Entry:
        line = comment.span.line if comment.span else None
        return _Entry(line, line, False, [indent + comment.text])

    entries: list[_Entry] = []
    for item, slot in zip(items, slots):
        entries += [comment_entry(c) for c in slot.leading]
        lines = _node_lines(item, slot.inner, indent)
        if slot.trailing is not None:
            lines[-1] += "  " + slot.trailing.text
        span = item.span
        entries.append(_Entry(span and span.line, span and span.end_line, True, lines))
    entries += [comment_entry(c) for c in dangling]

    out: list[str] = []
    for prev, entry in zip([None, *entries], entries):
        if prev is not None and ((separate and prev.is_item) or _gap(prev, entry)):
            out.append("")
        out += entry.lines
    return header, out


def _gap(prev: _Entry, entry: _Entry) -> bool:
    """Whether the source had a blank line between two entries."""
    return prev.last is not None and entry.first is not None and entry.first - prev.last > 1
