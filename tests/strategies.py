"""Hypothesis strategies for random, syntactically valid flowlang ASTs (no spans, no
comments), for round-trip tests of the formatter: `format_file` of one of these must
parse back to an equal AST with no diagnostics.

Valid means what the parser can produce, and the grammar is contextual, so a few words
are kept out of a few places. The restrictions, found in `grammar/flowlang.lark` and by
running these strategies against the parser:

- A statement's first word (and a label) cannot be a keyword that starts another
  statement there: `wait split goto exit complete` in any block, plus
  `for settings trigger success` among a flow's items, `on filter` in a trigger,
  `on` in a stage, form or link.
- In an expression, a phrase's word after the first cannot be
  `and or not in is within else` (those end the phrase), and a phrase's first word or a
  bare field name cannot be `not true false`; an event phrase's word cannot be `where`;
  a field type word cannot be `max`.
- In a command, a number followed by a word is read as a quantity with a unit (so a
  `Num` is never followed by a `Word`), and a quantity (duration or size) followed by a
  number goes on (so it is never followed by a `Num`, duration or size); a word right
  after a quantity cannot be `else`, one right after a list none of
  `and or not in is within else` (the parser's states there are shared with
  expressions).
- A `Ref` among command or phrase parts has a dotted path (a bare name is a `Word`);
  a `Phrase` has at least two parts and starts with a word.
- Literals are valid (the test wants no FL101): percentages 0..100, real dates, times
  with `text` zero-padded (`TimeLit.text` takes part in equality), durations in known
  units, sizes in kB/KB/MB. A `\"\"\"` string's value is made by the parser itself from
  random raw text, so only values a file can hold are generated. No string holds a
  carriage return: the parser reads a lone one as a line end, so none can be written.
"""
from __future__ import annotations

import datetime as dt
import functools
import re

from hypothesis import strategies as st

from flowlang import literals, nodes as n

KEYWORDS = (
    "flow", "pipeline", "form", "link", "schema", "action", "event", "for", "settings",
    "trigger", "success", "on", "filter", "stage", "move", "field", "max", "wait",
    "within", "else", "exit", "continue", "goto", "complete", "split", "random", "branch",
    "when", "otherwise", "not", "set", "true", "false", "to", "where", "until", "in",
    "is", "or", "and",
)
VOCAB = KEYWORDS + (
    "send", "email", "sms", "add", "selection", "person", "subject", "owner", "among",
    "day", "days", "hours", "workday", "MB", "kB", "x", "_", "a1", "no", "mobile", "skip",
)

BLOCK_FIRST = frozenset({"wait", "split", "goto", "exit", "complete"})
FLOW_FIRST = BLOCK_FIRST | {"for", "settings", "trigger", "success"}
TRIGGER_FIRST = frozenset({"on", "filter"})
HANDLER_FIRST = frozenset({"on"})
#: Words that end an expression phrase where they stand (the parser reads them as the
#: keywords that may follow an operand).
PHRASE_RESERVED = frozenset({"and", "or", "not", "in", "is", "within", "else"})
#: Words that begin something else where an operand starts (`not x`, `true`).
OPERAND_RESERVED = frozenset({"not", "true", "false"})
EVENT_RESERVED = frozenset({"where"})
TYPE_RESERVED = frozenset({"max"})
AFTER_QUANTITY = frozenset({"else"})
AFTER_LIST = PHRASE_RESERVED

MAX_DEPTH = 2


@functools.cache
def words(exclude: frozenset[str] = frozenset()) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(VOCAB),
                     st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
                     ).filter(lambda w: w not in exclude)


@functools.cache
def names(exclude: frozenset[str] = frozenset()) -> st.SearchStrategy[n.Name]:
    return words(exclude).map(n.Name)


# ----------------------------------------------------------------------------- literals

_TRIPLE_TOKEN = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""', re.S)
_RAW_PIECES = st.one_of(
    st.sampled_from(["\\n", "\\t", '\\"', "\\\\", '"', '""', "\n", "\n\n", "  ", "    ",
                     "\t", " ", "{{ person.first_name }}", "#", "{", "}"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\r'),
            max_size=6),
)
#: Values of `\"\"\"` strings, made by the parser's own rules from random raw text.
triple_values = st.one_of(
    st.sampled_from(["", "x", "a\n\nb", 'say """hi"""', "back\\slash", "\tx", "  a\nb"]),
    st.lists(_RAW_PIECES, max_size=8).map("".join)
    .map(lambda raw: '"""' + raw + '"""').filter(_TRIPLE_TOKEN.fullmatch)
    .map(lambda token: literals.parse_string(token)[0]),
)
one_line_values = st.one_of(
    st.sampled_from(["", "Hello", 'a "quoted" word', "back\\slash", "tab\there", "two\nlines",
                     "{{ person.first_name }}", "# not a comment", "é ✓ 🎉"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
            max_size=12),
)


@st.composite
def strings(draw) -> n.Str:
    if draw(st.integers(0, 7)) == 0:
        return n.Str(draw(triple_values), True)
    return n.Str(draw(one_line_values))


ints = st.integers(-10**6, 10**12)
floats = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                   st.floats(allow_nan=False, allow_infinity=False))
numbers = st.one_of(ints, floats).map(n.Num)
percents = st.one_of(st.integers(0, 100), st.floats(0, 100)).map(n.Percent)
dates = st.dates().map(lambda d: n.DateLit(d, d.isoformat()))


@st.composite
def times(draw) -> n.TimeLit:
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    return n.TimeLit(dt.time(hour, minute), f"{hour:02d}:{minute:02d}")


_amounts = st.one_of(st.integers(-5, 1000), st.sampled_from([1, 1.0, 0.5]),
                     st.floats(0, 1000))
_units = st.sampled_from(sorted(set(literals.DURATION_UNITS.values())))
# workdays count whole days (a fraction of one is FL101)
_duration_parts = st.one_of(st.tuples(_amounts, _units.filter(lambda u: u != "workday")),
                            st.tuples(st.integers(-5, 1000), st.just("workday")))
durations = st.lists(_duration_parts, min_size=1, max_size=3).map(
    lambda parts: n.DurationLit(literals.Duration(tuple(parts))))
sizes = st.builds(literals.Size, _amounts, st.sampled_from(sorted(literals.SIZE_UNITS))
                  ).map(n.SizeLit)
quantities = st.one_of(durations, sizes)
values = st.one_of(strings(), numbers, percents, dates, times())  # grammar: _value
refs = st.lists(words(), min_size=2, max_size=3).map(lambda p: n.Ref(tuple(p)))  # PATH
list_items = st.one_of(values, words().map(n.Word), refs)
lists = st.lists(list_items, max_size=4).map(lambda items: n.ListLit(tuple(items)))


# ----------------------------------------------------------------------------- expressions

_phrase_words = words(PHRASE_RESERVED).map(n.Word)
phrases = st.tuples(
    words(OPERAND_RESERVED).map(n.Word),
    st.lists(st.one_of(_phrase_words, refs, strings()), min_size=1, max_size=3),
).map(lambda p: n.Phrase((p[0], *p[1])))


operands = st.one_of(
    st.lists(words(), min_size=1, max_size=3).filter(
        lambda p: len(p) > 1 or p[0] not in OPERAND_RESERVED).map(lambda p: n.Ref(tuple(p))),
    phrases, values, st.booleans().map(n.BoolLit), lists,
)
_COMPARE_OPS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


def _expressions(children: st.SearchStrategy[n.Node]) -> st.SearchStrategy[n.Node]:
    return st.one_of(
        st.builds(n.Compare, st.sampled_from(_COMPARE_OPS), children, children),
        st.builds(n.IsSet, children, st.booleans()),
        st.builds(n.Not, children),
        st.builds(n.BoolOp, st.sampled_from(["and", "or"]), children, children),
    )


expressions = st.recursive(operands, _expressions, max_leaves=6)


# ----------------------------------------------------------------------------- statements

_PART_KINDS = ("word", "ref", "str", "num", "quantity", "percent", "date", "time", "list",
               "equals")
_PARTS = {
    "word": words().map(n.Word),
    "word_after_quantity": words(AFTER_QUANTITY).map(n.Word),
    "word_after_list": words(AFTER_LIST).map(n.Word),
    "ref": refs, "str": strings(), "num": numbers, "quantity": quantities,
    "percent": percents, "date": dates, "time": times(), "list": lists,
    "equals": st.just(n.Equals()),
}


@functools.cache
def _first_words(exclude: frozenset[str]) -> st.SearchStrategy[n.Word]:
    return words(exclude).map(n.Word)


@st.composite
def command_parts(draw, first_exclude: frozenset[str]) -> tuple[n.Node, ...]:
    parts: list[n.Node] = [draw(_first_words(first_exclude))]
    for _ in range(draw(st.integers(0, 5))):
        prev = parts[-1]
        after_quantity = isinstance(prev, (n.DurationLit, n.SizeLit))
        after_list = isinstance(prev, n.ListLit)
        kinds = [k for k in _PART_KINDS
                 if not (isinstance(prev, n.Num) and k == "word")
                 and not (after_quantity and k in ("num", "quantity"))]
        kind = draw(st.sampled_from(kinds))
        if kind == "word" and (after_quantity or after_list):
            kind = "word_after_quantity" if after_quantity else "word_after_list"
        parts.append(draw(_PARTS[kind]))
    return tuple(parts)


@functools.cache
def commands(depth: int, first_exclude: frozenset[str],
             label_exclude: frozenset[str] | None = None) -> st.SearchStrategy[n.Command]:
    body = st.none() | blocks(depth - 1) if depth > 0 else st.none()
    return st.builds(n.Command, command_parts(first_exclude), body,
                     label=_labels(label_exclude))


@functools.cache
def _labels(exclude: frozenset[str] | None) -> st.SearchStrategy[n.Name | None]:
    if exclude is None:
        return st.none()
    return st.none() | names(exclude)


@functools.cache
def _else_clauses(depth: int) -> st.SearchStrategy:
    exit_bodies = st.none() | blocks(depth - 1) if depth > 0 else st.none()
    return st.one_of(st.none(), st.just(n.ElseContinue()), exit_bodies.map(n.ElseExit))


@functools.cache
def splits(depth: int, label: st.SearchStrategy) -> st.SearchStrategy[n.Split]:
    body = blocks(depth - 1)
    otherwise = st.one_of(
        st.none(),
        st.builds(n.Otherwise, st.just(True), st.none() | body),
        st.builds(n.Otherwise, st.just(False), body))
    titles = st.none() | strings()

    def split(mode: str, branch: st.SearchStrategy, subject: st.SearchStrategy):
        items = st.tuples(st.lists(branch, max_size=3), otherwise).map(
            lambda b: tuple(b[0]) + ((b[1],) if b[1] is not None else ()))
        return st.builds(n.Split, titles, st.just(mode), subject, items, label=label)

    return st.one_of(
        split("when", st.builds(n.Branch, strings(), st.none() | expressions, st.none(), body),
              st.none()),
        split("random", st.builds(n.Branch, strings(), st.none(), percents, body), st.none()),
        split("value", st.builds(n.ValueBranch,
                                 st.lists(values, min_size=1, max_size=3).map(tuple), body),
              expressions),
    )


@functools.cache
def statements(depth: int, first_exclude: frozenset[str]) -> st.SearchStrategy[n.Node]:
    """A step in a block (`first_exclude=BLOCK_FIRST`) or among a flow's items."""
    label = _labels(first_exclude)
    simple = [
        commands(depth, first_exclude, first_exclude),
        st.builds(n.Wait, st.one_of(durations, numbers, sizes), label=label),
        st.builds(n.WaitUntil, dates, st.none() | times(), label=label),
        st.builds(n.WaitFor, expressions, st.none() | quantities | numbers,
                  _else_clauses(depth), label=label),
        st.builds(n.Goto, names(), label=label),
        st.builds(n.Exit, st.none() | blocks(depth - 1) if depth > 0 else st.none(), label=label),
        st.builds(n.Complete, st.none() | blocks(depth - 1) if depth > 0 else st.none(),
                  label=label),
    ]
    if depth > 0:
        simple.append(splits(depth, label))
    return st.one_of(simple)


@functools.cache
def blocks(depth: int) -> st.SearchStrategy[n.Block]:
    return st.lists(statements(depth, BLOCK_FIRST), max_size=3).map(
        lambda s: n.Block(tuple(s)))


# ----------------------------------------------------------------------------- declarations

event_phrases = st.lists(
    st.one_of(words(EVENT_RESERVED).map(n.Word), refs, strings(), numbers),
    min_size=1, max_size=4).map(lambda p: n.EventPhrase(tuple(p)))


@functools.cache
def handlers(depth: int) -> st.SearchStrategy[n.Handler]:
    return st.builds(n.Handler, event_phrases, st.none() | expressions, blocks(depth))


@functools.cache
def handler_items(depth: int) -> st.SearchStrategy[tuple[n.Node, ...]]:
    return st.lists(st.one_of(handlers(depth), commands(depth, HANDLER_FIRST)),
                    max_size=3).map(tuple)


trigger_items = st.one_of(
    event_phrases.map(n.OnEvent),
    expressions.map(n.Filter),
    commands(1, TRIGGER_FIRST),
)
settings = blocks(1).map(n.Settings)
for_clauses = names().map(n.ForClause)


_flow_headers = st.tuples(
    st.none() | for_clauses,
    st.none() | settings,
    st.none() | (st.lists(trigger_items, min_size=1, max_size=4) | st.just([])).map(
        lambda i: n.Trigger(tuple(i))),
    st.none() | expressions.map(n.Success),
)


@st.composite
def _flow_items(draw) -> tuple[n.Node, ...]:
    """The header items, each there or not, then steps; usually in the usual order, but
    the grammar takes any order, and so does the AST."""
    items = [h for h in draw(_flow_headers) if h is not None]
    items += draw(st.lists(statements(MAX_DEPTH, FLOW_FIRST), max_size=5))
    if draw(st.integers(0, 3)) == 0:
        items = draw(st.permutations(items))
    return tuple(items)


def flows() -> st.SearchStrategy[n.Flow]:
    return st.builds(n.Flow, names(), st.none() | strings(), _flow_items())


def pipelines() -> st.SearchStrategy[n.Pipeline]:
    stage = st.builds(n.Stage, names(), st.none() | strings(), st.none() | handler_items(1))
    move = st.builds(n.Move, names(), names(),
                     st.lists(event_phrases, min_size=1, max_size=3).map(tuple))
    items = st.one_of(for_clauses, settings, stage, move, handlers(1))
    return st.builds(n.Pipeline, names(), st.none() | strings(),
                     st.lists(items, max_size=6).map(tuple))


field_decls = st.builds(
    n.FieldDecl, names(), st.lists(words(TYPE_RESERVED), min_size=1, max_size=3).map(tuple),
    st.none() | st.integers(0, 500).map(n.Num) | numbers)
schemas = st.builds(n.Schema, names(), st.lists(field_decls, max_size=4).map(tuple))

declarations = st.one_of(
    flows(),
    flows(),  # twice: the main construct, with the most node types
    pipelines(),
    st.builds(n.Form, names(), st.none() | strings(), handler_items(MAX_DEPTH)),
    st.builds(n.Link, names(), strings(), handler_items(MAX_DEPTH)),
    schemas,
    st.builds(n.ActionDecl, strings(), blocks(1)),
    st.builds(n.EventDecl, strings(), blocks(1)),
)
files = st.lists(declarations, max_size=3).map(lambda d: n.File("<generated>", tuple(d)))
