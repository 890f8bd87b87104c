"""Names: FL203 duplicates (flows, pipelines, forms and links share one project-wide
namespace; labels are per flow, stages per pipeline, branch names and split values
per split) and FL204 references to things that do not exist."""
from __future__ import annotations

from flowlang import nodes as n
from flowlang.check import steps as walk
from flowlang.check.context import KIND_OF, CheckContext, suggest

_KINDS = {"flow": n.Flow, "form": n.Form, "link": n.Link}


def rule(ctx: CheckContext) -> None:
    declarations(ctx)
    for flow in ctx.declarations(n.Flow):
        labels = flow_labels(ctx, flow)
        for step in walk.walk(flow.steps):
            if isinstance(step, n.Split):
                split_names(ctx, step)
            elif isinstance(step, n.Goto) and step.target.text not in labels:
                ctx.report("FL204", step.target, f"no step is labelled `{step.target.text}` in "
                           f"flow `{flow.name.text}`",
                           help=suggest(step.target.text, list(labels)) or
                           f"label a step: `{step.target.text}: wait 1 day`")
    for pipeline in ctx.declarations(n.Pipeline):
        stages = pipeline_stages(ctx, pipeline)
        for item in pipeline.items:
            if isinstance(item, n.Move):
                for name in (item.source, item.target):
                    if name.text not in stages:
                        unknown_stage(ctx, name, pipeline, stages)
    references(ctx)


def declarations(ctx: CheckContext) -> None:
    for name, decls in ctx.by_name.items():
        first = decls[0]
        for later in decls[1:]:
            ctx.report("FL203", later.name, f"`{name}` is already declared as a "
                       f"{KIND_OF[type(first)]}", related=[(first.name, "first declared here")],
                       help="flows, pipelines, forms and links share one namespace; rename one")


def flow_labels(ctx: CheckContext, flow: n.Flow) -> dict[str, n.Node]:
    labels: dict[str, n.Node] = {}
    for step in walk.walk(flow.steps):
        label = getattr(step, "label", None)
        if label is None:
            continue
        if label.text in labels:
            ctx.report("FL203", label, f"label `{label.text}` is used twice in flow "
                       f"`{flow.name.text}`", related=[(labels[label.text], "first used here")],
                       help="labels name one step each; rename one")
        else:
            labels[label.text] = label
    return labels


def pipeline_stages(ctx: CheckContext, pipeline: n.Pipeline) -> dict[str, n.Stage]:
    stages: dict[str, n.Stage] = {}
    for stage in pipeline.stages:
        if stage.name.text in stages:
            ctx.report("FL203", stage.name, f"stage `{stage.name.text}` is declared twice in "
                       f"pipeline `{pipeline.name.text}`",
                       related=[(stages[stage.name.text].name, "first declared here")])
        else:
            stages[stage.name.text] = stage
    return stages


def split_names(ctx: CheckContext, split: n.Split) -> None:
    names: dict[str, n.Node] = {}
    values: dict[object, n.Node] = {}
    for item in split.items:
        if isinstance(item, n.Branch) and isinstance(item.name, n.Str):
            if item.name.value in names:
                ctx.report("FL203", item.name, f"branch \"{item.name.value}\" appears twice in "
                           "this split", related=[(names[item.name.value], "first used here")])
            else:
                names[item.name.value] = item.name
        elif isinstance(item, n.ValueBranch):
            for value in item.values:
                key = (type(value).__name__, getattr(value, "value", None))
                if key in values:
                    ctx.report("FL203", value, f"the value {_text(value)} is listed twice in "
                               "this split; only its first branch can be taken",
                               related=[(values[key], "first listed here")])
                else:
                    values[key] = value


def _text(value: n.Node) -> str:
    return f'"{value.value}"' if isinstance(value, n.Str) else f"`{getattr(value, 'value', '?')}`"


def unknown_stage(ctx: CheckContext, name: n.Node, pipeline: n.Pipeline | None, stages) -> None:
    where = f"pipeline `{pipeline.name.text}`" if pipeline is not None else "any pipeline"
    ctx.report("FL204", name, f"no stage `{name.text}` in {where}",
               help=suggest(name.text, list(stages)) or
               (f"its stages are {', '.join(stages)}" if stages else None))


def references(ctx: CheckContext) -> None:
    for kind, node, scope in ctx.references:
        if not isinstance(node, n.Word):
            continue
        if kind == "stage":
            if scope is not None:
                stages = {s.name.text: s for s in scope.stages}
            else:
                stages = {s.name.text: s for p in ctx.declarations(n.Pipeline) for s in p.stages}
            if node.text not in stages:
                unknown_stage(ctx, node, scope, stages)
            continue
        wanted = _KINDS[kind]
        if ctx.lookup(node.text, wanted) is not None:
            continue
        other = ctx.lookup(node.text)
        if other is not None:
            ctx.report("FL204", node, f"`{node.text}` is a {KIND_OF[type(other)]}, not a {kind}",
                       related=[(other.name, "declared here")])
        else:
            ctx.report("FL204", node, f"no {kind} is called `{node.text}`",
                       help=suggest(node.text, ctx.names_of(wanted)) or
                       f"declare it: `{kind} {node.text} {{ … }}`")
