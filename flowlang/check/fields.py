"""Fields, conditions, events and templates: FL205 unknown fields (in expressions,
templates and updates), FL206 unknown event or condition phrases, FL305 template
syntax errors. Fields are typed by the schemas, for the flow's participant type:
a flow `for deal` sees `deal.*` and, through links, `deal.person.*`."""
from __future__ import annotations

from flowlang import nodes as n
from flowlang import templates
from flowlang.check.context import CheckContext, suggest
from flowlang.check.steps import walk
from flowlang.patterns import Match, match
from flowlang.source import Span
from flowlang.stdlib import EventDecl, FieldType

MEMBERSHIPS = ("selection", "project", "interest")


def rule(ctx: CheckContext) -> None:
    for flow in ctx.declarations(n.Flow):
        participant = flow.participant
        for item in flow.items:
            if isinstance(item, n.Trigger):
                for entry in item.items:
                    if isinstance(entry, n.OnEvent):
                        event_phrase(ctx, entry.event, "trigger", participant)
                    elif isinstance(entry, n.Filter):
                        expression(ctx, entry.condition, participant)
            elif isinstance(item, n.Success):
                expression(ctx, item.condition, participant)
        for step in walk(flow.steps):
            if isinstance(step, n.Split):
                if step.subject is not None:
                    expression(ctx, step.subject, participant)
                for branch in step.items:
                    if isinstance(branch, n.Branch) and branch.condition is not None:
                        expression(ctx, branch.condition, participant)
            elif isinstance(step, n.WaitFor):
                expression(ctx, step.condition, participant)
    for pipeline in ctx.declarations(n.Pipeline):
        participant = pipeline.participant
        for item in pipeline.items:
            if isinstance(item, n.Move):
                for event in item.events:
                    event_phrase(ctx, event, "trigger", participant)
            elif isinstance(item, n.Handler):
                event_phrase(ctx, item.event, "trigger", participant)
                if item.where is not None:
                    expression(ctx, item.where, participant)
            elif isinstance(item, n.Stage) and item.items is not None:
                for handler in item.items:
                    if isinstance(handler, n.Handler):
                        event_phrase(ctx, handler.event, "stage", participant)
    for decl in ctx.declarations((n.Form, n.Link)):
        scope = "form" if isinstance(decl, n.Form) else "link"
        for item in decl.items:
            if isinstance(item, n.Handler):
                event_phrase(ctx, item.event, scope, "person")
    for node, participant in ctx.templates:
        template(ctx, node, participant)


# ---------------------------------------------------------------------- fields

def field_path(ctx: CheckContext, path: tuple[str, ...], participant: str,
               span: Span) -> FieldType | str | None:
    """Walk `person.company.name` through the schemas. Returns the field's type, the
    entity name when the path names a record, or None after reporting FL205."""
    if path[0] != participant:
        link = next((name for name, f in ctx.registry.schemas.get(participant, {}).items()
                     if f.entity == path[0]), None)
        if len(path) == 1 and ctx.registry.field(participant, path[0]) is not None:
            help_line = f"write `{participant}.{path[0]}`"
        elif link is not None:
            help_line = f"write `{participant}.{link}.{'.'.join(path[1:])}`".replace(".`", "`")
        else:
            help_line = f"fields are reached through `{participant}`, as in `{participant}.first_name`"
        ctx.report("FL205", span, f"unknown name `{'.'.join(path)}` in a flow for {participant}",
                   help=help_line)
        return None
    entity: str = participant
    for i, name in enumerate(path[1:], start=1):
        fields = ctx.registry.schemas.get(entity, {})
        found = fields.get(name)
        if found is None:
            ctx.report("FL205", span, f"unknown field `{'.'.join(path[:i + 1])}`: "
                       f"{entity} has no field `{name}`",
                       help=suggest(name, list(fields)) or
                       f"declare it: `schema {entity} {{ field {name} text }}`")
            return None
        if found.entity is not None:
            entity = found.entity
            continue
        if i < len(path) - 1:
            ctx.report("FL205", span, f"`{'.'.join(path[:i + 1])}` is {found.name}; it has no "
                       f"field `{path[i + 1]}`")
            return None
        return found
    return entity


# ---------------------------------------------------------------------- expressions

def expression(ctx: CheckContext, node: n.Node, participant: str) -> None:
    if isinstance(node, n.BoolOp):
        expression(ctx, node.left, participant)
        expression(ctx, node.right, participant)
    elif isinstance(node, n.Not):
        expression(ctx, node.operand, participant)
    elif isinstance(node, n.IsSet):
        expression(ctx, node.operand, participant)
    elif isinstance(node, n.Compare):
        if node.op in ("in", "not in") and isinstance(node.right, n.Phrase):
            membership(ctx, node.left, node.right, participant)
            return
        expression(ctx, node.left, participant)
        expression(ctx, node.right, participant)
    elif isinstance(node, n.Ref):
        field_path(ctx, node.path, participant, node.span)
    elif isinstance(node, n.Phrase):
        condition(ctx, node, participant)
    elif isinstance(node, n.ListLit):
        for item in node.items:
            if isinstance(item, n.Ref):
                expression(ctx, item, participant)


def membership(ctx: CheckContext, left: n.Node, right: n.Phrase, participant: str) -> None:
    """`person in selection "S"`: the participant's membership of a selection,
    project or interest."""
    if not (isinstance(left, n.Ref) and left.path == (participant,)):
        expression(ctx, left, participant)
    parts = right.parts
    if (len(parts) == 2 and isinstance(parts[0], n.Word) and parts[0].text in MEMBERSHIPS
            and isinstance(parts[1], n.Str)):
        return
    word = parts[0].text if isinstance(parts[0], n.Word) else "…"
    ctx.report("FL206", right, f"unknown membership `{word}`",
               help=suggest(word, MEMBERSHIPS) or
               'write `in selection "S"`, `in project "P"` or `in interest "I"`')


def condition(ctx: CheckContext, phrase: n.Phrase, participant: str):
    """A behaviour condition such as `opened email "Welcome"`: resolved against the
    `condition` patterns of the declared events."""
    resolved = resolve_phrase(phrase.parts, [(e.condition, e) for e in ctx.registry.conditions()])
    if resolved is None:
        text = " ".join(p.text for p in phrase.parts if isinstance(p, n.Word))
        ctx.report("FL206", phrase, f"unknown condition `{text}`",
                   help=suggest(text, [e.condition.describe() for e in ctx.registry.conditions()]) or
                   'conditions are such as `opened email "X"` or `clicked link NAME`')
        return None
    decl, pattern, values = resolved
    ctx.conditions[id(phrase)] = (decl, values)
    slot_references(ctx, pattern, values, participant)
    return decl


def resolve_phrase(parts, candidates):
    """The candidate pattern that matches `parts` whole, preferring the most literal
    words: (decl, pattern, values) or None."""
    ordered = sorted(candidates, key=lambda c: -len([i for i in c[0].items if isinstance(i, str)]))
    for pattern, decl in ordered:
        result = match(pattern, parts)
        if isinstance(result, Match):
            return decl, pattern, result.values
    return None


def slot_references(ctx: CheckContext, pattern, values, participant: str) -> None:
    for slot, value in zip(pattern.slots, values):
        if value is None:
            continue
        if slot.kind in ("form", "link", "flow"):
            ctx.references.append((slot.kind, value, None))
        elif slot.kind == "field":
            path = value.path if isinstance(value, n.Ref) else (value.text,)
            field_path(ctx, path, participant, value.span)


# ---------------------------------------------------------------------- events

def event_phrase(ctx: CheckContext, phrase: n.EventPhrase, scope: str, participant: str) -> EventDecl | None:
    events = ctx.registry.events_in(scope)
    resolved = resolve_phrase(phrase.parts, [(e.pattern, e) for e in events])
    if resolved is None:
        text = phrase.text
        where = {"trigger": "", "form": " in a form", "link": " in a link",
                 "stage": " in a stage"}.get(scope, "")
        ctx.report("FL206", phrase, f"unknown event `{text}`{where}",
                   help=suggest(text, [e.phrase for e in events]) or
                   "events are such as `form NAME submitted` or `added to selection \"S\"`")
        return None
    decl, pattern, values = resolved
    ctx.events[id(phrase)] = (decl, values)
    slot_references(ctx, pattern, values, participant)
    return decl


# ---------------------------------------------------------------------- templates

def template(ctx: CheckContext, node: n.Str, participant: str) -> None:
    uses, error = templates.analyse(node.value)
    if error is not None:
        ctx.report("FL305", _line_span(ctx, node, error.line), f"template error: {error.message}",
                   help="placeholders are written `{{ person.first_name }}`")
        return
    for use in uses:
        span = _line_span(ctx, node, use.line)
        field_path(ctx, use.path, participant, span)


def _line_span(ctx: CheckContext, node: n.Str, line: int) -> Span:
    """The span of line `line` of a string's value in the source: inside a `\"\"\"`
    string, the line within the string; else the string itself."""
    span = node.span
    if not node.triple:
        return span
    number = span.line + node.line_offset + line - 1
    source = ctx.project.source(span.file)
    text = source.line(number) if source is not None else ""
    column = len(text) - len(text.lstrip()) + 1
    return Span(span.file, number, column, number, max(column + 1, len(text.rstrip()) + 1))
