"""What steps need from their flow: FL304 (a sender, a reply-to address, an SMS
sender — from the step's own settings or the flow's, as each action's `needs`
lines declare) and FL306 (automatic e-mail from a sender who has not authorized
it in this flow). Also the flow settings' own values: time zone, holiday
country, workdays."""
from __future__ import annotations

import functools
import zoneinfo

from flowlang import nodes as n
from flowlang.check.context import CheckContext, ResolvedAction, ResolvedSetting, suggest
from flowlang.check.steps import walk

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def flow_settings(ctx: CheckContext, decl) -> dict[str, ResolvedSetting]:
    """The flow's (or pipeline's) settings by name, first occurrence each, with
    repeated settings (`authorize auto send`) under their name as a list too."""
    found: dict[str, ResolvedSetting] = {}
    for item in decl.items:
        if isinstance(item, n.Settings):
            for line in item.body.statements:
                resolved = ctx.resolved_settings.get(id(line))
                if resolved is not None:
                    found.setdefault(resolved.decl.text, resolved)
    return found


def rule(ctx: CheckContext) -> None:
    for decl in ctx.declarations((n.Flow, n.Pipeline)):
        settings = flow_settings(ctx, decl)
        setting_values(ctx, decl)
        if isinstance(decl, n.Flow):
            authorized = authorized_senders(ctx, decl)
            for step in _actions(ctx, decl.steps):
                needs(ctx, step, settings)
                authorization(ctx, step, settings, authorized)


def _actions(ctx: CheckContext, statements):
    """Every resolved action among the steps (walk reaches exit and complete blocks)."""
    for step in walk(statements):
        resolved = ctx.action_of(step)
        if resolved is not None:
            yield resolved


def authorized_senders(ctx: CheckContext, flow: n.Flow) -> set[str]:
    senders = set()
    for item in flow.items:
        if isinstance(item, n.Settings):
            for line in item.body.statements:
                resolved = ctx.resolved_settings.get(id(line))
                if resolved is not None and resolved.decl.text == "authorize auto send":
                    value = resolved.value()
                    if isinstance(value, n.Str):
                        senders.add(value.value.lower())
    return senders


def needs(ctx: CheckContext, step: ResolvedAction, settings: dict[str, ResolvedSetting]) -> None:
    for need in step.decl.needs:
        if any((kind == "setting" and step.setting(name) is not None) or
               (kind == "flow" and name in settings) for kind, name in need.alternatives):
            continue
        own = [name for kind, name in need.alternatives if kind == "setting"]
        flow = [name for kind, name in need.alternatives if kind == "flow"]
        ways = []
        if own:
            ways.append("`" + own[0] + "` on the step")
        if flow:
            ways.append("`" + flow[0] + "` in the flow's settings")
        ctx.report("FL304", step.command, f"`{step.phrase}` needs {need.what}, and neither the "
                   "step nor the flow gives one",
                   help="set " + " or ".join(ways) + "; a flow with this step cannot be started")


def sender(step: ResolvedAction, settings: dict[str, ResolvedSetting]) -> str | None:
    """The step's sender: its own `from`, else the flow's, by its sender need."""
    for need in step.decl.needs:
        for kind, name in need.alternatives:
            found = step.setting(name) if kind == "setting" else settings.get(name)
            value = found.value() if found is not None else None
            if isinstance(value, n.Str):
                return value.value
        return None
    return None


def authorization(ctx: CheckContext, step: ResolvedAction, settings, authorized: set[str]) -> None:
    flag = step.decl.authorization_flag
    if flag is None or step.setting(flag) is None:
        return
    who = sender(step, settings)
    if who is None:
        return  # FL304 already says the sender is missing
    if who.lower() not in authorized:
        ctx.report("FL306", step.command, f"automatic e-mail from `{who}`, who has not authorized "
                   "automatic sending in this flow",
                   help=f'add `authorize auto send "{who}"` to the flow\'s settings, or drop `{flag}` '
                        "to send it as a draft")


@functools.cache
def _countries() -> frozenset[str]:
    import holidays
    return frozenset(holidays.list_supported_countries())


def setting_values(ctx: CheckContext, decl) -> None:
    for item in decl.items:
        if not isinstance(item, n.Settings):
            continue
        for line in item.body.statements:
            resolved = ctx.resolved_settings.get(id(line))
            if resolved is None or resolved.pattern is None:
                continue
            for slot, value in zip(resolved.pattern.slots, resolved.values):
                if slot.kind == "timezone" and isinstance(value, n.Str):
                    timezone(ctx, value)
                elif slot.kind == "country" and isinstance(value, n.Str):
                    if value.value.upper() not in _countries():
                        ctx.report("FL302", value, f"no public holidays are known for `{value.value}`",
                                   help=suggest(value.value.upper(), sorted(_countries())) or
                                   'use an ISO country code such as "NO", "SE" or "DE"')
                elif slot.kind == "weekdays" and isinstance(value, n.ListLit):
                    seen = set()
                    for day in value.items:
                        if day.text not in WEEKDAYS:
                            ctx.report("FL302", day, f"`{day.text}` is not a weekday",
                                       help=suggest(day.text, WEEKDAYS) or "write mon tue wed thu fri sat sun")
                        elif day.text in seen:
                            ctx.report("FL302", day, f"`{day.text}` is listed twice")
                        seen.add(day.text)


def timezone(ctx: CheckContext, value: n.Str) -> None:
    try:
        zoneinfo.ZoneInfo(value.value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        ctx.report("FL302", value, f"unknown time zone `{value.value}`",
                   help=suggest(value.value, sorted(zoneinfo.available_timezones())) or
                   'use an IANA name such as "Europe/Oslo" or "UTC"')
