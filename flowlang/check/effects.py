"""The effect model: what each resolved action does to the participant's data, as
plain tuples derived only from the declarations (`effect adds selection`) and from
`update` operations. The conflict and duplicate analyses (FL501–FL504) and the
behaviour-condition analysis (FL404) read effects, never action phrases.
"""
from __future__ import annotations

from typing import Iterable

import attrs

from flowlang import nodes as n
from flowlang.check.context import CheckContext, ResolvedAction

#: Verbs that undo each other on the same target.
OPPOSITE = {"adds": "removes", "removes": "adds", "sets": "clears", "clears": "sets"}
#: Verbs whose repetition on one path is a duplicate (FL502). Accumulating verbs
#: (`increases`, `decreases`) are meant to repeat.
REPEATABLE = {"increases", "decreases"}

_OPERATION_VERBS = {"set": "sets", "clear": "clears", "increase": "increases",
                    "decrease": "decreases", "add": "adds", "remove": "removes"}


@attrs.frozen
class Effect:
    verb: str          # adds, removes, sets, clears, increases, sends, creates, hands_over, …
    kind: str          # selection, project, interest, email, sms, field, list person.topics, …
    target: str | None  # the selection's name, the field's path, the e-mail's name …
    value: object = None  # for `sets`: the value set
    node: n.Node = attrs.field(default=None, eq=False, hash=False, repr=False)

    @property
    def key(self) -> tuple:
        """What the effect acts on: two effects with one key can conflict or repeat."""
        return (self.kind, self.target)

    def describe(self) -> str:
        target = f" {self.target!r}" if self.target is not None else ""
        return f"{self.verb} {self.kind}{target}".replace("'", '"')


def value_text(node: n.Node | None) -> object:
    """A comparable value for a literal node (None when there is none)."""
    if node is None:
        return None
    if isinstance(node, n.Word):
        return node.text
    if isinstance(node, n.Ref):
        return node.dotted
    if isinstance(node, n.ListLit):
        return tuple(value_text(i) for i in node.items)
    if isinstance(node, (n.DurationLit, n.SizeLit)):
        return str(node.value)
    return getattr(node, "value", None)


def effects_of(action: ResolvedAction) -> list[Effect]:
    """The effects of one resolved action, in the order they happen."""
    out: list[Effect] = []
    for effect in action.decl.effects:
        if effect.setting is not None:
            setting = action.setting(effect.setting)
            target = value_text(setting.value()) if setting is not None else None
        else:
            target = value_text(action.arg())
        out.append(Effect(effect.verb, effect.kind, target, None, action.command))
    entity = action.decl.operations_on
    for op in action.operations:
        field = op.field_name if op.field_name.startswith(entity + ".") else f"{entity}.{op.field_name}"
        verb = _OPERATION_VERBS[op.op]
        if op.op in ("add", "remove"):
            out.append(Effect(verb, f"list {field}", value_text(op.value), None, op.line))
        else:
            out.append(Effect(verb, "field", field, value_text(op.value) if op.op == "set" else None,
                              op.line))
    return out


def conflicts(earlier: Effect, later: Effect) -> bool:
    """Do two effects contradict each other (FL501, FL504)?"""
    if earlier.key != later.key:
        return False
    if OPPOSITE.get(earlier.verb) == later.verb:
        return True
    return earlier.verb == later.verb == "sets" and earlier.value != later.value


def duplicates(earlier: Effect, later: Effect) -> bool:
    """Is `later` a repetition of `earlier` (FL502, FL503)?"""
    return (earlier.key == later.key and earlier.verb == later.verb
            and earlier.verb not in REPEATABLE and earlier.value == later.value)


def command_effects(ctx: CheckContext, commands: Iterable[n.Node]) -> list[Effect]:
    out: list[Effect] = []
    for command in commands:
        resolved = ctx.action_of(command)
        if resolved is not None:
            out.extend(effects_of(resolved))
    return out
