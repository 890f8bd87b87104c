"""Builds AST nodes while Lark parses (an inline transformer: no parse tree is made).

The builder never judges and never raises: it turns rules into nodes and literal
text into values. A literal whose text has no value becomes an `InvalidLit` (or a
node with `value=None`) and an FL101 diagnostic is recorded.
"""
from __future__ import annotations

from lark import Token

from flowlang import literals, nodes as n
from flowlang.diagnostics import Diagnostic
from flowlang.literals import LiteralError
from flowlang.source import Span

class BuildContext:
    """Where the text being parsed sits in its file, and what was found on the way."""

    def __init__(self, file: str, line_offset: int = 0, pos_offset: int = 0):
        self.file = file
        self.line_offset = line_offset
        self.pos_offset = pos_offset
        self.diagnostics: list[Diagnostic] = []
        self.comments: dict[tuple[int, int], n.Comment] = {}


def _is_token(x) -> bool:
    return isinstance(x, Token)


class Builder:
    """Lark calls one method per rule (by rule or alias name) with the rule's
    children, and one per named terminal (`STRING`, `NUMBER`, ...) on shift."""

    def __init__(self):
        self.ctx = BuildContext("<string>")

    # ------------------------------------------------------------------ spans
    def tspan(self, tok: Token) -> Span:
        lo, po = self.ctx.line_offset, self.ctx.pos_offset
        return Span(self.ctx.file, tok.line + lo, tok.column, tok.end_line + lo,
                    tok.end_column, tok.start_pos + po, tok.end_pos + po)

    def span(self, first, last=None) -> Span:
        a = self.tspan(first) if _is_token(first) else first.span
        if last is None or last is first:
            return a
        b = self.tspan(last) if _is_token(last) else last.span
        return a.to(b)

    def fl101(self, span: Span, error: LiteralError) -> None:
        self.ctx.diagnostics.append(Diagnostic.at("FL101", span, error.message, help=error.help))

    def name(self, tok: Token) -> n.Name:
        return n.Name(str(tok), span=self.tspan(tok))

    def word(self, tok: Token) -> n.Node:
        if tok.type == "PATH":
            return n.Ref(tuple(tok.split(".")), span=self.tspan(tok))
        return n.Word(str(tok), span=self.tspan(tok))

    # ------------------------------------------------------------------ lexer callbacks
    def collect_comment(self, tok: Token) -> Token:
        span = self.tspan(tok)
        self.ctx.comments[(span.line, span.column)] = n.Comment(str(tok).rstrip(), span=span)
        return tok

    def collect_separator(self, tok: Token) -> Token:
        """Comments between statements travel inside the separator token."""
        text = str(tok)
        if "#" not in text:
            return tok
        offset = 0
        line = tok.line
        column = tok.column
        for raw in text.split("\n"):
            hash_at = raw.find("#")
            if hash_at >= 0:
                body = raw[hash_at:].rstrip("\r").rstrip()
                col = column + hash_at
                lo, po = self.ctx.line_offset, self.ctx.pos_offset
                start = tok.start_pos + offset + hash_at + po
                span = Span(self.ctx.file, line + lo, col, line + lo, col + len(body),
                            start, start + len(body))
                self.ctx.comments[(span.line, span.column)] = n.Comment(body, span=span)
            offset += len(raw) + 1
            line += 1
            column = 1
        return tok

    # ------------------------------------------------------------------ terminals
    def STRING(self, tok: Token) -> n.Node:
        span = self.tspan(tok)
        try:
            value, triple, line_offset = literals.parse_string(str(tok))
        except LiteralError as e:
            self.fl101(span, e)
            return n.InvalidLit(str(tok), span=span)
        return n.Str(value, triple, line_offset, span=span)

    def NUMBER(self, tok: Token) -> n.Num:
        return n.Num(literals.parse_number(str(tok)), span=self.tspan(tok))

    def PERCENT(self, tok: Token) -> n.Percent:
        span = self.tspan(tok)
        try:
            return n.Percent(literals.parse_percent(str(tok)), str(tok), span=span)
        except LiteralError as e:
            self.fl101(span, e)
            return n.Percent(None, str(tok), span=span)

    def DATE(self, tok: Token) -> n.DateLit:
        span = self.tspan(tok)
        try:
            return n.DateLit(literals.parse_date(str(tok)), str(tok), span=span)
        except LiteralError as e:
            self.fl101(span, e)
            return n.DateLit(None, str(tok), span=span)

    def TIME(self, tok: Token) -> n.TimeLit:
        span = self.tspan(tok)
        try:
            return n.TimeLit(literals.parse_time(str(tok)), str(tok), span=span)
        except LiteralError as e:
            self.fl101(span, e)
            return n.TimeLit(None, str(tok), span=span)

    def TRUE(self, tok: Token) -> n.BoolLit:
        return n.BoolLit(True, span=self.tspan(tok))

    def FALSE(self, tok: Token) -> n.BoolLit:
        return n.BoolLit(False, span=self.tspan(tok))

    def EQUALS(self, tok: Token) -> n.Equals:
        return n.Equals(span=self.tspan(tok))

    # ------------------------------------------------------------------ literals
    def quantity(self, c) -> n.Node:
        span = self.span(c[0], c[-1])
        amounts: list[tuple] = []
        for item in c:
            if isinstance(item, n.Num):
                amounts.append((item.value, None))
            else:
                amounts[-1] = (amounts[-1][0], str(item))
        if len(amounts) == 1 and amounts[0][1] is None:
            return c[0]
        try:
            value = literals.parse_quantity(amounts)
        except LiteralError as e:
            self.fl101(span, e)
            return n.InvalidLit(" ".join(str(x.value if isinstance(x, n.Num) else x) for x in c),
                                span=span)
        if isinstance(value, literals.Size):
            return n.SizeLit(value, span=span)
        return n.DurationLit(value, span=span)

    def list(self, c) -> n.ListLit:
        items = tuple(self.word(x) if _is_token(x) and x.type in ("NAME", "PATH") else x
                      for x in c[1:-1])
        return n.ListLit(items, span=self.span(c[0], c[-1]))

    # ------------------------------------------------------------------ expressions
    def ref(self, c) -> n.Ref:
        tok = c[0]
        return n.Ref(tuple(tok.split(".")), span=self.tspan(tok))

    def phrase(self, c) -> n.Phrase:
        parts = tuple(self.word(x) if _is_token(x) else x for x in c)
        return n.Phrase(parts, span=self.span(c[0], c[-1]))

    def or_op(self, c) -> n.BoolOp:
        return n.BoolOp("or", c[0], c[-1], span=self.span(c[0], c[-1]))

    def and_op(self, c) -> n.BoolOp:
        return n.BoolOp("and", c[0], c[-1], span=self.span(c[0], c[-1]))

    def not_op(self, c) -> n.Not:
        return n.Not(c[-1], span=self.span(c[0], c[-1]))

    def compare(self, c) -> n.Compare:
        return n.Compare(str(c[1]), c[0], c[2], span=self.span(c[0], c[2]))

    def in_op(self, c) -> n.Compare:
        return n.Compare("in", c[0], c[-1], span=self.span(c[0], c[-1]))

    def not_in_op(self, c) -> n.Compare:
        return n.Compare("not in", c[0], c[-1], span=self.span(c[0], c[-1]))

    def is_set(self, c) -> n.IsSet:
        return n.IsSet(c[0], False, span=self.span(c[0], c[-1]))

    def is_not_set(self, c) -> n.IsSet:
        return n.IsSet(c[0], True, span=self.span(c[0], c[-1]))

    # ------------------------------------------------------------------ steps
    def block(self, c) -> n.Block:
        return n.Block(tuple(c[1:-1]), span=self.span(c[0], c[-1]))

    def labeled(self, c):
        label, step = c
        name = self.name(label)
        return type(step)(**{**_fields(step), "label": name}, span=self.span(label, step))

    def command(self, c) -> n.Command:
        body = c[-1] if isinstance(c[-1], n.Block) else None
        raw = c[:-1] if body is not None else c
        parts = tuple(self.word(x) if _is_token(x) else x for x in raw)
        return n.Command(parts, body, span=self.span(c[0], c[-1]))

    def wait(self, c) -> n.Wait:
        return n.Wait(c[1], span=self.span(c[0], c[1]))

    def wait_until(self, c) -> n.WaitUntil:
        time = c[2] if len(c) > 2 else None
        return n.WaitUntil(c[1], time, span=self.span(c[0], c[-1]))

    def wait_for(self, c) -> n.WaitFor:
        condition, within, otherwise = c[1], None, None
        rest = c[2:]
        if rest and _is_token(rest[0]) and rest[0].type == "WITHIN":
            within = rest[1]
            rest = rest[2:]
        if rest:
            otherwise = rest[0]
        return n.WaitFor(condition, within, otherwise, span=self.span(c[0], c[-1]))

    def else_exit(self, c) -> n.ElseExit:
        body = c[2] if len(c) > 2 else None
        return n.ElseExit(body, span=self.span(c[0], c[-1]))

    def else_continue(self, c) -> n.ElseContinue:
        return n.ElseContinue(span=self.span(c[0], c[-1]))

    def goto(self, c) -> n.Goto:
        return n.Goto(self.name(c[1]), span=self.span(c[0], c[1]))

    def exit(self, c) -> n.Exit:
        return n.Exit(c[1] if len(c) > 1 else None, span=self.span(c[0], c[-1]))

    def complete(self, c) -> n.Complete:
        return n.Complete(c[1] if len(c) > 1 else None, span=self.span(c[0], c[-1]))

    def random_mode(self, c):
        return ("random", None)

    def value_mode(self, c):
        return ("value", c[-1])

    def split(self, c) -> n.Split:
        title = c[1] if len(c) > 1 and isinstance(c[1], (n.Str, n.InvalidLit)) else None
        mode, subject = "when", None
        items = []
        for x in c[1:]:
            if isinstance(x, tuple):
                mode, subject = x
            elif isinstance(x, (n.Branch, n.ValueBranch, n.Otherwise)):
                items.append(x)
        return n.Split(title, mode, subject, tuple(items), span=self.span(c[0], c[-1]))

    def branch(self, c) -> n.Branch:
        name, body = c[1], c[-1]
        condition = weight = None
        if len(c) == 4:
            weight = c[2]
        elif len(c) == 5:
            condition = c[3]
        return n.Branch(name, condition, weight, body, span=self.span(c[0], body))

    def value_branch(self, c) -> n.ValueBranch:
        return n.ValueBranch(tuple(c[:-1]), c[-1], span=self.span(c[0], c[-1]))

    def otherwise_exit(self, c) -> n.Otherwise:
        return n.Otherwise(True, c[2] if len(c) > 2 else None, span=self.span(c[0], c[-1]))

    def otherwise_block(self, c) -> n.Otherwise:
        return n.Otherwise(False, c[1], span=self.span(c[0], c[-1]))

    # ------------------------------------------------------------------ flow headers
    def for_clause(self, c) -> n.ForClause:
        return n.ForClause(self.name(c[1]), span=self.span(c[0], c[1]))

    def settings(self, c) -> n.Settings:
        return n.Settings(c[1], span=self.span(c[0], c[1]))

    def trigger(self, c) -> n.Trigger:
        return n.Trigger(tuple(c[2:-1]), span=self.span(c[0], c[-1]))

    def on_event(self, c) -> n.OnEvent:
        return n.OnEvent(c[1], span=self.span(c[0], c[1]))

    def filter(self, c) -> n.Filter:
        return n.Filter(c[1], span=self.span(c[0], c[1]))

    def success(self, c) -> n.Success:
        return n.Success(c[-1], span=self.span(c[0], c[-1]))

    def event_phrase(self, c) -> n.EventPhrase:
        parts = tuple(self.word(x) if _is_token(x) else x for x in c)
        return n.EventPhrase(parts, span=self.span(c[0], c[-1]))

    # ------------------------------------------------------------------ declarations
    def _titled(self, c):
        """(name, title, items) of `KW NAME STRING? { ... }`."""
        title = c[2] if isinstance(c[2], (n.Str, n.InvalidLit)) else None
        return self.name(c[1]), title

    def flow(self, c) -> n.Flow:
        name, title = self._titled(c)
        start = 4 if title is not None else 3
        return n.Flow(name, title, tuple(c[start:-1]), span=self.span(c[0], c[-1]))

    def pipeline(self, c) -> n.Pipeline:
        name, title = self._titled(c)
        start = 4 if title is not None else 3
        return n.Pipeline(name, title, tuple(c[start:-1]), span=self.span(c[0], c[-1]))

    def stage(self, c) -> n.Stage:
        title = c[2] if len(c) > 2 and isinstance(c[2], (n.Str, n.InvalidLit)) else None
        body = c[-1] if isinstance(c[-1], tuple) else None
        return n.Stage(self.name(c[1]), title, body[0] if body else None,
                       span=self.span(c[0], body[1] if body else c[-1]))

    def handler_block(self, c):
        # A (items, closing token) pair: the owner takes the items and ends at the brace.
        return (tuple(c[1:-1]), c[-1])

    def move(self, c) -> n.Move:
        events = tuple(x for x in c if isinstance(x, n.EventPhrase))
        return n.Move(self.name(c[1]), self.name(c[2]), events, span=self.span(c[0], c[-1]))

    def handler(self, c) -> n.Handler:
        where = c[2] if len(c) == 4 else None
        return n.Handler(c[1], where, c[-1], span=self.span(c[0], c[-1]))

    def form(self, c) -> n.Form:
        title = c[2] if isinstance(c[2], (n.Str, n.InvalidLit)) else None
        items, close = c[-1]
        return n.Form(self.name(c[1]), title, items, span=self.span(c[0], close))

    def link(self, c) -> n.Link:
        items, close = c[-1]
        return n.Link(self.name(c[1]), c[2], items, span=self.span(c[0], close))

    def schema(self, c) -> n.Schema:
        return n.Schema(self.name(c[1]), tuple(c[3:-1]), span=self.span(c[0], c[-1]))

    def field_decl(self, c) -> n.FieldDecl:
        max_length = None
        words = c[2:]
        if len(words) >= 2 and _is_token(words[-2]) and words[-2].type == "MAX":
            max_length = words[-1]
            words = words[:-2]
        return n.FieldDecl(self.name(c[1]), tuple(str(w) for w in words), max_length,
                           span=self.span(c[0], c[-1]))

    def action_decl(self, c) -> n.ActionDecl:
        return n.ActionDecl(c[1], c[2], span=self.span(c[0], c[2]))

    def event_decl(self, c) -> n.EventDecl:
        return n.EventDecl(c[1], c[2], span=self.span(c[0], c[2]))

    def start(self, c) -> tuple:
        return tuple(c)


def _fields(node) -> dict:
    return {f.name: getattr(node, f.name) for f in node.__attrs_attrs__ if f.name != "span"}
