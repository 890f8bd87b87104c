"""Phrase patterns: how declarations say what a line may look like.

A pattern is words and slots: `"send email {text}"`, `"task in {duration}"`,
`"{text} {size?}"`. Matching a pattern against the parts of a line yields the
values of its slots, or says which part did not fit and what was expected there.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import attrs

from flowlang import nodes as n

_SLOT = re.compile(r"\{(\w+)(\?)?\}")


@attrs.frozen
class Slot:
    kind: str
    optional: bool = False

    def __str__(self) -> str:
        return SLOT_TEXT.get(self.kind, self.kind.upper())


@attrs.frozen
class Pattern:
    items: tuple[str | Slot, ...]
    text: str
    #: The literal words before the first slot: the phrase that names it.
    words: tuple[str, ...] = attrs.field(eq=False, default=())
    slots: tuple[Slot, ...] = attrs.field(eq=False, default=())

    def describe(self) -> str:
        """The pattern as a user reads it: `task in DURATION`."""
        return " ".join(str(i) for i in self.items)


def parse_pattern(text: str) -> Pattern:
    items: list[str | Slot] = []
    for word in text.split():
        match = _SLOT.fullmatch(word)
        items.append(Slot(match.group(1), bool(match.group(2))) if match else word)
    words: list[str] = []
    for item in items:
        if isinstance(item, Slot):
            break
        words.append(item)
    slots = tuple(i for i in items if isinstance(i, Slot))
    return Pattern(tuple(items), text, tuple(words), slots)


#: How a slot reads in a message.
SLOT_TEXT = {
    "text": '"TEXT"', "template": '"TEXT"', "email": '"ADDRESS"', "number": "NUMBER",
    "duration": "DURATION", "size": "SIZE", "percent": "PERCENT", "date": "DATE",
    "time": "TIME", "list": '["…"]', "word": "WORD", "field": "FIELD", "flow": "FLOW",
    "form": "FORM", "link": "LINK", "stage": "STAGE", "timezone": '"Area/City"',
    "country": '"COUNTRY CODE"', "weekdays": "mon tue wed …",
}

#: Slots that take one or more parts (always the last item of their pattern).
VARIADIC = {"weekdays"}

#: What a slot of each kind accepts, by node type. An `InvalidLit` fits every
#: slot: its FL101 is already reported, and one mistake gets one diagnostic.
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "text": (n.Str,), "template": (n.Str,), "email": (n.Str,), "number": (n.Num,),
    "duration": (n.DurationLit,), "size": (n.SizeLit,), "percent": (n.Percent,),
    "date": (n.DateLit,), "time": (n.TimeLit,), "list": (n.ListLit,), "word": (n.Word,),
    "field": (n.Word, n.Ref), "flow": (n.Word,), "form": (n.Word,), "link": (n.Word,),
    "stage": (n.Word,), "timezone": (n.Str,), "country": (n.Str,), "weekdays": (n.Word,),
    "value": (n.Str, n.Num, n.Word, n.Ref, n.Percent, n.DateLit,
                                  n.TimeLit, n.DurationLit, n.SizeLit, n.ListLit),
}


def fits(kind: str, part: n.Node) -> bool:
    return isinstance(part, n.InvalidLit) or isinstance(part, _ACCEPTS.get(kind, ()))


def _word_fits(word: str, part: n.Node) -> bool:
    if isinstance(part, n.Word):
        return part.text == word
    return isinstance(part, n.Str) and part.value.lower() == word.lower()


@attrs.frozen
class Match:
    """Slot values by position in the pattern's slots (None for a skipped optional)."""

    values: tuple[n.Node | None, ...]


@attrs.frozen
class Mismatch:
    """Where matching stopped: the part that did not fit (None: the line ended too
    early) and what the pattern wanted there."""

    part: n.Node | None
    expected: str
    consumed: int


def match(pattern: Pattern, parts: Sequence[n.Node], start: int = 0,
          item_start: int = 0) -> Match | Mismatch:
    """Match `parts[start:]` against `pattern.items[item_start:]`, whole."""
    best: Mismatch | None = None
    values: list[n.Node | None] = []

    def go(i: int, j: int) -> bool:
        if j == len(pattern.items):
            if i == len(parts):
                return True
            _note(Mismatch(parts[i], "the end of the line", i))
            return False
        item = pattern.items[j]
        part = parts[i] if i < len(parts) else None
        if isinstance(item, str):
            if part is not None and _word_fits(item, part):
                return go(i + 1, j + 1)
            _note(Mismatch(part, f"`{item}`", i))
            return False
        if part is not None and item.kind in VARIADIC and fits(item.kind, part):
            end = i
            while end < len(parts) and fits(item.kind, parts[end]):
                end += 1
            values.append(n.ListLit(tuple(parts[i:end]), span=part.span.to(parts[end - 1].span)))
            if go(end, j + 1):
                return True
            values.pop()
        elif part is not None and fits(item.kind, part):
            values.append(part)
            if go(i + 1, j + 1):
                return True
            values.pop()
        if item.optional:
            values.append(None)
            if go(i, j + 1):
                return True
            values.pop()
        _note(Mismatch(part, str(item), i))
        return False

    def _note(m: Mismatch) -> None:
        nonlocal best
        if best is None or m.consumed > best.consumed:
            best = m

    if go(start, item_start):
        return Match(tuple(values))
    assert best is not None
    return best


def longest_prefix(words: Sequence[str], candidates: Sequence, key: Callable) -> object | None:
    """The candidate whose `key(c)` (a tuple of words) is the longest prefix of `words`."""
    best, best_len = None, 0
    for candidate in candidates:
        prefix = key(candidate)
        if len(prefix) > best_len and tuple(words[:len(prefix)]) == prefix:
            best, best_len = candidate, len(prefix)
    return best
