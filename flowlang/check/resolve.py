"""Resolve every command to the action, setting or operation it names, and report
what does not fit its declaration: FL201 unknown action, FL202 unknown setting,
FL301 missing setting, FL302 wrong form, FL303 out of range, FL307 wrong
participant type. Everything is driven by the registry's declarations.
"""
from __future__ import annotations

import difflib
from typing import Sequence

from flowlang import nodes as n
from flowlang.check.context import (CheckContext, Operation, ResolvedAction, ResolvedSetting,
                                    suggest)
from flowlang.patterns import Match, Mismatch, longest_prefix, match
from flowlang.stdlib import ActionDecl, SettingDecl

#: `update` block operations: name -> the shape of the line after the name, in
#: words and roles (F: the field, V: a value, N: a number).
OPERATIONS = {
    "set": ("F", "=", "V"),
    "clear": ("F",),
    "increase": ("F", "by", "N"),
    "decrease": ("F", "by", "N"),
    "add": ("V", "to", "F"),
    "remove": ("V", "from", "F"),
}
_OPERATION_FORMS = {
    "set": "set FIELD = VALUE", "clear": "clear FIELD", "increase": "increase FIELD by NUMBER",
    "decrease": "decrease FIELD by NUMBER", "add": "add VALUE to FIELD",
    "remove": "remove VALUE from FIELD",
}


class _Found(dict):
    """Settings by name, and the names a line meant but got wrong (FL202 with a
    suggestion, FL302): one mistake gets one diagnostic, so those are not also
    reported missing (FL301)."""

    def __init__(self):
        super().__init__()
        self.attempted: set[str] = set()


class Resolver:
    def __init__(self, ctx: CheckContext):
        self.ctx = ctx
        self.step_actions = ctx.registry.steps()
        self.phrases = [a.phrase for a in self.step_actions]

    # ------------------------------------------------------------------ entry points
    def run(self) -> None:
        ctx = self.ctx
        for decl in ctx.declarations():
            if isinstance(decl, n.Flow):
                self.flow(decl)
            elif isinstance(decl, n.Pipeline):
                self.pipeline(decl)
            elif isinstance(decl, (n.Form, n.Link)):
                self.handlers(decl.items, "person", None, decl)

    def flow(self, flow: n.Flow) -> None:
        participant = self._participant = flow.participant
        for item in flow.items:
            if isinstance(item, n.Settings):
                self.scoped_block("settings", item.body.statements, "the flow's settings")
            elif isinstance(item, n.Trigger):
                lines = [i for i in item.items if isinstance(i, n.Command)]
                self.scoped_block("trigger", lines, "the trigger")
        self.steps(flow.steps, participant, None)

    def pipeline(self, pipeline: n.Pipeline) -> None:
        participant = self._participant = pipeline.participant
        for item in pipeline.items:
            if isinstance(item, n.Settings):
                self.scoped_block("settings", item.body.statements, "the pipeline's settings")
            elif isinstance(item, n.Stage) and item.items is not None:
                lines = [i for i in item.items if isinstance(i, n.Command)]
                self.scoped_block("stage", lines, f"stage `{item.name.text}`")
                for handler in item.items:
                    if isinstance(handler, n.Handler):
                        self.steps(handler.body.statements, participant, pipeline)
            elif isinstance(item, n.Handler):
                self.steps(item.body.statements, participant, pipeline)

    def handlers(self, items, participant: str, pipeline, owner: n.Node) -> None:
        self._participant = participant
        kind = "form" if isinstance(owner, n.Form) else "link"
        event = "submit" if kind == "form" else "click"
        for item in items:
            if isinstance(item, n.Handler):
                self.steps(item.body.statements, participant, pipeline)
            elif isinstance(item, n.Command):
                self.ctx.report("FL202", item, f"a {kind} holds `on {event} {{ … }}` handlers, "
                                f"not `{item.text}`", help=f"put actions inside `on {event} {{ … }}`")

    # ------------------------------------------------------------------ steps
    def steps(self, statements: Sequence[n.Node], participant: str, pipeline) -> None:
        for step in statements:
            if isinstance(step, n.Command):
                self.action(step, participant, pipeline)
            elif isinstance(step, n.Complete) and step.body is not None:
                self.outcome_block(step.body, participant, pipeline)
            elif isinstance(step, n.Split):
                for item in step.items:
                    if item.body is not None:
                        self.steps(item.body.statements, participant, pipeline)
            elif isinstance(step, n.Wait):
                self.wait_duration(step.duration, "wait")
            elif isinstance(step, n.WaitFor):
                if step.within is not None:
                    self.wait_duration(step.within, "within")
                if isinstance(step.otherwise, n.ElseExit) and step.otherwise.body is not None:
                    self.steps(step.otherwise.body.statements, participant, pipeline)
            elif isinstance(step, n.Exit) and step.body is not None:
                self.steps(step.body.statements, participant, pipeline)

    def wait_duration(self, node: n.Node, keyword: str) -> None:
        if isinstance(node, n.DurationLit):
            check_duration(self.ctx, node)
        elif not isinstance(node, n.InvalidLit):
            self.ctx.report("FL302", node, f"`{keyword}` takes a duration, not {_shown(node)}",
                            help=f"write `{keyword} 3 days`")

    def outcome_block(self, body: n.Block, participant: str, pipeline) -> None:
        """`complete { success add to flow X; no success add to flow Y }`."""
        for line in body.statements:
            words = line.words if isinstance(line, n.Command) else ()
            if words[:1] == ("success",):
                self.action(line, participant, pipeline, start=1, outcome="success")
            elif words[:2] == ("no", "success"):
                self.action(line, participant, pipeline, start=2, outcome="no success")
            else:
                self.ctx.report("FL202", line, "a `complete` block holds `success ACTION` and "
                                "`no success ACTION` lines",
                                help="write `success add to flow NAME` or `no success add to flow NAME`")

    def action(self, cmd: n.Command, participant: str, pipeline, start: int = 0,
               outcome: str | None = None) -> ResolvedAction | None:
        ctx = self.ctx
        parts = cmd.parts[start:]
        words = []
        for part in parts:
            if not isinstance(part, n.Word):
                break
            words.append(part.text)
        if not parts:
            ctx.report("FL201", cmd, "an outcome needs an action: `success add to flow NAME`")
            return None
        decl: ActionDecl | None = longest_prefix(words, self.step_actions, lambda a: a.pattern.words)
        if decl is None:
            shown = " ".join(words) or "…"
            last = parts[max(0, len(words) - 1)] if words else parts[0]
            ctx.report("FL201", parts[0].span.to(last.span), f"unknown action `{shown}`",
                       help=suggest(shown, self.phrases) or
                       "declare it with `action \"…\" { … }` if it is your own")
            return None
        resolved = ResolvedAction(cmd, decl, (), outcome=outcome)
        result = match(decl.pattern, cmd.parts, start)
        if isinstance(result, Match):
            resolved.args = result.values
            self.slot_values(decl.pattern, result.values, pipeline)
        else:
            self.phrase_mismatch(cmd, decl, result)
        if participant not in decl.participants:
            ctx.report("FL307", cmd, f"`{decl.phrase}` is not available in a flow for {participant}",
                       help=f"it applies to {_listing(decl.participants)}")
        if decl.operations_on is not None:
            resolved.operations = self.operations(cmd, decl)
        else:
            resolved.settings = self.settings(decl.settings, cmd.body, f"`{decl.phrase}`",
                                              participant, pipeline)
            self.required(cmd, decl.settings, resolved.settings, f"`{decl.phrase}`")
        ctx.resolved[id(cmd)] = resolved
        return resolved

    def phrase_mismatch(self, cmd: n.Command, decl: ActionDecl, result: Mismatch) -> None:
        usage = decl.pattern.describe()
        if result.part is None:
            self.ctx.report("FL301", cmd, f"`{decl.phrase}` needs {result.expected} after it",
                            help=f"write `{usage}`")
        else:
            self.ctx.report("FL302", result.part,
                            f"`{decl.phrase}` takes {result.expected} here, not {_shown(result.part)}",
                            help=f"write `{usage}`")

    # ------------------------------------------------------------------ settings
    def scoped_block(self, scope: str, lines, owner: str) -> None:
        vocabulary = self.ctx.registry.scoped(scope)
        settings = vocabulary.settings if vocabulary else ()
        self.settings(settings, n.Block(tuple(lines)), owner, "person", None, scoped=True)

    def settings(self, decls: Sequence[SettingDecl], body: n.Block | None, owner: str,
                 participant: str, pipeline, scoped: bool = False) -> dict[str, list[ResolvedSetting]]:
        found = _Found()
        if body is None:
            return found
        names = [d.text for d in decls]
        for line in body.statements:
            if not isinstance(line, n.Command):
                self.ctx.report("FL202", line, f"a step cannot stand among the settings of {owner}")
                continue
            decl = longest_prefix(line.words, decls, lambda d: d.name)
            if decl is None:
                word = " ".join(line.words) or _shown(line.parts[0])
                first = line.words[0] if line.words else word
                near = _nearest(first, names) or _nearest(word, names)
                if near:
                    found.attempted.add(near)
                self.ctx.report("FL202", line.parts[0], f"{owner} has no setting `{first}`",
                                help=(f"did you mean `{near}`?" if near else None) or
                                (f"its settings are {_listing(names)}" if names else None))
                continue
            resolved = self.setting_value(line, decl, owner, pipeline)
            if resolved is None:
                found.attempted.add(decl.text)
                continue
            earlier = found.get(decl.text)
            if earlier and not decl.repeated:
                self.ctx.report("FL302", line, f"`{decl.text}` is set twice in {owner}",
                                related=[(earlier[0].line, "first set here")],
                                help="keep one of them")
                continue
            found.setdefault(decl.text, []).append(resolved)
            if scoped:
                self.ctx.resolved_settings[id(line)] = resolved
            if line.body is not None and decl.block:
                self.steps(line.body.statements, participant, pipeline)
        for decl in decls:
            if decl.max_total is not None and decl.text in found:
                self.total_size(decl, found[decl.text])
        return found

    def setting_value(self, line: n.Command, decl: SettingDecl, owner: str,
                      pipeline) -> ResolvedSetting | None:
        start = len(decl.name)
        if line.body is not None and not decl.block:
            self.ctx.report("FL302", line.body, f"`{decl.text}` takes no block")
            return None
        if decl.is_flag:
            if len(line.parts) > start:
                self.ctx.report("FL302", line.parts[start], f"`{decl.text}` takes no value",
                                help=f"write just `{decl.text}`")
                return None
            return ResolvedSetting(decl, line, None, ())
        best: Mismatch | None = None
        for pattern in decl.alternatives:
            result = match(pattern, line.parts, start)
            if isinstance(result, Match):
                self.slot_values(pattern, result.values, pipeline)
                return ResolvedSetting(decl, line, pattern, result.values)
            if best is None or result.consumed > best.consumed:
                best = result
        found = "nothing" if best is None or best.part is None else _shown(best.part)
        at = best.part if best is not None and best.part is not None else line
        self.ctx.report("FL302", at, f"`{decl.text}` takes {_forms(decl)}, not {found}",
                        help=f"write {decl.describe()}")
        return None

    def required(self, cmd: n.Command, decls: Sequence[SettingDecl],
                 found: dict[str, list[ResolvedSetting]], owner: str) -> None:
        attempted = getattr(found, "attempted", ())
        for decl in decls:
            if decl.required and decl.text not in found and decl.text not in attempted:
                example = decl.describe().split(" or ")[0]
                self.ctx.report("FL301", cmd, f"{owner} is missing its required setting `{decl.text}`",
                                help=f"add {example}")

    def total_size(self, decl: SettingDecl, lines: list[ResolvedSetting]) -> None:
        total = 0
        limit = decl.max_total.bytes
        for resolved in lines:
            size = resolved.value("size")
            if isinstance(size, n.SizeLit):
                total += size.value.bytes
                if total > limit:
                    self.ctx.report("FL303", size, f"`{decl.text}` adds up to {_mb(total)}, over "
                                    f"the limit of {decl.max_total}",
                                    related=[(lines[0].line, "the first one")],
                                    help="attach fewer or smaller files, or link to them instead")
                    return

    # ------------------------------------------------------------------ slot values
    def slot_values(self, pattern, values, pipeline) -> None:
        """Record references and templates among matched slot values, and report
        durations that are not positive."""
        for slot, value in zip(pattern.slots, values):
            if value is None:
                continue
            if slot.kind in ("flow", "form", "link", "stage"):
                self.ctx.references.append((slot.kind, value, pipeline))
            elif slot.kind == "template" and isinstance(value, n.Str):
                self.ctx.templates.append((value, self._participant))
            elif slot.kind == "email" and isinstance(value, n.Str) and "@" not in value.value:
                self.ctx.report("FL302", value, f"`{value.value}` is not an e-mail address",
                                help='write an address such as "news@example.com"')
            elif slot.kind == "duration" and isinstance(value, n.DurationLit):
                check_duration(self.ctx, value)

    _participant = "person"

    # ------------------------------------------------------------------ update operations
    def operations(self, cmd: n.Command, decl: ActionDecl) -> list[Operation]:
        entity = decl.operations_on
        ops: list[Operation] = []
        if cmd.body is None:
            self.ctx.report("FL301", cmd, f"`{decl.phrase}` needs a block of operations",
                            help=f"write `{decl.phrase} {{ set FIELD = VALUE }}`")
            return ops
        for line in cmd.body.statements:
            op = self.operation(line, entity, decl)
            if op is not None:
                ops.append(op)
        return ops

    def operation(self, line: n.Node, entity: str, decl: ActionDecl) -> Operation | None:
        ctx = self.ctx
        if not isinstance(line, n.Command) or not line.words:
            ctx.report("FL202", line, f"`{decl.phrase}` holds field operations such as `set FIELD = VALUE`")
            return None
        name = line.words[0]
        shape = OPERATIONS.get(name)
        if shape is None:
            ctx.report("FL202", line.parts[0], f"unknown operation `{name}` in `{decl.phrase}`",
                       help=suggest(name, list(OPERATIONS)) or
                       "operations are set, clear, increase, decrease, add and remove")
            return None
        rest = line.parts[1:]
        roles: dict[str, n.Node] = {}
        if len(rest) != len(shape):
            return self._bad_operation(line, name)
        for role, part in zip(shape, rest):
            if role in ("F", "V", "N"):
                roles[role] = part
            elif not ((isinstance(part, n.Word) and part.text == role) or
                      (role == "=" and isinstance(part, n.Equals))):
                return self._bad_operation(line, name)
        field = roles["F"]
        if not isinstance(field, (n.Word, n.Ref)):
            return self._bad_operation(line, name)
        op = Operation(name, field, roles.get("V", roles.get("N")), line)
        self.operation_types(op, entity)
        return op

    def _bad_operation(self, line: n.Command, name: str) -> None:
        self.ctx.report("FL302", line, f"malformed `{name}` operation",
                        help=f"write `{_OPERATION_FORMS[name]}`")
        return None

    def operation_types(self, op: Operation, entity: str) -> None:
        ctx = self.ctx
        path = op.field.path if isinstance(op.field, n.Ref) else (op.field.text,)
        if len(path) > 1 and path[0] == entity:
            path = path[1:]
        fields = ctx.registry.schemas.get(entity, {})
        field_type = fields.get(path[0]) if len(path) == 1 else None
        if field_type is None:
            ctx.report("FL205", op.field, f"`{entity}` has no field `{'.'.join(path)}`",
                       help=suggest(path[-1], list(fields)) or
                       f"declare it: `schema {entity} {{ field {path[-1]} text }}`")
            return
        value = op.value
        if op.op in ("increase", "decrease"):
            if field_type.words != ("number",):
                ctx.report("FL302", op.line, f"`{op.op}` needs a number field; "
                           f"`{op.field_name}` is {field_type.name}")
            elif not isinstance(value, (n.Num, n.InvalidLit)):
                ctx.report("FL302", value, f"`{op.op}` takes a number, not {_shown(value)}")
        elif op.op in ("add", "remove"):
            if not field_type.is_list:
                ctx.report("FL302", op.line, f"`{op.op} … to` needs a list field; "
                           f"`{op.field_name}` is {field_type.name}",
                           help=f"use `set {op.field_name} = …`" if op.op == "add" else None)
            elif isinstance(value, n.Str):
                ctx.templates.append((value, self._participant))
        elif op.op == "set":
            if not _value_fits(field_type.words, value):
                ctx.report("FL302", value, f"`{op.field_name}` is {field_type.name}; "
                           f"it cannot be set to {_shown(value)}")
            elif isinstance(value, n.Str):
                ctx.templates.append((value, self._participant))


def _nearest(word: str, names: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return close[0] if close else None


def check_duration(ctx: CheckContext, node: n.Node) -> None:
    if isinstance(node, n.DurationLit) and not node.value.is_positive:
        ctx.report("FL303", node, f"a duration must be longer than zero, not `{node.value}`")


def _value_fits(type_words: tuple[str, ...], value: n.Node) -> bool:
    if isinstance(value, n.InvalidLit):
        return True
    kind = type_words[0]
    if kind in ("text", "user"):
        return isinstance(value, n.Str) or (kind == "user" and isinstance(value, n.Word))
    if kind == "number":
        return isinstance(value, n.Num)
    if kind == "bool":
        return isinstance(value, n.Word) and value.text in ("true", "false")
    if kind in ("date", "datetime"):
        return isinstance(value, n.DateLit)
    if kind == "list":
        return isinstance(value, (n.ListLit, n.Str))
    return isinstance(value, (n.Str, n.Word))


def _shown(node: n.Node | None) -> str:
    if node is None:
        return "nothing"
    if isinstance(node, n.Word):
        return f"`{node.text}`"
    if isinstance(node, n.Ref):
        return f"`{node.dotted}`"
    if isinstance(node, n.Str):
        return "a string"
    if isinstance(node, n.Num):
        return f"the number {node.value}"
    if isinstance(node, n.DurationLit):
        return f"the duration `{node.value}`"
    if isinstance(node, n.SizeLit):
        return f"the size `{node.value}`"
    if isinstance(node, n.ListLit):
        return "a list"
    if isinstance(node, n.Block):
        return "a block"
    return "this value"


def _forms(decl: SettingDecl) -> str:
    forms = [p.describe() for p in decl.alternatives]
    return "`" + "`, `".join(forms[:-1]) + "` or `" + forms[-1] + "`" if len(forms) > 1 else f"`{forms[0]}`"


def _listing(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _mb(size: float) -> str:
    return f"{size / 1_000_000:g} MB"


def rule(ctx: CheckContext) -> None:
    Resolver(ctx).run()
