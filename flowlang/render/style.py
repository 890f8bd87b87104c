"""The visual language both back ends draw: the `Diagram` model, the looks of its
kinds of node and edge, and the words of its labels.

A flow or pipeline (IR) becomes a `Diagram` (`flowlang.render.diagram`): nodes of a *kind* (message, CRM
action, wait, split, exit …) with their text already worded and wrapped, and
edges of a kind (next, branch, timeout, goto …) with their labels. The DOT and
Mermaid back ends only serialise a `Diagram`, so both say the same thing in the
same words and differ only in syntax. How each kind looks — shape in each back
end, fill and line colour, the legend's words — is one table, `KINDS` and
`EDGES`; a new kind is an entry there, not a branch in a renderer.

A step's kind comes from the IR: its state `kind`, and for an action the verbs of
the action's declared `effects` (`sends` makes a message, `creates`/`adds`/
`sets` a CRM action) and its `manual` flag — never from its phrase, so a
project's own actions are drawn by what they declare.

Everything here is pure and deterministic: the same IR gives the same diagram.
"""
from __future__ import annotations

import functools
import re
import textwrap
from typing import Callable, Mapping

import attrs

WRAP = 28            # characters a label line holds
TEMPLATE_MAX = 60    # a template longer than this is cut with an ellipsis
LIST_MAX = 6         # actions listed in a terminal, stage or handler node


# ------------------------------------------------------------------- the looks

@attrs.frozen
class Look:
    """How a kind of node is drawn: the legend's words, a Graphviz shape (with
    style and peripheries), a Mermaid shape (its opening and closing brackets),
    and fill, line and text colours shared by both."""
    legend: str
    dot_shape: str
    mermaid: tuple[str, str]
    fill: str
    stroke: str
    text: str = "#212121"
    dot_style: str = "filled"
    peripheries: int = 1


KINDS: dict[str, Look] = {
    "trigger": Look("trigger: events, filter, exclusion", "box", (">", "]"),
                    "#ede7f6", "#5e35b1", dot_style="filled,diagonals"),
    "message": Look("message: e-mail, SMS, draft, notification", "box", ("(", ")"),
                    "#e3f2fd", "#1e88e5", dot_style="rounded,filled"),
    "crm": Look("CRM action: create, update, add to …", "box", ("[", "]"), "#e8f5e9", "#43a047"),
    "action": Look("other action", "box", ("[", "]"), "#f5f5f5", "#757575"),
    "wait": Look("wait", "parallelogram", ("[/", "/]"), "#fff8e1", "#f9a825"),
    "wait_for": Look("wait for a condition", "hexagon", ("{{", "}}"), "#fff3e0", "#ef6c00"),
    "split": Look("split", "diamond", ("{", "}"), "#f3e5f5", "#8e24aa"),
    "goto": Look("goto", "ellipse", ("((", "))"), "#eceff1", "#546e7a"),
    "exit": Look("exit: dropout, with hand-over", "octagon", ("([", "])"), "#ffebee", "#e53935"),
    "complete": Look("complete", "box", ("([", "])"), "#e8f5e9", "#2e7d32",
                     dot_style="rounded,filled", peripheries=2),
    "end": Look("end of the flow: completed", "doublecircle", ("(((", ")))"),
                "#e8f5e9", "#2e7d32"),
    "stage": Look("stage", "box", ("(", ")"), "#e0f2f1", "#00897b", dot_style="rounded,filled"),
    "final": Look("final stage", "box", ("[[", "]]"), "#b2dfdb", "#00695c",
                  dot_style="rounded,filled", peripheries=2),
    "handler": Look("handler: actions on an event", "note", (">", "]"), "#fce4ec", "#d81b60"),
}

#: A manual step (the participant rests until the user marks it done) keeps its
#: kind's shape and colour and gets a dashed, heavier outline and this line.
MANUAL_LEGEND = "manual step: waits until done"
MANUAL_LINE = "manual: waits until done"
MANUAL_DASH = "5 3"
MANUAL_PENWIDTH = 2.0


@attrs.frozen
class EdgeLook:
    legend: str
    color: str
    style: str = "solid"        # solid, dashed, bold, invis
    mermaid: str = "-->"        # -->, -.->, ==>, ~~~
    constraint: bool = True     # goto edges curve back without pulling the layout
    dot_tailport: str | None = None  # leave the node from this side (DOT)


EDGES: dict[str, EdgeLook] = {
    "next": EdgeLook("next step", "#616161"),
    "branch": EdgeLook("split branch: name and condition", "#8e24aa"),
    "timeout": EdgeLook("timeout (else continue)", "#ef6c00", "dashed", "-.->", dot_tailport="e"),
    "exit": EdgeLook("else exit, otherwise exit, no … exit", "#e53935", "dashed", "-.->"),
    "goto": EdgeLook("goto: back to a label", "#546e7a", "bold", "==>", constraint=False),
    "move": EdgeLook("automatic move on events", "#00897b", "bold", "==>"),
    "creates": EdgeLook("creates a record in a stage", "#d81b60", "dashed", "-.->"),
    "order": EdgeLook("", "#ffffff", "invis", "~~~"),
}

#: Participant statuses in the order a count line lists them, and their words.
STATUSES: dict[str, str] = {
    "queued": "queued", "active": "active", "completed": "completed",
    "completed_success": "success", "dropout": "dropout", "failed": "failed",
}
HEAT = "#ff9800"       # the fill a node with the most participants blends towards
HEAT_MAX = 0.85


# ------------------------------------------------------------------ the model

@attrs.frozen
class Node:
    id: str
    kind: str
    title: tuple[str, ...]          # wrapped lines, drawn first (bold in DOT)
    lines: tuple[str, ...] = ()     # wrapped detail lines
    manual: bool = False
    group: str | None = None        # a side group: "handlers"
    counts: tuple[str, ...] = ()    # wrapped count lines (overlay)
    volume: float | None = None     # 0..1 of the busiest node (overlay)


@attrs.frozen
class Edge:
    tail: str
    head: str
    kind: str
    label: tuple[str, ...] = ()
    traffic: int | None = None      # participants that went this way (overlay)
    weight: float | None = None     # 0..1 of the busiest edge (overlay)


@attrs.frozen
class Diagram:
    name: str
    title: str
    direction: str                  # TB for flows, LR for pipelines
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    overlay: bool = False

    @property
    def kinds(self) -> list[str]:
        """The node kinds drawn, in the order of `KINDS` (for the legend)."""
        used = {n.kind for n in self.nodes}
        return [k for k in KINDS if k in used]

    @property
    def edge_kinds(self) -> list[str]:
        used = {e.kind for e in self.edges}
        return [k for k in EDGES if k in used and EDGES[k].legend]

    @property
    def has_manual(self) -> bool:
        return any(n.manual for n in self.nodes)


class RenderError(Exception):
    """The machine cannot be drawn as asked (a Mermaid limit, a bad counts file,
    no `dot` program); the message says why, in one line."""


# ----------------------------------------------------------------------- text

_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_GLUE = "\x00"


def wrap(text: str, width: int = WRAP) -> tuple[str, ...]:
    """Lines of at most `width` characters, broken at spaces but never inside a
    short `{{ placeholder }}`."""
    glued = _PLACEHOLDER.sub(lambda m: m.group(0).replace(" ", _GLUE) if len(m.group(0)) <= width
                             else m.group(0), text)
    lines = []
    for line in textwrap.wrap(glued, width, break_long_words=False, break_on_hyphens=False):
        # a word far longer than a line (a URL, a long id) is cut anyway
        while len(line) > width + 8:
            lines.append(line[:width])
            line = line[width:]
        lines.append(line)
    return tuple(line.replace(_GLUE, " ") for line in lines) or ("",)


def wrap_all(texts) -> tuple[str, ...]:
    return tuple(line for text in texts for line in wrap(text))


def shorten(text: str, limit: int = TEMPLATE_MAX) -> str:
    """One line of at most `limit` characters: whitespace collapsed, the rest cut
    with an ellipsis (templates can be pages long)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def quoted(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def number(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def duration(parts) -> str:
    return " ".join(f"{number(a)} {unit}{'' if a == 1 else 's'}" for a, unit in parts)


def literal(value) -> str:
    """A literal as the source writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict) and "duration" in value:
        return duration(value["duration"])
    if isinstance(value, dict) and "size" in value:
        return f"{number(value['size'][0])} {value['size'][1]}"
    return quoted(shorten(value))


#: Slot kinds whose values the source writes in quotes; the others (form, link,
#: flow, stage, field, word) are names.
_QUOTED_SLOTS = {"text", "template", "email"}


def _slot_text(kind: str, value, participant: str) -> str:
    if kind in _QUOTED_SLOTS:
        return quoted(shorten(value))
    if kind == "field" and isinstance(value, str) and "." not in value:
        return f"{participant}.{value}"
    return literal(value) if not isinstance(value, str) else value


@functools.cache
def _registry():
    from flowlang.stdlib import standard_registry
    return standard_registry()


@functools.cache
def _conditions() -> dict:
    return {e.type: e for e in _registry().conditions()}


@functools.cache
def _actions() -> dict:
    return {d.phrase: d for d in _registry().steps()}


# ---------------------------------------------------------------- expressions

_PRECEDENCE = {"or": 1, "and": 2, "not": 3}
_COMPARE = 4


def expr_text(node: Mapping | None, participant: str) -> str:
    """An IR expression back as readable source: `person.score >= 50`,
    `opened email "Welcome"`, `person in selection "S"`."""
    return "" if node is None else _expr(node, participant, 0)


def _expr(node: Mapping, participant: str, outer: int) -> str:
    for key, draw in _EXPRESSIONS.items():
        if key in node:
            return draw(node, participant, outer)
    return "?"


def _parens(text: str, own: int, outer: int) -> str:
    return f"({text})" if own < outer else text


def _op(node, participant, outer) -> str:
    op, args = node["op"], node["args"]
    if op in ("and", "or"):
        own = _PRECEDENCE[op]
        return _parens(f" {op} ".join(_expr(a, participant, own + (i > 0)) for i, a in enumerate(args)),
                       own, outer)
    if op == "not":
        inner = args[0]
        if inner.get("op") == "is set":
            return _parens(f"{_expr(inner['args'][0], participant, _COMPARE + 1)} is not set",
                           _COMPARE, outer)
        if "member" in inner:
            return _parens(_member(inner, participant, negated=True), _COMPARE, outer)
        return _parens(f"not {_expr(inner, participant, _PRECEDENCE['not'])}",
                       _PRECEDENCE["not"], outer)
    if op == "is set":
        return _parens(f"{_expr(args[0], participant, _COMPARE + 1)} is set", _COMPARE, outer)
    left, right = (_expr(a, participant, _COMPARE + 1) for a in args)
    return _parens(f"{left} {op} {right}", _COMPARE, outer)


def _field(node, participant, outer) -> str:
    return ".".join([participant, *node["field"]])


def _const(node, participant, outer) -> str:
    value = node["const"]
    if node.get("type") in ("date", "time"):
        return str(value)
    return literal(value)


def _list(node, participant, outer) -> str:
    return "[" + ", ".join(literal(v) for v in node["list"]) + "]"


def _member(node, participant, outer=0, negated: bool = False) -> str:
    return f"{participant} {'not in' if negated else 'in'} {node['member']} {quoted(node['name'])}"


def _happened(node, participant, outer) -> str:
    """A behaviour condition in the words its event declares (`condition
    "opened email {text}"`); an event without such words as its type and match."""
    kind, match = node["happened"], node.get("match") or {}
    decl = _conditions().get(kind)
    if decl is None or decl.condition is None:
        fields = ", ".join(f"{k} {literal(v)}" for k, v in match.items())
        return f"happened {kind}" + (f" ({fields})" if fields else "")
    words, slot = [], 0
    for item in decl.condition.items:
        if isinstance(item, str):
            words.append(item)
            continue
        key = decl.payload[slot] if slot < len(decl.payload) else None
        slot += 1
        if key in match:
            words.append(_slot_text(item.kind, match[key], participant))
    return " ".join(words)


_EXPRESSIONS: dict[str, Callable[[Mapping, str, int], str]] = {
    "op": _op, "field": _field, "const": _const, "list": _list,
    "member": _member, "happened": _happened,
}


# -------------------------------------------------------------------- actions

#: What an action's declared effects make it, by verb (DESIGN §4: the effect
#: model). The first matching kind of `_ACTION_KINDS` wins, so an e-mail that
#: also tags the person is drawn as a message.
VERB_KIND: dict[str, str] = {
    "sends": "message", "notifies": "message",
    "creates": "crm", "adds": "crm", "removes": "crm", "sets": "crm", "clears": "crm",
    "increases": "crm", "decreases": "crm", "assigns": "crm", "hands_over": "crm",
    "runs": "crm",
}
_ACTION_KINDS = ("message", "crm")

_OPERATION_TEXT = {
    "set": "set {field} = {value}", "clear": "clear {field}",
    "increase": "increase {field} by {value}", "decrease": "decrease {field} by {value}",
    "add": "add {value} to {field}", "remove": "remove {value} from {field}",
}


def action_kind(action: Mapping) -> str:
    kinds = {VERB_KIND.get(e.get("verb")) for e in action.get("effects", ())}
    return next((k for k in _ACTION_KINDS if k in kinds), "action")


def declaration(action: Mapping):
    """The stdlib's declaration of an action's phrase (None for a project's own:
    the IR does not carry declarations, and its effects already say enough)."""
    return _actions().get(action["action"])


def describe(action: Mapping, participant: str) -> str:
    """`send email "Welcome"`, `add to flow newsletter_winback`: the phrase with
    its arguments written as the declaration's slots say."""
    decl = declaration(action)
    slots = decl.pattern.slots if decl else ()
    args = []
    for i, arg in enumerate(action.get("args", ())):
        if arg is None:
            continue
        kind = slots[i].kind if i < len(slots) else "text"
        args.append(_slot_text(kind, arg, participant) if isinstance(arg, str) else literal(arg))
    return " ".join([action["action"], *args])


def details(action: Mapping) -> list[str]:
    """The lines under an action's title: its templates (subject, text, …),
    shortened, and an `update` block's operations."""
    settings = action.get("settings", {})
    out = []
    for name in action.get("templates", ()):
        if name == "$args" or name not in settings:
            continue
        values = settings[name] if isinstance(settings[name], list) else [settings[name]]
        out.extend(f"{name}: {shorten(v)}" for v in values)
    out += [name for name, value in settings.items() if value is True]  # flags: `auto`
    for op in action.get("operations", ()):
        out.append(_OPERATION_TEXT.get(op["op"], op["op"] + " {field}").format(
            field=op["field"], value=literal(op["value"])))
    return out


def action_list(actions, participant: str, prefix: str = "") -> list[str]:
    """One line per action, at most `LIST_MAX` (then `… and N more`)."""
    lines = [prefix + shorten(describe(a, participant)) for a in actions[:LIST_MAX]]
    if len(actions) > LIST_MAX:
        lines.append(f"… and {len(actions) - LIST_MAX} more")
    return lines


# ------------------------------------------------------------------ colouring

def blend(a: str, b: str, t: float) -> str:
    """The colour `t` of the way from `a` to `b` (both `#rrggbb`)."""
    pa = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    pb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(pa, pb))


def fill(node: Node, overlay: bool) -> str:
    """A node's fill: its kind's colour, or with counts its share of the
    participants, from white (nobody) to `HEAT` (the busiest step)."""
    if not overlay:
        return KINDS[node.kind].fill
    if not node.volume:
        return "#ffffff"
    return blend("#ffffff", HEAT, 0.15 + (HEAT_MAX - 0.15) * node.volume)


VOLUME_LEGEND = "shade: participants who passed (white: none)"
