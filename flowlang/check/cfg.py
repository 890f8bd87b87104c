"""The control-flow graph of a flow: which step can follow which.

The path rules (FL401–FL405, FL407, FL501, FL502) all ask the same questions —
can this step run, what runs before it on every path, is there a wait between
two actions — so they share one graph instead of each re-learning the tree.

A node stands for one step, or for one action of an exit block (the block of
`exit`, `otherwise exit`, `else exit`, `no mobile exit`) or of a `complete`
block: those actions run on the participant's way out, so they are on its
path like any step. Node 0 is the entry, node 1 the end (every way out of the
flow). The other nodes are numbered in source order, so a `goto` whose target
does not come after it is a back edge: the only kind of edge that can close a
loop, because every other edge leads forward in the text.

Edges, and why each exists:

- `next`: a step that does not end the path goes on to the step after it; the
  last step of a block goes where the block leads (the end of the flow, the
  step after a split, the end for an exit block).
- `branch`: a split tries its branches in order; each branch body is a way on.
  Every branch gets its edge, even one that can never be taken (FL403 says so;
  the steps inside are not also reported unreachable).
- `otherwise`: the split's `otherwise` block; without one, a participant that
  matches no branch goes on after the split (`no match`). A random split
  always takes one of its branches.
- the end of a branch body falls through to the step after the split (`next`).
- `goto`: a jump to the labelled step.
- `exit` and `complete` end the path: their edge leads to their block's actions
  and from there to the end. `complete { success …; no success … }` has two
  edges (`success`, `no success`): only one of the two outcomes runs.
- `timeout`: `wait for … else exit` drops the participant out when the wait
  times out, through its block. With `else continue` (the default) both the
  event and the timeout go on to the next step: one `next` edge.
- `no mobile`: `send sms` with `no mobile exit { … }` drops a participant
  without a mobile number out, through the setting's block.

A node is a wait when the participant rests there: `wait`, `wait until`,
`wait for`, and actions declared `manual` (a drafted e-mail waits for the user
to send it).
"""
from __future__ import annotations

import weakref
from typing import Callable, Iterable, Iterator, Sequence

import attrs

from flowlang import nodes as n
from flowlang.check.context import CheckContext, ResolvedAction
from flowlang.check.effects import Effect, effects_of

ENTRY, END = 0, 1
_WAITS = (n.Wait, n.WaitUntil, n.WaitFor)


@attrs.frozen
class Edge:
    target: int
    kind: str  # next | branch | otherwise | no match | goto | exit | success | no success | timeout | no mobile
    #: A `goto` to a step at or before it: the edge that closes a loop.
    back: bool = False


@attrs.define(eq=False)
class Node:
    """A step or block action; `wait` when the participant rests there."""

    index: int
    #: The step, or the action line of an exit or `complete` block; None for entry and end.
    ast: n.Node | None
    wait: bool = False
    #: The resolved action, for action steps and block actions, and its effects.
    action: ResolvedAction | None = None
    effects: list[Effect] = attrs.field(factory=list)
    edges: list[Edge] = attrs.field(factory=list)


@attrs.define(eq=False)
class Block:
    """One sequence of steps, with the node it belongs to (entry for the top level):
    FL401 reports the first unreachable step of a run within one block."""

    owner: int
    steps: list[int]


@attrs.define(eq=False)
class Graph:
    owner: n.Node  # the flow (or form, link, pipeline handler)
    nodes: list[Node]
    blocks: list[Block]
    labels: dict[str, int]
    _by_ast: dict[int, int]  # id(step or action line) -> node index

    def node_of(self, ast: n.Node) -> Node | None:
        index = self._by_ast.get(id(ast))
        return self.nodes[index] if index is not None else None

    def successors(self, index: int, *, back: bool = True) -> Iterator[int]:
        for edge in self.nodes[index].edges:
            if back or not edge.back:
                yield edge.target

    def reachable(self, starts: Iterable[int] = (ENTRY,), *, through: Callable[[Node], bool] | None = None,
                  back: bool = True) -> set[int]:
        """Nodes reachable from `starts` (which are included). With `through`, a
        node for which it is false is reached but not passed."""
        seen = set(starts)
        stack = list(seen)
        while stack:
            index = stack.pop()
            if through is not None and not through(self.nodes[index]):
                continue
            for target in self.successors(index, back=back):
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    def topological(self) -> list[int]:
        """Node indices with every forward edge (back edges left out) going from
        an earlier to a later position: a topological order of the acyclic graph."""
        order: list[int] = []
        state = [0] * len(self.nodes)  # 0 new, 1 on the stack, 2 done
        for root in range(len(self.nodes)):
            if state[root]:
                continue
            stack = [(root, iter(list(self.successors(root, back=False))))]
            state[root] = 1
            while stack:
                index, it = stack[-1]
                for target in it:
                    if state[target] == 0:
                        state[target] = 1
                        stack.append((target, iter(list(self.successors(target, back=False)))))
                        break
                else:
                    stack.pop()
                    state[index] = 2
                    order.append(index)
        order.reverse()
        return order


class _Builder:
    def __init__(self, ctx: CheckContext, owner: n.Node):
        self.ctx = ctx
        self.graph = Graph(owner, [Node(ENTRY, None), Node(END, None)], [], {}, {})
        self._pending: list[tuple[int, n.Goto]] = []

    # ------------------------------------------------------------------ nodes, in source order
    def create(self, statements: Sequence[n.Node], owner: int) -> None:
        graph = self.graph
        block = Block(owner, [])
        graph.blocks.append(block)
        for step in statements:
            index = self.node(step)
            block.steps.append(index)
            label = getattr(step, "label", None)
            if label is not None:
                graph.labels.setdefault(label.text, index)
            for _, body in self.nested(step):
                if body is not None:
                    self.create(body.statements, index)
            if isinstance(step, n.Complete) and step.body is not None:
                for line in step.body.statements:
                    self.node(line)

    def node(self, ast: n.Node) -> int:
        graph = self.graph
        action = self.ctx.action_of(ast)
        wait = isinstance(ast, _WAITS) or (action is not None and action.decl.manual)
        index = len(graph.nodes)
        effects = effects_of(action) if action is not None else []
        graph.nodes.append(Node(index, ast, wait, action, effects))
        graph._by_ast[id(ast)] = index
        return index

    def nested(self, step: n.Node) -> Iterator[tuple[str, n.Block | None]]:
        """The blocks of steps inside `step` that a participant can enter, with the
        kind of edge that enters them (in source order)."""
        if isinstance(step, n.Split):
            for item in step.items:
                if isinstance(item, n.Otherwise):
                    yield ("exit" if item.exit else "otherwise"), item.body
                else:
                    yield "branch", item.body
        elif isinstance(step, n.WaitFor):
            if isinstance(step.otherwise, n.ElseExit):
                yield "timeout", step.otherwise.body
        elif isinstance(step, n.Exit):
            yield "exit", step.body
        elif isinstance(step, n.Command):
            for setting in _exit_settings(self.ctx.action_of(step)):
                yield "no mobile", setting.line.body

    # ------------------------------------------------------------------ edges
    def wire(self, statements: Sequence[n.Node], after: int) -> int:
        """Wire one block whose end leads to `after`; returns its first node."""
        indices = [self.graph._by_ast[id(step)] for step in statements]
        for i, step in enumerate(statements):
            self.wire_step(step, indices[i], indices[i + 1] if i + 1 < len(indices) else after)
        return indices[0] if indices else after

    def wire_step(self, step: n.Node, index: int, after: int) -> None:
        edges = self.graph.nodes[index].edges
        if isinstance(step, n.Goto):
            self._pending.append((index, step))
            return
        if isinstance(step, n.Complete):
            self.outcomes(step, edges)
            return
        ends = isinstance(step, n.Exit)
        for kind, body in self.nested(step):
            # an exit block ends the path; a branch or `otherwise` body goes on after the split
            leads = END if kind in ("exit", "timeout", "no mobile") else after
            edges.append(Edge(self.wire(body.statements, leads) if body is not None else leads, kind))
        if isinstance(step, n.Split):
            if step.otherwise is None and step.mode != "random":
                edges.append(Edge(after, "no match"))
        elif not ends:
            edges.append(Edge(after, "next"))

    def outcomes(self, step: n.Complete, edges: list[Edge]) -> None:
        """`complete { success A; no success B }`: one chain of actions per outcome."""
        chains: dict[str, list[int]] = {"success": [], "no success": []}
        for line in step.body.statements if step.body is not None else ():
            action = self.ctx.action_of(line)
            words = line.words if isinstance(line, n.Command) else ()
            outcome = action.outcome if action is not None else (
                "no success" if words[:2] == ("no", "success") else "success")
            chains[outcome].append(self.graph._by_ast[id(line)])
        for outcome, chain in chains.items():
            for here, there in zip(chain, chain[1:] + [END]):
                self.graph.nodes[here].edges.append(Edge(there, "next"))
            edges.append(Edge(chain[0] if chain else END, outcome))

    def gotos(self) -> None:
        graph = self.graph
        for index, step in self._pending:
            target = graph.labels.get(step.target.text)
            if target is not None:  # an unknown label is FL204; the path just stops
                graph.nodes[index].edges.append(Edge(target, "goto", back=target <= index))


def _exit_settings(action: ResolvedAction | None):
    """The setting through which a participant drops out of an action, if it says
    so: `no mobile exit { … }`, as the action's `when missing mobile follow "no
    mobile"` declares."""
    if action is None or action.decl.when_missing is None:
        return
    setting = action.setting(action.decl.when_missing[1])
    if setting is not None and setting.word == "exit":
        yield setting


def build(ctx: CheckContext, statements: Sequence[n.Node], owner: n.Node) -> Graph:
    """The graph of one sequence of steps: a flow's steps, or a handler's actions."""
    builder = _Builder(ctx, owner)
    builder.create(statements, ENTRY)
    first = builder.wire(statements, END)
    builder.graph.nodes[ENTRY].edges.append(Edge(first, "next"))
    builder.gotos()
    return builder.graph


def flow_graphs(ctx: CheckContext) -> list[Graph]:
    """The graph of every flow that parsed cleanly, in file order; built once per
    check and shared by the rules that need it."""
    graphs = _GRAPHS.get(ctx)
    if graphs is None:
        graphs = _GRAPHS[ctx] = [build(ctx, flow.steps, flow) for flow in ctx.declarations(n.Flow)]
    return graphs


#: Graphs per check context, dropped with the context.
_GRAPHS: weakref.WeakKeyDictionary[CheckContext, list[Graph]] = weakref.WeakKeyDictionary()


def handler_graphs(ctx: CheckContext) -> Iterator[Graph]:
    """Graphs of the action blocks outside flows: form and link handlers, pipeline
    and stage handlers (straight sequences of actions)."""
    for decl in ctx.declarations((n.Form, n.Link, n.Pipeline)):
        for item in decl.items:
            if isinstance(item, n.Handler):
                yield build(ctx, item.body.statements, item)
            elif isinstance(item, n.Stage) and item.items is not None:
                for handler in item.items:
                    if isinstance(handler, n.Handler):
                        yield build(ctx, handler.body.statements, handler)


# ---------------------------------------------------------------------- the user's words

def describe(node: n.Node) -> str:
    """A step or action line as the user wrote it, for messages: `send email "Welcome"`,
    `wait 3 days`, `goto top`, `set language = "en"` (blocks left out)."""
    if isinstance(node, n.Command):
        return _words(node.parts)
    if isinstance(node, n.Wait):
        return f"wait {_words((node.duration,))}"
    if isinstance(node, n.WaitUntil):
        return "wait until " + _words((node.date,) + ((node.time,) if node.time is not None else ()))
    if isinstance(node, n.WaitFor):
        return f"wait for {describe_expr(node.condition)}"
    if isinstance(node, n.Goto):
        return f"goto {node.target.text}"
    if isinstance(node, n.Split):
        return f'split "{node.title.value}"' if node.title is not None else "split"
    if isinstance(node, n.Exit):
        return "exit"
    if isinstance(node, n.Complete):
        return "complete"
    return "this step"


def describe_expr(node: n.Node) -> str:
    if isinstance(node, n.Phrase):
        return _words(node.parts)
    if isinstance(node, n.BoolOp):
        return f"{describe_expr(node.left)} {node.op} {describe_expr(node.right)}"
    if isinstance(node, n.Not):
        return f"not {describe_expr(node.operand)}"
    if isinstance(node, n.Compare):
        return f"{describe_expr(node.left)} {node.op} {describe_expr(node.right)}"
    if isinstance(node, n.IsSet):
        return f"{describe_expr(node.operand)} is {'not ' if node.negated else ''}set"
    return _words((node,))


def _words(parts: Iterable[n.Node]) -> str:
    out = []
    for part in parts:
        if isinstance(part, (n.Word, n.Name)):
            out.append(part.text)
        elif isinstance(part, n.Ref):
            out.append(part.dotted)
        elif isinstance(part, n.Str):
            text = part.value if len(part.value) <= 40 else part.value[:39] + "…"
            out.append('"' + " ".join(text.split()) + '"')
        elif isinstance(part, n.Equals):
            out.append("=")
        elif isinstance(part, (n.DateLit, n.TimeLit, n.Percent, n.InvalidLit)) and part.text:
            out.append(part.text)
        elif isinstance(part, n.ListLit):
            out.append("[" + ", ".join(_words((i,)) for i in part.items) + "]")
        elif isinstance(part, (n.Num, n.DurationLit, n.SizeLit)):
            value = part.value
            out.append(str(int(value)) if isinstance(value, float) and value.is_integer() else str(value))
        elif isinstance(part, n.BoolLit):
            out.append("true" if part.value else "false")
    return " ".join(out)
