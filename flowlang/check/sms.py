"""SMS texts (DESIGN §5): FL601 a text longer than one segment, FL602 a text with
characters outside GSM-7.

Which texts: the setting named by an action's `effect sends sms setting NAME`
(`send sms`'s `text`, or a project's own action declared the same way). Staff
notifications (`effect notifies sms`) are not messages to the participant and
are not counted.

How they are counted (3GPP TS 23.038 / 23.040): a text made only of GSM-7
characters is sent in septets — one per character of the basic set, two per
character of the extension table (`^ { } \\ [ ~ ] | €` and form feed) — 160 in
one segment, 153 per segment once it needs several (the rest carries the
concatenation header; an escape pair is never split between two segments). Any
other character sends the whole text as UCS-2: 70 UTF-16 code units in one
segment, 67 per segment when concatenated (a character outside the BMP, such as
an emoji, is two units and is never split).

Templates are measured, not rendered: literal text counts as written, `{% … %}`
and `{# … #}` tags count as nothing (the text inside `{% if %}` blocks counts,
every branch of it), and a `{{ … }}` placeholder counts as the longest value of
the fields it shows (the schema's `max N`; 20 for a field without one), assumed
GSM-7. A template that does not parse is FL305 and is not measured.
"""
from __future__ import annotations

import unicodedata
from typing import Iterator

import attrs
from jinja2 import TemplateSyntaxError
from jinja2 import nodes as j

from flowlang import nodes as n
from flowlang import templates
from flowlang.check.context import CheckContext, ResolvedAction, ResolvedSetting
from flowlang.stdlib import DEFAULT_TEXT_MAX, Registry

#: The GSM 03.38 basic character set (one septet each). 0x1B, the escape to the
#: extension table, is not a character of its own.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
#: The extension table: two septets each (the escape and the character).
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

#: Look-alikes that often slip in from word processors, with their GSM-7 stand-ins.
STAND_INS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\t": " ", "`": "'",
    "\u00b4": "'",
}


@attrs.frozen
class Placeholder:
    """A `{{ … }}` in the text: the fields it shows and how long it can be."""

    fields: tuple[tuple[str, int], ...]  # (dotted path, longest value)
    length: int


@attrs.frozen
class Measure:
    """A text's length in its encoding and the segments it takes."""

    encoding: str  # "GSM-7" | "UCS-2"
    length: int    # septets or UTF-16 code units
    segments: int
    outside: tuple[str, ...]  # characters outside GSM-7, each once, in order


def rule(ctx: CheckContext) -> None:
    for action in ctx.resolved.values():
        for setting, value, template in sms_texts(action):
            check_text(ctx, setting, value, template)


def sms_texts(action: ResolvedAction) -> Iterator[tuple[ResolvedSetting, n.Str, bool]]:
    """The texts an action sends as SMS to the participant: the settings its
    `sends sms` effects name, with their value and whether it is a template."""
    for effect in action.decl.effects:
        if effect.verb != "sends" or effect.kind != "sms" or effect.setting is None:
            continue
        setting = action.setting(effect.setting)
        if setting is None or setting.pattern is None:
            continue
        for slot, value in zip(setting.pattern.slots, setting.values):
            if isinstance(value, n.Str):
                yield setting, value, slot.kind == "template"
                break


def check_text(ctx: CheckContext, setting: ResolvedSetting, value: n.Str, template: bool) -> None:
    """FL601 and FL602 for one text, at its setting's line."""
    line = setting.line
    pieces = split_template(value.value, ctx.registry) if template else [value.value]
    if pieces is None:
        return  # FL305
    measure = measure_pieces(pieces)
    if measure.segments > 1:
        single = GSM_SINGLE if measure.encoding == "GSM-7" else UCS2_SINGLE
        where = "" if measure.encoding == "GSM-7" else " in UCS-2"
        ctx.report("FL601", line,
                   f"the SMS text is {measure.length} characters{where}: {measure.segments} SMS "
                   f"segments ({single} fit in one)",
                   help=_length_help(pieces, measure))
    if measure.outside:
        shown = ", ".join(_show(c) for c in measure.outside)
        ctx.report("FL602", line,
                   f"the SMS text has characters outside GSM-7: {shown}; it is sent as UCS-2, "
                   f"{UCS2_SINGLE} characters a segment instead of {GSM_SINGLE}",
                   help=_gsm_help(measure.outside))


# ---------------------------------------------------------------------- measuring

def split_template(text: str, registry: Registry) -> list[str | Placeholder] | None:
    """The text's literal pieces and placeholders, in order; None if it does not parse."""
    if "{" not in text:
        return [text]
    try:
        tree = templates.environment().parse(text)
    except TemplateSyntaxError:
        return None
    pieces: list[str | Placeholder] = []
    for output in tree.find_all(j.Output):
        for node in output.nodes:
            if isinstance(node, j.TemplateData):
                pieces.append(node.data)
            elif isinstance(node, j.Const):
                pieces.append(str(node.value))
            else:
                paths = dict.fromkeys(_paths(node))  # `{{ a if a else "x" }}` shows `a` once
                fields = tuple((".".join(p), _longest(registry, p)) for p in paths)
                length = sum(f[1] for f in fields) if fields else DEFAULT_TEXT_MAX
                pieces.append(Placeholder(fields, length))
    return pieces


def measure_pieces(pieces: list[str | Placeholder]) -> Measure:
    outside = tuple(dict.fromkeys(
        c for p in pieces if isinstance(p, str) for c in p
        if c not in GSM_BASIC and c not in GSM_EXTENSION))
    costs: list[int] = []
    for piece in pieces:
        if isinstance(piece, Placeholder):
            costs.extend([1] * piece.length)
        elif outside:
            costs.extend(2 if ord(c) > 0xFFFF else 1 for c in piece)
        else:
            costs.extend(2 if c in GSM_EXTENSION else 1 for c in piece)
    if outside:
        return Measure("UCS-2", sum(costs), _segments(costs, UCS2_SINGLE, UCS2_PART), outside)
    return Measure("GSM-7", sum(costs), _segments(costs, GSM_SINGLE, GSM_PART), ())


def _segments(costs: list[int], single: int, part: int) -> int:
    """Segments for characters of these costs: one if all fit in `single`, else
    packed `part` at a time without splitting a character."""
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments


def _paths(expr: j.Node) -> list[tuple[str, ...]]:
    """The field paths an expression reads (`person.company.name`), outermost only."""
    found: list[tuple[str, ...]] = []
    inner: set[int] = set()
    kinds = (j.Getattr, j.Getitem, j.Name)
    candidates = list(expr.find_all(kinds))
    if isinstance(expr, kinds):
        candidates.insert(0, expr)
    for node in candidates:
        if id(node) in inner:
            continue
        names: list[str] = []
        while isinstance(node, (j.Getattr, j.Getitem)):
            inner.add(id(node.node))
            if isinstance(node, j.Getattr):
                names.append(node.attr)
            elif isinstance(node.arg, j.Const) and isinstance(node.arg.value, str):
                names.append(node.arg.value)
            else:
                names = []
                break
            node = node.node
        if isinstance(node, j.Name) and node.ctx == "load":
            found.append((node.name, *reversed(names)))
    return found


def _longest(registry: Registry, path: tuple[str, ...]) -> int:
    """The longest value of the field at `path`, from the schemas (`max N`)."""
    entity = path[0]
    for i, name in enumerate(path[1:], start=1):
        field = registry.field(entity, name)
        if field is None:
            break
        if i == len(path) - 1:
            return field.max_length if field.max_length is not None else DEFAULT_TEXT_MAX
        if field.entity is None:
            break
        entity = field.entity
    return DEFAULT_TEXT_MAX


def _length_help(pieces: list[str | Placeholder], measure: Measure) -> str:
    fields = dict(f for p in pieces if isinstance(p, Placeholder) for f in p.fields)
    counted = ""
    if fields:
        listing = ", ".join(f"`{path}` as {length}" for path, length in fields.items())
        counted = f" (placeholders count as their field's longest value: {listing})"
    return f"shorten the text{counted}, or accept {measure.segments} segments per message"


def _gsm_help(outside: tuple[str, ...]) -> str:
    replace = [f"{_plain(c)} with {_plain(STAND_INS[c])}" for c in outside if c in STAND_INS]
    if not replace:
        return "leave them out to send the text as GSM-7"
    others = " and leave out the others" if len(replace) < len(outside) else ""
    return f"replace {', '.join(replace)}{others} to send the text as GSM-7"


def _plain(text: str) -> str:
    """A character as the user would type it; invisible ones by name."""
    if text == " ":
        return "a space"
    if len(text) == 1 and not (text.isprintable() and not text.isspace()):
        return f"U+{ord(text):04X} {unicodedata.name(text, '')}".rstrip()
    return text


def _show(char: str) -> str:
    """`'🎉' (U+1F389 PARTY POPPER)`; invisible characters by code and name only."""
    code = f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()
    if char.isprintable() and not char.isspace():
        return f"'{char}' ({code})"
    return code
