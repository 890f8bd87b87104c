"""AST (checked) -> IR: one state machine per flow and per pipeline.

The compiler is pure: it reads the syntax tree and what the checker learned
(resolved actions, settings with their defaults, events and conditions) and
returns plain data. It refuses a project with check errors.

Stable ids: a step's id is its label, else a slug of its content under the path
of the branches that hold it (`split-engagement/interested/create-followup-call`),
with `-2`, `-3` for repeats in one block. Editing, adding or removing a step
elsewhere leaves the id alone; only two identical steps in one block are told
apart by their order (label them to pin their ids).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Iterable

import attrs

from flowlang import ir
from flowlang import nodes as n
from flowlang.check import analyse
from flowlang.check.context import CheckContext, ResolvedAction, ResolvedSetting
from flowlang.check.effects import effects_of
from flowlang.check.requirements import flow_settings
from flowlang.diagnostics import Diagnostic
from flowlang.project import Project


class CompileError(Exception):
    """The project has check errors; they are in `diagnostics`."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(f"{len(diagnostics)} error(s)")
        self.diagnostics = diagnostics


@attrs.define
class Compiled:
    machines: dict[str, dict]  # name -> IR
    diagnostics: list[Diagnostic]  # warnings that did not stop compilation


def compile_project(project: Project, ignore=()) -> Compiled:
    """The IR of every flow and pipeline; `ignore` hides codes as in `check`."""
    ctx = analyse(project, ignore)
    diagnostics = sorted(dict.fromkeys(ctx.diagnostics), key=Diagnostic.sort_key)
    errors = [d for d in diagnostics if d.is_error]
    if errors:
        raise CompileError(errors)
    machines: dict[str, dict] = {}
    for decl in ctx.declarations((n.Flow, n.Pipeline)):
        if isinstance(decl, n.Flow):
            machines[decl.name.text] = FlowCompiler(ctx, decl).compile()
        else:
            machines[decl.name.text] = compile_pipeline(ctx, decl)
    return Compiled(machines, diagnostics)


# ---------------------------------------------------------------------- values

def value(node: n.Node | None):
    """A literal node as JSON data."""
    if node is None:
        return None
    if isinstance(node, (n.Str, n.Num, n.Percent, n.BoolLit)):
        return node.value
    if isinstance(node, n.Word):
        return node.text
    if isinstance(node, n.Ref):
        return node.dotted
    if isinstance(node, n.DateLit):
        return node.value.isoformat() if node.value else node.text
    if isinstance(node, n.TimeLit):
        return node.value.strftime("%H:%M") if node.value else node.text
    if isinstance(node, n.DurationLit):
        return {"duration": [[a, u] for a, u in node.value.parts]}
    if isinstance(node, n.SizeLit):
        return {"size": [node.value.amount, node.value.unit]}
    if isinstance(node, n.ListLit):
        return [value(i) for i in node.items]
    return None


def _json(data):
    """An effect's target or value as JSON data (tuples as lists, dates as text)."""
    if isinstance(data, (tuple, list)):
        return [_json(d) for d in data]
    if isinstance(data, (_dt.date, _dt.time)):
        return data.isoformat()
    return data


def span(node: n.Node) -> dict:
    s = node.span
    return {"file": s.file, "line": s.line, "column": s.column, "end_line": s.end_line,
            "end_column": s.end_column}


def setting_value(resolved: ResolvedSetting):
    if resolved.pattern is None:
        return True
    slots = resolved.pattern.slots
    if len(resolved.pattern.items) == 1 and len(slots) == 1:
        return value(resolved.values[0])
    words = []
    values = iter(resolved.values)
    for item in resolved.pattern.items:
        if isinstance(item, str):
            words.append(item)
        else:
            v = next(values)
            if v is not None:
                words.append(_text(v))
    return " ".join(words)


def _text(node: n.Node) -> str:
    if isinstance(node, n.DurationLit):
        return str(node.value)
    if isinstance(node, n.SizeLit):
        return str(node.value)
    data = value(node)
    return data if isinstance(data, str) else str(data)


def setting_map(ctx: CheckContext, settings: dict[str, ResolvedSetting], vocabulary) -> dict:
    out = {}
    for decl in vocabulary.settings if vocabulary else ():
        found = settings.get(decl.text)
        if found is not None:
            out[decl.text] = setting_value(found)
        elif decl.default is not None:
            out[decl.text] = decl.default
    return out


# ---------------------------------------------------------------------- expressions

def expression(ctx: CheckContext, node: n.Node, participant: str) -> dict:
    if isinstance(node, n.BoolOp):
        return {"op": node.op, "args": [expression(ctx, node.left, participant),
                                        expression(ctx, node.right, participant)]}
    if isinstance(node, n.Not):
        return {"op": "not", "args": [expression(ctx, node.operand, participant)]}
    if isinstance(node, n.IsSet):
        test = {"op": "is set", "args": [expression(ctx, node.operand, participant)]}
        return {"op": "not", "args": [test]} if node.negated else test
    if isinstance(node, n.Compare):
        if node.op in ("in", "not in") and isinstance(node.right, n.Phrase):
            member = {"member": node.right.parts[0].text, "name": node.right.parts[1].value}
            return {"op": "not", "args": [member]} if node.op == "not in" else member
        return {"op": node.op, "args": [expression(ctx, node.left, participant),
                                        expression(ctx, node.right, participant)]}
    if isinstance(node, n.Ref):
        return {"field": list(node.path[1:]) if node.path[0] == participant else list(node.path)}
    if isinstance(node, n.Phrase):
        decl, values = ctx.conditions[id(node)]
        return {"happened": decl.type, "match": _payload_match(decl, values, participant)}
    if isinstance(node, n.ListLit):
        return {"list": [value(i) for i in node.items]}
    if isinstance(node, n.DateLit):
        return {"const": value(node), "type": "date"}
    if isinstance(node, n.TimeLit):
        return {"const": value(node), "type": "time"}
    return {"const": value(node)}


def _payload_match(decl, values, participant: str) -> dict:
    match = {}
    for slot, (key, v) in zip(decl.pattern.slots if not decl.condition else decl.condition.slots,
                              zip(decl.payload, values)):
        data = value(v)
        if slot.kind == "field" and isinstance(data, str) and data.startswith(participant + "."):
            data = data[len(participant) + 1:]
        match[key] = data
    return match


def event(ctx: CheckContext, phrase: n.EventPhrase, participant: str) -> dict:
    decl, values = ctx.events[id(phrase)]
    match = {}
    for slot, key, v in zip(decl.pattern.slots, decl.payload, values):
        data = value(v)
        if slot.kind == "field" and isinstance(data, str) and data.startswith(participant + "."):
            data = data[len(participant) + 1:]
        match[key] = data
    return {"type": decl.type, "phrase": phrase.text, "match": match}


# ---------------------------------------------------------------------- actions

def action(ctx: CheckContext, resolved: ResolvedAction, step_id: str,
           flow_settings: dict | None = None) -> dict:
    decl = resolved.decl
    out = {
        "id": step_id,
        "action": decl.phrase,
        "args": [value(v) for v in resolved.args],
        "settings": setting_map(ctx, {k: v[0] for k, v in resolved.settings.items()}, decl),
        "templates": [],
        "manual": decl.manual,
        "delivery": decl.delivery,
        "effects": [{"verb": e.verb, "kind": e.kind, "target": _json(e.target),
                     "value": _json(e.value)} for e in effects_of(resolved)],
        "span": span(resolved.command),
    }
    for setting in decl.settings:
        found = resolved.settings.get(setting.text)
        if not found:
            continue
        if setting.repeated:
            out["settings"][setting.text] = [setting_value(s) for s in found]
        if any(s.kind == "template" for p in setting.alternatives for s in p.slots):
            out["templates"].append(setting.text)
        if setting.block:
            blocks = [s.line.body for s in found if s.line.body is not None]
            if blocks:
                prefix = f"{step_id}/{ir.slug(setting.text)}-"
                out.setdefault("blocks", {})[setting.text] = action_list(
                    ctx, [cmd for block in blocks for cmd in block.statements], prefix, flow_settings)
    if any(s.kind == "template" for s in decl.pattern.slots):
        out["templates"].append("$args")
    _resolve_needs(decl, out["settings"], flow_settings or {})
    if decl.when_missing is not None:
        field, rule = decl.when_missing
        out["when_missing"] = {"field": field, "rule": out["settings"].get(rule, "skip"),
                               "actions": out.get("blocks", {}).get(rule, [])}
    if resolved.operations:
        entity = decl.operations_on
        out["operations_on"] = entity
        out["operations"] = [{"op": op.op, "field": op.field_name.removeprefix(entity + "."),
                              "value": value(op.value)} for op in resolved.operations]
    return out


def _resolve_needs(decl, settings: dict, flow_settings: dict) -> None:
    """Fill in what a step needs from its flow (DESIGN §6: states carry resolved
    settings): a `send email` without `from` gets the flow's `email from`, a
    reply-to defaults to the flow's or to the sender, as the `needs` lines say."""
    for need in decl.needs:
        own = next((name for kind, name in need.alternatives if kind == "setting"), None)
        if own is None or own in settings:
            continue
        for kind, name in need.alternatives:
            found = settings.get(name) if kind == "setting" else flow_settings.get(name)
            if found is not None:
                settings[own] = found
                break


def action_list(ctx: CheckContext, statements, prefix: str,
                flow_settings: dict | None = None) -> list[dict]:
    """A block of actions (exit, complete, timeout, setting blocks, handlers), each
    with an id: a slug of its phrase and arguments under `prefix`, numbered only
    when two are identical."""
    out = []
    seen: dict[str, int] = {}
    for cmd in statements:
        resolved = ctx.action_of(cmd)
        if resolved is None:
            continue
        base = prefix + ir.slug(" ".join(resolved.decl.pattern.words) + " " +
                                " ".join(_text(a) for a in resolved.args if a is not None))
        seen[base] = seen.get(base, 0) + 1
        out.append(action(ctx, resolved, base if seen[base] == 1 else f"{base}-{seen[base]}",
                          flow_settings))
    return out


# ---------------------------------------------------------------------- flows

def _digest(step: n.Node) -> str:
    """A short digest of a step's content (its AST without positions). For a split,
    only its own line and its branches' names count, not what the branches hold,
    so that editing a step inside it leaves the split's id (and so theirs) alone."""
    if isinstance(step, n.Split):
        heads = [(i.name if isinstance(i, n.Branch) else i.values if isinstance(i, n.ValueBranch)
                  else "otherwise") for i in step.items]
        content = repr((step.mode, step.subject, heads))
    elif isinstance(step, n.Command) and step.body is not None:
        # a setting's own block of steps (`no mobile exit { … }`) has ids of its own
        lines = [line.parts if isinstance(line, n.Command) else line for line in step.body.statements]
        content = repr((step.parts, lines))
    else:
        content = repr(step)
    return hashlib.blake2b(content.encode("utf-8"), digest_size=3).hexdigest()


def _step_slug(ctx: CheckContext, step: n.Node) -> str:
    """A readable id for a step from its content. Steps whose words say little on
    their own (`update person`, `wait for`, `send sms`, an untitled split) or whose
    slug was cut short get a digest of their content too, so that two different
    such steps in one block never depend on their order."""
    text, specific = _step_text(ctx, step)
    slug = ir.slug(text)
    if not specific or len(slug) < len(ir.slug(text, limit=10_000)):
        slug = f"{slug}-{_digest(step)}"
    return slug


def _step_text(ctx: CheckContext, step: n.Node) -> tuple[str, bool]:
    """The words a step's id is made of, and whether they tell it apart."""
    if isinstance(step, n.Command):
        resolved = ctx.action_of(step)
        arg = resolved.arg() if resolved is not None else None
        if arg is None:
            return step.text, False
        return step.text + " " + _text(arg), True
    if isinstance(step, n.Wait):
        return "wait " + _text(step.duration), True
    if isinstance(step, n.WaitUntil):
        return "wait until " + (step.date.text or "") + " " + (step.time.text if step.time else ""), True
    if isinstance(step, n.WaitFor):
        condition = _condition_text(step.condition)
        return ("wait for " + condition, True) if condition else ("wait for", False)
    if isinstance(step, n.Split):
        if isinstance(step.title, n.Str):
            return "split " + step.title.value, True
        if step.mode == "value" and isinstance(step.subject, n.Ref):
            return "split on " + step.subject.dotted, True
        return "split", False
    if isinstance(step, n.Goto):
        return "goto " + step.target.text, True
    if isinstance(step, n.Exit):
        return "exit", True  # nothing can follow an exit in its block
    if isinstance(step, n.Complete):
        return "complete", True
    return "step", False


def _condition_text(node: n.Node) -> str | None:
    """`clicked link pricing`, `opened email Welcome`: a behaviour condition or a
    field, as words; None for anything more complex."""
    if isinstance(node, n.Phrase):
        return " ".join(p.text if isinstance(p, n.Word) else p.dotted if isinstance(p, n.Ref)
                        else p.value for p in node.parts)
    if isinstance(node, n.Ref):
        return node.dotted
    return None


def _all_steps(statements):
    from flowlang.check.steps import walk
    return walk(statements)


class FlowCompiler:
    def __init__(self, ctx: CheckContext, flow: n.Flow):
        self.ctx = ctx
        self.flow = flow
        self.participant = flow.participant
        self.ids: dict[int, str] = {}
        self.states: list[dict] = []
        self.settings: dict = {}
        self.labels = {step.label.text for step in _all_steps(flow.steps) if step.label is not None}

    # ids first, so that a goto can name a later step
    def assign_ids(self, statements: Iterable[n.Node], prefix: str) -> None:
        seen: dict[str, int] = {}
        for step in statements:
            if step.label is not None:
                step_id = step.label.text
            else:
                base = prefix + _step_slug(self.ctx, step)
                seen[base] = seen.get(base, 0) + 1
                step_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
                while step_id in self.labels:  # a label owns its name
                    seen[base] += 1
                    step_id = f"{base}-{seen[base]}"
            self.ids[id(step)] = step_id
            if isinstance(step, n.Split):
                branches: dict[str, int] = {}
                for item in step.items:
                    if item.body is None:
                        continue
                    slug = self.branch_slug(item)
                    branches[slug] = branches.get(slug, 0) + 1
                    if branches[slug] > 1:
                        slug = f"{slug}-{branches[slug]}"
                    self.assign_ids(item.body.statements, f"{step_id}/{slug}/")

    @staticmethod
    def branch_slug(item: n.Node) -> str:
        if isinstance(item, n.Branch):
            return ir.slug(item.name.value)
        if isinstance(item, n.ValueBranch):
            return ir.slug("-".join(str(value(v)) for v in item.values))
        return "otherwise"

    def compile(self) -> dict:
        ctx, flow = self.ctx, self.flow
        self.settings = _machine_settings(ctx, flow)
        self.assign_ids(flow.steps, "")
        start = self.block(flow.steps, None)
        settings = self.settings
        # states in source order (a split's own state before its branches')
        self.states.sort(key=lambda state: (state["span"]["line"], state["span"]["column"]))
        # meeting the success criterion mid-flow ends the run at once, as if it had
        # reached the flow's completion: the `success …` actions of its last
        # `complete` step run then (SuperOffice's "add to another flow when a
        # success criterion is achieved")
        completes = [s for s in self.states if s["kind"] == "complete" and s["success_actions"]]
        on_success = completes[-1]["success_actions"] if completes else []
        authorized = [setting_value(ctx.resolved_settings[id(line)])
                      for item in flow.items if isinstance(item, n.Settings)
                      for line in item.body.statements
                      if id(line) in ctx.resolved_settings
                      and ctx.resolved_settings[id(line)].decl.text == "authorize auto send"]
        if authorized:
            settings["authorize auto send"] = authorized
        machine = {
            "format": ir.FORMAT,
            "kind": "flow",
            "name": flow.name.text,
            "title": flow.title.value if isinstance(flow.title, n.Str) else None,
            "participant": self.participant,
            "settings": settings,
            "trigger": self.trigger(),
            "success": (expression(ctx, flow.success.condition, self.participant)
                        if flow.success is not None else None),
            "on_success": on_success if flow.success is not None else [],
            "start": start,
            "states": self.states,
            "span": span(flow),
        }
        return ir.with_hash(machine)

    def trigger(self) -> dict:
        out = {"events": [], "once_per_person": False, "filter": None, "exclude": []}
        trigger = self.flow.trigger
        if trigger is None:
            return out
        for item in trigger.items:
            if isinstance(item, n.OnEvent):
                out["events"].append(event(self.ctx, item.event, self.participant))
            elif isinstance(item, n.Filter):
                out["filter"] = expression(self.ctx, item.condition, self.participant)
            elif isinstance(item, n.Command):
                resolved = self.ctx.resolved_settings.get(id(item))
                if resolved is None:
                    continue
                if resolved.decl.text == "once per person":
                    out["once_per_person"] = True
                elif resolved.decl.text == "exclude selection":
                    out["exclude"].append(setting_value(resolved))
        return out

    def actions(self, statements: Iterable[n.Node], prefix: str) -> list[dict]:
        return action_list(self.ctx, statements, prefix, self.settings)

    def block(self, statements, follow: str | None) -> str | None:
        """Compile a block of steps; returns the id of its first state (or
        `follow` when the block is empty)."""
        steps = list(statements)
        for index, step in enumerate(steps):
            after = self.ids[id(steps[index + 1])] if index + 1 < len(steps) else follow
            self.state(step, after)
        return self.ids[id(steps[0])] if steps else follow

    def state(self, step: n.Node, after: str | None) -> None:
        ctx, step_id = self.ctx, self.ids[id(step)]
        base = {"id": step_id, "span": span(step)}
        if step.label is not None:
            base["label"] = step.label.text
        if isinstance(step, n.Command):
            resolved = ctx.action_of(step)
            state = {**base, "kind": "manual" if resolved.decl.manual else "action",
                     "do": action(ctx, resolved, step_id, self.settings), "next": after}
        elif isinstance(step, n.Wait):
            state = {**base, "kind": "wait", "duration": value(step.duration)["duration"], "next": after}
        elif isinstance(step, n.WaitUntil):
            state = {**base, "kind": "wait_until", "date": value(step.date),
                     "time": value(step.time) if step.time else None, "next": after}
        elif isinstance(step, n.WaitFor):
            within = value(step.within)["duration"] if step.within is not None else [[7, "day"]]
            exits = isinstance(step.otherwise, n.ElseExit)
            state = {**base, "kind": "wait_for",
                     "condition": expression(ctx, step.condition, self.participant),
                     "within": within, "on_timeout": "exit" if exits else "continue",
                     "timeout_actions": (self.actions(step.otherwise.body.statements, step_id + "/else-")
                                         if exits and step.otherwise.body is not None else []),
                     "next": after}
        elif isinstance(step, n.Split):
            state = self.split(step, base, after)
        elif isinstance(step, n.Goto):
            target = step.target.text  # a label is its step's id
            state = {**base, "kind": "goto", "target": target, "next": target}
        elif isinstance(step, n.Exit):
            state = {**base, "kind": "exit",
                     "actions": self.actions(step.body.statements, step_id + "/") if step.body else []}
        elif isinstance(step, n.Complete):
            success, failure = [], []
            if step.body is not None:
                for cmd in step.body.statements:
                    resolved = ctx.action_of(cmd)
                    if resolved is None:
                        continue
                    (success if resolved.outcome == "success" else failure).append(cmd)
            state = {**base, "kind": "complete",
                     "success_actions": self.actions(success, step_id + "/success-"),
                     "no_success_actions": self.actions(failure, step_id + "/no-success-")}
        else:
            raise AssertionError(f"unknown step {type(step).__name__}")
        self.states.append(state)

    def split(self, step: n.Split, base: dict, after: str | None) -> dict:
        ctx = self.ctx
        branches = []
        otherwise = None
        for item in step.items:
            if isinstance(item, n.Otherwise):
                if item.exit:
                    otherwise = {"exit": True,
                                 "actions": self.actions(item.body.statements, base["id"] + "/otherwise-")
                                 if item.body is not None else []}
                else:
                    otherwise = {"exit": False, "next": self.block(item.body.statements, after)}
                continue
            entry = {"name": self.branch_slug(item), "next": self.block(item.body.statements, after)}
            if isinstance(item, n.Branch):
                entry["name"] = item.name.value
                if step.mode == "random":
                    entry["weight"] = item.weight.value
                else:
                    entry["condition"] = expression(ctx, item.condition, self.participant)
            else:
                entry["values"] = [value(v) for v in item.values]
            branches.append(entry)
        return {**base, "kind": "split", "mode": step.mode,
                "title": step.title.value if isinstance(step.title, n.Str) else None,
                "subject": (expression(ctx, step.subject, self.participant)
                            if step.subject is not None else None),
                "branches": branches, "otherwise": otherwise, "next": after}


def _machine_settings(ctx: CheckContext, decl) -> dict:
    """A flow's or pipeline's settings with the defaults of DESIGN §5.1 applied:
    time zone UTC, workdays monday to friday (as a list of day names)."""
    settings = setting_map(ctx, flow_settings(ctx, decl), ctx.registry.scoped("settings"))
    settings.setdefault("timezone", "UTC")
    workdays = settings.get("workdays", "mon tue wed thu fri")
    settings["workdays"] = workdays.split() if isinstance(workdays, str) else workdays
    return settings


# ---------------------------------------------------------------------- pipelines

def compile_pipeline(ctx: CheckContext, pipeline: n.Pipeline) -> dict:
    participant = pipeline.participant
    helper = FlowCompiler(ctx, n.Flow(pipeline.name, pipeline.title, (), span=pipeline.span))
    stages, moves, handlers = [], [], []
    seen: dict[str, int] = {}
    for item in pipeline.items:
        if isinstance(item, n.Stage):
            lines = item.items or ()
            final = any(ctx.resolved_settings.get(id(line)) is not None and
                        ctx.resolved_settings[id(line)].decl.text == "final" for line in lines)
            on_enter = [a for h in lines if isinstance(h, n.Handler)
                        for a in helper.actions(h.body.statements, f"{item.name.text}/enter-")]
            stages.append({"id": item.name.text,
                           "title": item.title.value if isinstance(item.title, n.Str) else None,
                           "final": final, "on_enter": on_enter, "span": span(item)})
        elif isinstance(item, n.Move):
            moves.append({"from": item.source.text, "to": item.target.text,
                          "on": [event(ctx, e, participant) for e in item.events], "span": span(item)})
        elif isinstance(item, n.Handler):
            base = "on-" + ir.slug(item.event.text)
            seen[base] = seen.get(base, 0) + 1
            handler_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
            handlers.append({"id": handler_id,
                             "on": event(ctx, item.event, participant),
                             "where": expression(ctx, item.where, participant) if item.where else None,
                             "actions": helper.actions(item.body.statements, handler_id + "/"),
                             "span": span(item)})
    settings = _machine_settings(ctx, pipeline)
    machine = {
        "format": ir.FORMAT, "kind": "pipeline", "name": pipeline.name.text,
        "title": pipeline.title.value if isinstance(pipeline.title, n.Str) else None,
        "participant": participant, "settings": settings, "stages": stages, "moves": moves,
        "handlers": handlers, "span": span(pipeline),
    }
    return ir.with_hash(machine)
