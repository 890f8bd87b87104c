"""The abstract syntax tree: one frozen attrs class per construct, each with its span.

Nodes compare by value with spans left out (`eq=False` on `span`), so the AST of a
formatted file equals the AST of its source. Children are tuples. The parser builds
these and nothing else; no Lark tree leaves `flowlang.syntax`.
"""
from __future__ import annotations

import datetime as _dt
from typing import Iterator, Union

import attrs

from flowlang.literals import Duration, Number, Size
from flowlang.source import Span


def _span_field():
    return attrs.field(default=None, eq=False, repr=False, kw_only=True)


@attrs.frozen
class Node:
    span: Span = _span_field()

    def children(self) -> Iterator[Node]:
        """Direct child nodes, in field order (for generic walks)."""
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, Node):
                yield value
            elif isinstance(value, tuple):
                for item in value:
                    if isinstance(item, Node):
                        yield item

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first, in source order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node.children())))


# ----------------------------------------------------------------------------- literals

@attrs.frozen
class Str(Node):
    value: str
    triple: bool = False
    #: How many lines below the opening quotes the value starts (`\"\"\"` strings).
    line_offset: int = attrs.field(default=0, eq=False, repr=False)


@attrs.frozen
class Num(Node):
    value: Number


@attrs.frozen
class Percent(Node):
    value: Number | None  # None: the literal was invalid (FL101 reported)
    text: str = attrs.field(default="", eq=False, repr=False)


@attrs.frozen
class DateLit(Node):
    value: _dt.date | None  # None: the literal was invalid (FL101 reported)
    text: str = attrs.field(default="", eq=False)


@attrs.frozen
class TimeLit(Node):
    value: _dt.time | None
    text: str = attrs.field(default="", eq=False)


@attrs.frozen
class DurationLit(Node):
    value: Duration


@attrs.frozen
class SizeLit(Node):
    value: Size


@attrs.frozen
class InvalidLit(Node):
    """A literal whose text does not denote a value; FL101 was reported for it."""

    text: str


@attrs.frozen
class BoolLit(Node):
    value: bool


@attrs.frozen
class ListLit(Node):
    items: tuple[Node, ...]


@attrs.frozen
class Word(Node):
    """A plain word of a phrase: `send`, `selection`, `our_contact`."""

    text: str


@attrs.frozen
class Equals(Node):
    """The `=` of `set F = V`."""


Literal = Union[Str, Num, Percent, DateLit, TimeLit, DurationLit, SizeLit, InvalidLit,
                BoolLit, ListLit]


# ----------------------------------------------------------------------------- expressions

@attrs.frozen
class Ref(Node):
    """A field path: `person.score`, `deal.person.first_name`, or a bare name."""

    path: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@attrs.frozen
class Phrase(Node):
    """A worded condition or operand: `clicked link pricing`, `selection "S"`."""

    parts: tuple[Node, ...]  # Word | Ref | Str

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.parts if isinstance(p, Word))


@attrs.frozen
class Not(Node):
    operand: Node


@attrs.frozen
class BoolOp(Node):
    op: str  # "and" | "or"
    left: Node
    right: Node


@attrs.frozen
class Compare(Node):
    op: str  # == != < <= > >= in "not in"
    left: Node
    right: Node


@attrs.frozen
class IsSet(Node):
    operand: Node
    negated: bool = False


# ----------------------------------------------------------------------------- steps

@attrs.frozen
class Name(Node):
    """An identifier that names or refers to something (flow, label, stage, form)."""

    text: str


@attrs.frozen
class Step(Node):
    label: Name | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class Block(Node):
    statements: tuple[Node, ...]


@attrs.frozen
class Command(Step):
    """A phrase line: an action step, a setting, an update operation. Its meaning
    comes from the declarations the checker matches it against."""

    parts: tuple[Node, ...]
    body: Block | None = None

    @property
    def words(self) -> tuple[str, ...]:
        """The leading words, up to the first part that is not a plain word."""
        words = []
        for part in self.parts:
            if not isinstance(part, Word):
                break
            words.append(part.text)
        return tuple(words)

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.parts if isinstance(p, Word))


@attrs.frozen
class Wait(Step):
    duration: Node  # DurationLit normally; anything else is reported by the checker


@attrs.frozen
class WaitUntil(Step):
    date: DateLit
    time: TimeLit | None = None


@attrs.frozen
class ElseExit(Node):
    body: Block | None = None


@attrs.frozen
class ElseContinue(Node):
    pass


@attrs.frozen
class WaitFor(Step):
    condition: Node
    within: Node | None = None
    otherwise: ElseExit | ElseContinue | None = None


@attrs.frozen
class Goto(Step):
    target: Name


@attrs.frozen
class Exit(Step):
    body: Block | None = None


@attrs.frozen
class Complete(Step):
    body: Block | None = None


@attrs.frozen
class Branch(Node):
    name: Str
    condition: Node | None = None
    weight: Percent | None = None
    body: Block = None


@attrs.frozen
class ValueBranch(Node):
    values: tuple[Node, ...]
    body: Block = None


@attrs.frozen
class Otherwise(Node):
    exit: bool
    body: Block | None = None


@attrs.frozen
class Split(Step):
    title: Str | None
    mode: str  # "when" | "random" | "value"
    subject: Node | None
    items: tuple[Node, ...]  # Branch | ValueBranch | Otherwise

    @property
    def branches(self) -> tuple[Node, ...]:
        return tuple(i for i in self.items if not isinstance(i, Otherwise))

    @property
    def otherwise(self) -> Otherwise | None:
        return next((i for i in self.items if isinstance(i, Otherwise)), None)


# ----------------------------------------------------------------------------- flow headers

@attrs.frozen
class ForClause(Node):
    entity: Name


@attrs.frozen
class Settings(Node):
    body: Block


@attrs.frozen
class EventPhrase(Node):
    parts: tuple[Node, ...]  # Word | Ref | Str | Num

    @property
    def text(self) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, Word):
                out.append(p.text)
            elif isinstance(p, Ref):
                out.append(p.dotted)
            elif isinstance(p, Str):
                out.append('"' + p.value + '"')
            else:
                out.append(str(p.value))
        return " ".join(out)


@attrs.frozen
class OnEvent(Node):
    event: EventPhrase


@attrs.frozen
class Filter(Node):
    condition: Node


@attrs.frozen
class Trigger(Node):
    items: tuple[Node, ...]  # OnEvent | Filter | Command


@attrs.frozen
class Success(Node):
    condition: Node


# ----------------------------------------------------------------------------- declarations

@attrs.frozen
class Flow(Node):
    name: Name
    title: Str | None
    items: tuple[Node, ...]  # ForClause | Settings | Trigger | Success | steps, in order

    def _first(self, kind):
        return next((i for i in self.items if isinstance(i, kind)), None)

    @property
    def participant(self) -> str:
        clause = self._first(ForClause)
        return clause.entity.text if clause else "person"

    @property
    def settings(self) -> Settings | None:
        return self._first(Settings)

    @property
    def trigger(self) -> Trigger | None:
        return self._first(Trigger)

    @property
    def success(self) -> Success | None:
        return self._first(Success)

    @property
    def steps(self) -> tuple[Node, ...]:
        return tuple(i for i in self.items if isinstance(i, Step))


@attrs.frozen
class Handler(Node):
    """`on EVENT [where EXPR] { actions }` in a form, link, stage or pipeline."""

    event: EventPhrase
    where: Node | None
    body: Block


@attrs.frozen
class Stage(Node):
    name: Name
    title: Str | None
    items: tuple[Node, ...] | None  # Handler | Command; None when written without a block


@attrs.frozen
class Move(Node):
    source: Name
    target: Name
    events: tuple[EventPhrase, ...]


@attrs.frozen
class Pipeline(Node):
    name: Name
    title: Str | None
    items: tuple[Node, ...]  # ForClause | Settings | Stage | Move | Handler

    @property
    def participant(self) -> str:
        clause = next((i for i in self.items if isinstance(i, ForClause)), None)
        return clause.entity.text if clause else "lead"

    @property
    def stages(self) -> tuple[Stage, ...]:
        return tuple(i for i in self.items if isinstance(i, Stage))


@attrs.frozen
class Form(Node):
    name: Name
    title: Str | None
    items: tuple[Node, ...]  # Handler | Command


@attrs.frozen
class Link(Node):
    name: Name
    url: Str
    items: tuple[Node, ...]


@attrs.frozen
class FieldDecl(Node):
    name: Name
    type_words: tuple[str, ...]
    max_length: Num | None = None


@attrs.frozen
class Schema(Node):
    entity: Name
    fields: tuple[FieldDecl, ...]


@attrs.frozen
class ActionDecl(Node):
    phrase: Str
    body: Block


@attrs.frozen
class EventDecl(Node):
    phrase: Str
    body: Block


@attrs.frozen
class Comment(Node):
    text: str  # with the leading '#'


@attrs.frozen
class File(Node):
    path: str = attrs.field(eq=False)
    declarations: tuple[Node, ...] = ()
    comments: tuple[Comment, ...] = ()
