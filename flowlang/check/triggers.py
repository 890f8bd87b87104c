"""A flow against the form or link that starts it (DESIGN §3.2, §5): FL503 a flow
action that repeats an action of that form or link, FL504 one that undoes or
overrides it.

A flow is started by a form or link when an `on` event of its trigger has a
`{form}` or `{link}` slot (`on form signup submitted`, `on link pricing
clicked`). The form's or link's handlers for that same event type (`on submit`
for `form.submitted`, `on click` for `link.clicked`) have run by the time the
participant enters, so every action of the flow — on any path, waits or not,
in exit, `else exit`, `no mobile exit` and `complete` blocks too — comes after
each of theirs. Like FL501/FL502, the rule compares effects only
(`effects.conflicts`, `effects.duplicates`), never action phrases.
"""
from __future__ import annotations

from typing import Iterator

from flowlang import nodes as n
from flowlang.check.cfg import describe
from flowlang.check.context import CheckContext
from flowlang.check.effects import Effect, conflicts, duplicates, effects_of
from flowlang.check.steps import walk

#: Reference slot kinds of trigger events that name a declaration with actions.
STARTERS: dict[str, type] = {"form": n.Form, "link": n.Link}

#: code -> (test, what the flow's action does to the starter's, help line)
CHECKS = (
    ("FL503", duplicates, "repeats",
     "the {kind} has done this already when the flow starts; remove one of them"),
    ("FL504", conflicts, "contradicts",
     "the {kind} does the opposite just before the flow starts; keep one of them"),
)


def rule(ctx: CheckContext) -> None:
    for flow in ctx.declarations(n.Flow):
        starters = list(_starters(ctx, flow))
        if not starters:
            continue
        theirs = [(kind, decl, effect) for kind, decl, event_type in starters
                  for effect in _handler_effects(ctx, decl, event_type)]
        if not theirs:
            continue
        for effect in _effects(ctx, flow.steps):
            for code, test, verb, help_line in CHECKS:
                found = [(kind, decl, other) for kind, decl, other in theirs if test(other, effect)]
                if found:
                    _report(ctx, code, verb, help_line, effect, found)


def _report(ctx: CheckContext, code: str, verb: str, help_line: str, effect: Effect,
            found: list[tuple[str, n.Node, Effect]]) -> None:
    kind, decl, first = found[0]
    ctx.report(code, effect.node,
               f"`{describe(effect.node)}` {verb} `{describe(first.node)}` of {kind} "
               f"`{decl.name.text}`, which starts this flow",
               related=[(other.node, f"the {k}'s action") for k, _, other in found],
               help=help_line.format(kind=kind))


def _starters(ctx: CheckContext, flow: n.Flow) -> Iterator[tuple[str, n.Node, str]]:
    """(kind, form or link, event type) for each form or link that the flow's
    trigger names, once each."""
    trigger = flow.trigger
    if trigger is None:
        return
    seen: set[int] = set()
    for item in trigger.items:
        if not isinstance(item, n.OnEvent):
            continue
        resolved = ctx.events.get(id(item.event))
        if resolved is None:
            continue  # FL206
        event, values = resolved
        for slot, value in zip(event.pattern.slots, values):
            kind = slot.kind
            if kind not in STARTERS or not isinstance(value, n.Word):
                continue
            decl = ctx.lookup(value.text, STARTERS[kind])
            if decl is None or ctx.is_broken(decl):
                continue  # FL204, or a declaration with syntax errors
            key = id(decl)
            if key not in seen:
                seen.add(key)
                yield kind, decl, event.type


def _handler_effects(ctx: CheckContext, decl: n.Node, event_type: str) -> Iterator[Effect]:
    """The effects of the declaration's handlers for events of `event_type`."""
    for item in decl.items:
        if not isinstance(item, n.Handler):
            continue
        resolved = ctx.events.get(id(item.event))
        if resolved is None or resolved[0].type != event_type:
            continue
        yield from _effects(ctx, item.body.statements)


def _effects(ctx: CheckContext, statements) -> Iterator[Effect]:
    """The effects of every action in `statements` and the blocks below them."""
    for step in walk(statements):
        action = ctx.action_of(step)
        if action is not None:
            yield from effects_of(action)
