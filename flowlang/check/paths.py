"""Actions that meet on one path (DESIGN §5): FL501 conflicting actions with no
wait between them, FL502 the same action twice on one path.

Both read the effect model (`effects`), never action phrases, and the control-flow
graph (`cfg`) without its back edges: a path goes through a loop at most once, so
a repetition that needs the loop to come round again is not a duplicate (a loop
with a wait is meant to repeat; one without a wait is FL402 already). "Later"
means later along the path. Exit-block actions are nodes after the step that
exits, so they are on the same path. Besides flows, the action blocks of forms,
links and pipelines are checked: each is one straight path.
"""
from __future__ import annotations

from flowlang import nodes as n
from flowlang.check.cfg import Graph, describe, flow_graphs, handler_graphs
from flowlang.check.context import CheckContext, ResolvedAction
from flowlang.check.effects import OPPOSITE, Effect, conflicts, duplicates


def rule(ctx: CheckContext) -> None:
    for graph in [*flow_graphs(ctx), *handler_graphs(ctx)]:
        _Paths(ctx, graph).run()


class _Paths:
    def __init__(self, ctx: CheckContext, graph: Graph):
        self.ctx = ctx
        self.graph = graph
        self.reached = graph.reachable()
        #: node index -> its effects, for reachable action nodes.
        self.effects: dict[int, list[Effect]] = {
            node.index: node.effects for node in graph.nodes
            if node.effects and node.index in self.reached}
        #: Later places already reported, so that each is reported once.
        self.reported: set[int] = set()

    def run(self) -> None:
        for index in sorted(self.effects):
            same_block(self.ctx, self.graph.nodes[index].action, self.reported)
        self.conflicts()
        self.duplicates()

    # ------------------------------------------------------------------ FL501
    def conflicts(self) -> None:
        """Pairs of effects that undo or override each other, with no wait on the
        path from the first to the second."""
        graph = self.graph
        keys = _shared_keys(self.effects, lambda e: e.verb in OPPOSITE)
        if not keys:
            return
        not_waiting = lambda node: not node.wait  # noqa: E731
        for index, effects in sorted(self.effects.items()):
            earlier = [e for e in effects if e.key in keys and e.verb in OPPOSITE]
            if not earlier or graph.nodes[index].wait:
                continue
            starts = set(graph.successors(index, back=False))
            for later_index in sorted(graph.reachable(starts, through=not_waiting, back=False)):
                for later in self.effects.get(later_index, ()):
                    first = next((e for e in earlier if conflicts(e, later)), None)
                    if first is not None:
                        self.conflict(first, later)

    def conflict(self, earlier: Effect, later: Effect) -> None:
        if id(later.node) in self.reported:
            return
        self.reported.add(id(later.node))
        a, b = describe(earlier.node), describe(later.node)
        if later.verb == earlier.verb == "sets":
            what = f"`{b}` overrides `{a}`"
        else:
            what = f"`{b}` undoes `{a}`"
        self.ctx.report("FL501", later.node, f"{what} with no wait between them",
                        related=[(earlier.node, "the earlier action")],
                        help="keep one of them, or put a wait between them if both are meant")

    # ------------------------------------------------------------------ FL502
    def duplicates(self) -> None:
        """The same effect twice on one path, waits between them or not."""
        graph = self.graph
        keys = _shared_keys(self.effects, lambda e: True)
        if not keys:
            return
        for index, effects in sorted(self.effects.items()):
            earlier = [e for e in effects if e.key in keys]
            if not earlier:
                continue
            starts = set(graph.successors(index, back=False))
            for later_index in sorted(graph.reachable(starts, back=False)):
                for later in self.effects.get(later_index, ()):
                    first = next((e for e in earlier if duplicates(e, later)), None)
                    if first is not None and id(later.node) not in self.reported:
                        self.reported.add(id(later.node))
                        self.ctx.report(
                            "FL502", later.node, f"`{describe(later.node)}` repeats "
                            f"`{describe(first.node)}` on the same path",
                            related=[(first.node, "first here")],
                            help="remove one of them, or move them to different branches")


def _shared_keys(effects: dict[int, list[Effect]], wanted) -> set[tuple]:
    """Keys that effects of at least two different nodes act on: the only ones
    that can meet on a path."""
    seen: dict[tuple, int] = {}
    shared: set[tuple] = set()
    for index, found in effects.items():
        for effect in found:
            if not wanted(effect):
                continue
            first = seen.setdefault(effect.key, index)
            if first != index:
                shared.add(effect.key)
    return shared


def same_block(ctx: CheckContext, action: ResolvedAction, reported: set[int]) -> None:
    """Several operations on one field in one `update` block (FL501, not FL203)."""
    entity = action.decl.operations_on
    if entity is None:
        return
    first: dict[str, n.Node] = {}
    for op in action.operations:
        name = op.field_name if op.field_name.startswith(entity + ".") else f"{entity}.{op.field_name}"
        earlier = first.setdefault(name, op.line)
        if earlier is op.line or id(op.line) in reported:
            continue
        reported.add(id(op.line))
        ctx.report("FL501", op.line, f"`{op.field_name}` is changed twice in one "
                   f"`{action.phrase}` block: `{describe(earlier)}`, then `{describe(op.line)}`",
                   related=[(earlier, "first changed here")],
                   help="keep one operation per field in an update block")
