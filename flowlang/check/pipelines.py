"""Pipelines: FL406, automatic moves that go backwards or leave a final stage.

HubSpot's lead pipeline moves leads automatically only forward; a move back is a
person's decision (and turns automatic moves off for that lead), and a final
stage is where a lead's story ends."""
from __future__ import annotations

from flowlang import nodes as n
from flowlang.check.context import CheckContext


def rule(ctx: CheckContext) -> None:
    for pipeline in ctx.declarations(n.Pipeline):
        order = {stage.name.text: i for i, stage in enumerate(pipeline.stages)}
        stages = {stage.name.text: stage for stage in pipeline.stages}
        for move in pipeline.items:
            if not isinstance(move, n.Move):
                continue
            source, target = move.source.text, move.target.text
            if source not in order or target not in order:
                continue  # FL204 says so
            if _is_final(ctx, stages[source]):
                ctx.report("FL406", move, f"an automatic move out of `{source}`, a final stage",
                           related=[(stages[source].name, "declared final here")],
                           help="a final stage ends a lead's way through the pipeline; "
                                "drop the move or the stage's `final`")
            elif order[target] <= order[source]:
                ctx.report("FL406", move, f"an automatic move from `{source}` back to `{target}`",
                           related=[(stages[target].name, "the earlier stage")],
                           help="automatic moves only go forward; moving a lead back is left to "
                                "a person")


def _is_final(ctx: CheckContext, stage: n.Stage) -> bool:
    return any(isinstance(line, n.Command) and (resolved := ctx.resolved_settings.get(id(line)))
               is not None and resolved.decl.text == "final" for line in stage.items or ())
