"""Rules on the shape of a flow's paths, read off its control-flow graph (`cfg`):

- FL401 a step no path reaches (once per run of such steps, at its first step);
- FL402 a loop that can go round without passing a wait (at the closing `goto`);
- FL403 a split branch that can never be taken (at the shadowed `branch`);
- FL404 a behaviour condition on a message not sent on every path before it;
- FL405 a `wait until` earlier than one before it on the same path;
- FL407 flows that hand participants round a cycle with no wait on the way.

Branch conditions are compared by evaluating them together over a small set of
representative participants (`_Cases`): every field compared with constants gets
each constant, a value between and around them, and "not set"; every other
condition is a free true/false. A branch is shadowed when every case that meets
its condition meets an earlier branch's too. This is sound (no warning when in
doubt): the values chosen cover every region the comparisons' boundaries draw,
and the conditions it cannot read are left free.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import operator
from typing import Callable, Iterator

from flowlang import nodes as n
from flowlang.check.cfg import END, ENTRY, Graph, describe, describe_expr, flow_graphs
from flowlang.check.context import CheckContext
from flowlang.check.effects import value_text


def rule(ctx: CheckContext) -> None:
    graphs = flow_graphs(ctx)
    for graph in graphs:
        unreachable(ctx, graph)
        loops(ctx, graph)
        shadowed_branches(ctx, graph)
        behaviour_before_send(ctx, graph)
        wait_until_order(ctx, graph)
    hand_over_cycles(ctx, graphs)


# ---------------------------------------------------------------------- FL401

def unreachable(ctx: CheckContext, graph: Graph) -> None:
    reached = graph.reachable()
    for block in graph.blocks:
        if block.owner not in reached:
            continue  # inside a step that is itself unreachable, and reported
        before: int | None = None  # the last step of the block that runs
        for position, index in enumerate(block.steps):
            if index in reached:
                before = index
            elif position == 0 or block.steps[position - 1] in reached:
                run = list(itertools.takewhile(lambda i: i not in reached, block.steps[position:]))
                _report_unreachable(ctx, graph, run, before)


def _report_unreachable(ctx: CheckContext, graph: Graph, run: list[int], after: int | None) -> None:
    first = graph.nodes[run[0]].ast
    before = graph.nodes[after].ast if after is not None else None
    more = {1: "", 2: " and the step after it"}.get(len(run), f" and the {len(run) - 1} steps after it")
    what = f"`{describe(first)}`{more}"
    if isinstance(before, (n.Complete, n.Exit, n.Goto)):
        why = f"it comes after `{describe(before)}`, which ends the path"
        help = f"remove it, or move it before `{describe(before)}`"
    elif isinstance(before, n.Split):
        why = "it comes after a split whose every branch ends the path"
        help = "let one branch go on (remove its `complete`, `exit` or `goto`), or remove the step"
    else:
        why = "no path from the start of the flow reaches it"
        help = "remove it, or `goto` its label from a step that runs"
    ctx.report("FL401", first, f"{what} can never run: {why}", help=help)


# ---------------------------------------------------------------------- FL402

def loops(ctx: CheckContext, graph: Graph) -> None:
    not_waiting = lambda node: not node.wait  # noqa: E731
    for node in graph.nodes:
        if not isinstance(node.ast, n.Goto):
            continue
        for edge in node.edges:
            head = graph.nodes[edge.target]
            if not edge.back or head.wait:
                continue
            if node.index in graph.reachable([edge.target], through=not_waiting):
                label = head.ast.label
                ctx.report("FL402", node.ast,
                           f"the loop back to `{label.text}` can go round without passing a wait",
                           related=[(label, "the loop starts here")],
                           help="put a wait in the loop (`wait 1 day`, `wait for …`), or leave it "
                                "with `complete` or `exit`")


# ---------------------------------------------------------------------- FL403

def shadowed_branches(ctx: CheckContext, graph: Graph) -> None:
    for node in graph.nodes:
        split = node.ast
        if not isinstance(split, n.Split):
            continue
        if split.mode == "random":
            for branch in split.branches:
                if isinstance(branch, n.Branch) and branch.weight is not None and branch.weight.value == 0:
                    ctx.report("FL403", branch, f'branch "{branch.name.value}" gets 0% of the '
                               "participants, so it is never taken",
                               help="give it a share above 0%, or remove it")
        elif split.mode == "when":
            when_branches(ctx, split)


def when_branches(ctx: CheckContext, split: n.Split) -> None:
    branches = [b for b in split.items if isinstance(b, n.Branch)]
    if len(branches) != len(split.branches) or any(b.condition is None for b in branches):
        return  # a malformed split is FL302; nothing sure can be said
    conditions = [b.condition for b in branches]
    cases = _Cases(conditions)
    table = cases.table()
    if table is None:
        return  # too many cases to be sure
    for j, branch in enumerate(branches):
        if any(row[j] and not any(row[:j]) for row in table):
            continue
        name = branch.name.value
        if not any(row[j] for row in table):
            ctx.report("FL403", branch, f'branch "{name}" can never be taken: its condition '
                       f"`{describe_expr(branch.condition)}` is never true",
                       help="fix the condition, or remove the branch")
            continue
        alone = [i for i in range(j) if all(row[i] for row in table if row[j])]
        # else the branches that take its participants first
        covering = alone[:1] or sorted({row.index(True) for row in table if row[j]})
        names = _listing([f'"{branches[i].name.value}"' for i in covering])
        ctx.report("FL403", branch, f'branch "{name}" can never be taken: every participant it '
                   f"matches is taken by branch{'es' if len(covering) > 1 else ''} {names} before it",
                   related=[(branches[i], f'branch "{branches[i].name.value}" comes first')
                            for i in covering],
                   help=f'put branch "{name}" before {names}, or change its condition')


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


#: Above this many representative participants, a split is not judged.
MAX_CASES = 4096
_MISSING = object()


class _Cases:
    """Representative participants for a set of conditions (see the module doc).
    Each variable — a field, or a condition read as a free true/false — gets a
    position in one tuple; each condition is compiled once to a test of it."""

    def __init__(self, conditions: list[n.Node]):
        self.variables: dict[object, int] = {}
        self.values: list[set] = []
        self.tests = [self.compile(c) for c in conditions]

    def variable(self, key: object, values=()) -> int:
        index = self.variables.get(key)
        if index is None:
            index = self.variables[key] = len(self.values)
            self.values.append(set())
        self.values[index].update(values)
        return index

    def compile(self, node: n.Node) -> Callable[[tuple], bool]:
        """A test with the runtime's meaning (`flowlang.runtime.expr`): comparisons
        with a field that is not set are false, `not in` is true."""
        if isinstance(node, n.BoolOp):
            left, right = self.compile(node.left), self.compile(node.right)
            if node.op == "and":
                return lambda case: left(case) and right(case)
            return lambda case: left(case) or right(case)
        if isinstance(node, n.Not):
            operand = self.compile(node.operand)
            return lambda case: not operand(case)
        if isinstance(node, n.IsSet) and isinstance(node.operand, n.Ref):
            i, negated = self.variable(("field", node.operand.path)), node.negated
            return lambda case: (case[i] is None) == negated
        if isinstance(node, n.Ref):
            i = self.variable(("field", node.path), (True, False))
            return lambda case: bool(case[i])
        comparison = _field_comparison(node)
        if comparison is not None:
            path, op, constant = comparison
            i = self.variable(("field", path), constant if isinstance(constant, tuple) else (constant,))
            return _comparison(op, i, constant)
        i = self.variable(("condition", node), (False, True))
        return lambda case: case[i]

    def table(self) -> list[list[bool]] | None:
        """For each representative participant, which conditions hold."""
        samples = [[False, True] if kind == "condition" else _samples(values)
                   for (kind, _), values in zip(self.variables, self.values)]
        count = 1
        for values in samples:
            count *= len(values)
        if count > MAX_CASES:
            return None
        tests = self.tests
        return [[test(case) for test in tests] for case in itertools.product(*samples)]


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _field_comparison(node: n.Node):
    """(field path, operator, constant) for `field OP constant` (either way round
    for ordering and equality), else None."""
    if not isinstance(node, n.Compare):
        return None
    left, op, right = node.left, node.op, node.right
    if not isinstance(left, n.Ref) and isinstance(right, n.Ref) and op in _FLIPPED:
        left, op, right = right, _FLIPPED[op], left
    if not isinstance(left, n.Ref):
        return None
    if op in ("in", "not in"):
        if isinstance(right, n.ListLit):
            items = tuple(_constant(i) for i in right.items)
            if all(i is not _MISSING for i in items):
                return left.path, op, items
        return None
    constant = _constant(right)
    if constant is _MISSING or (op in _ORDER and isinstance(constant, str)):
        return None  # strings are ordered by code point: no boundaries to sample
    return left.path, op, constant


def _constant(node: n.Node):
    if isinstance(node, n.Num):
        return node.value
    if isinstance(node, n.Str):
        return node.value
    if isinstance(node, n.DateLit) and node.value is not None:
        return node.value
    return _MISSING


def _samples(constants: set) -> list:
    """Values that meet every boundary the constants draw, and a field not set."""
    numbers = sorted(c for c in constants if isinstance(c, (int, float)) and not isinstance(c, bool))
    dates = sorted(c for c in constants if isinstance(c, _dt.date))
    out: list = [None, "\0other"]
    out += [c for c in constants if isinstance(c, (str, bool))]
    if numbers:
        out += numbers + [numbers[0] - 1, numbers[-1] + 1]
        out += [(a + b) / 2 for a, b in zip(numbers, numbers[1:])]
    day = _dt.timedelta(days=1)
    for d in dates:
        out += [d - day, d, d + day]
    return list(dict.fromkeys(out))


def _comparison(op: str, i: int, constant) -> Callable[[tuple], bool]:
    if op == "==":
        return lambda case: case[i] == constant
    if op == "!=":
        return lambda case: case[i] != constant
    if op == "in":
        return lambda case: case[i] in constant
    if op == "not in":
        return lambda case: case[i] not in constant
    order = _ORDER[op]

    def ordered(case: tuple) -> bool:
        value = case[i]
        if value is None:
            return False
        try:
            return order(value, constant)
        except TypeError:  # a value of another type: false, as at run time
            return False
    return ordered


# ---------------------------------------------------------------------- FL404

def behaviour_before_send(ctx: CheckContext, graph: Graph) -> None:
    sent_before = _must_be_sent(graph)
    for index, sent in sent_before.items():
        step = graph.nodes[index].ast
        if isinstance(step, n.Split):
            for branch in step.items:
                if isinstance(branch, n.Branch) and branch.condition is not None:
                    _check_condition(ctx, graph, branch.condition, branch, sent)
        elif isinstance(step, n.WaitFor):
            _check_condition(ctx, graph, step.condition, step, sent)


def _sends(graph: Graph, index: int) -> set[tuple]:
    return {(e.verb, e.kind, e.target) for e in graph.nodes[index].effects if e.verb == "sends"}


def _must_be_sent(graph: Graph) -> dict[int, frozenset]:
    """For each reachable node, the messages sent on every path from the entry to
    it (a forward must-analysis; loops are iterated to a fixed point). A `no
    mobile` edge leaves before the SMS is sent."""
    sends = {i: _sends(graph, i) for i in range(len(graph.nodes))}
    state: dict[int, frozenset] = {ENTRY: frozenset()}
    work = [ENTRY]
    while work:
        index = work.pop()
        here = state[index]
        after = here | sends[index]
        for edge in graph.nodes[index].edges:
            out = here if edge.kind == "no mobile" else after
            old = state.get(edge.target)
            new = out if old is None else old & out
            if new != old:
                state[edge.target] = new
                work.append(edge.target)
    return state


def _check_condition(ctx: CheckContext, graph: Graph, condition: n.Node, anchor: n.Node,
                     sent: frozenset) -> None:
    for phrase in condition.walk():
        if not isinstance(phrase, n.Phrase) or id(phrase) not in ctx.conditions:
            continue
        event, values = ctx.conditions[id(phrase)]
        if event.requires is None:
            continue
        verb, kind = event.requires
        target = next((value_text(v) for v in values if v is not None), None)
        if (verb, kind, target) in sent:
            continue
        where = [graph.nodes[i].ast for i in range(len(graph.nodes))
                 if (verb, kind, target) in _sends(graph, i)]
        shown = f'{"e-mail" if kind == "email" else kind} "{target}"'
        if where:
            message = f"`{describe_expr(phrase)}` is tested before {shown} is sent on every path"
            related = [(where[0], "sent here, but not on every path before the condition")]
        else:
            message = f"`{describe_expr(phrase)}` tests {shown}, which this flow never sends"
            related = []
        at = phrase if phrase.span.line == anchor.span.line else anchor
        ctx.report("FL404", at, message, related=related,
                   help=f"send {shown} on every path before this condition, or test it after the send")


# ---------------------------------------------------------------------- FL405

def wait_until_order(ctx: CheckContext, graph: Graph) -> None:
    """Along the paths of the graph without its back edges (a loop goes round
    after its dates have passed), the latest `wait until` before each node."""
    reached = graph.reachable()
    latest: dict[int, tuple] = {}
    for index in graph.topological():
        if index not in reached:
            continue
        before = latest.get(index)
        node = graph.nodes[index]
        after = before
        if isinstance(node.ast, n.WaitUntil) and node.ast.date.value is not None:
            moment = _moment(node.ast)
            if before is not None and moment < before[0]:
                ctx.report("FL405", node.ast, f"`{describe(node.ast)}` is earlier than "
                           f"`{describe(before[1])}` before it, so participants go on at once",
                           related=[(before[1], "the later date, waited for first")],
                           help="put the dates in order, or remove one of the waits")
            if before is None or moment > before[0]:
                after = (moment, node.ast)
        if after is None:
            continue
        for target in graph.successors(index, back=False):
            if target not in latest or latest[target][0] < after[0]:
                latest[target] = after


def _moment(step: n.WaitUntil) -> _dt.datetime:
    time = step.time.value if step.time is not None and step.time.value is not None else _dt.time()
    return _dt.datetime.combine(step.date.value, time)


# ---------------------------------------------------------------------- FL407

def hand_over_cycles(ctx: CheckContext, graphs: list[Graph]) -> None:
    order = {graph.owner.name.text: i for i, graph in reversed(list(enumerate(graphs)))}
    edges: dict[str, dict[str, list[n.Node]]] = {}
    for position, graph in enumerate(graphs):
        name = graph.owner.name.text
        if order[name] != position:
            continue  # a second flow of the same name is FL203
        for index in sorted(graph.reachable(through=lambda node: not node.wait)):
            node = graph.nodes[index]
            if node.wait or node.action is None or index == END:
                continue
            for effect in node.effects:
                if effect.verb == "hands_over" and effect.kind == "flow" and effect.target in order:
                    edges.setdefault(name, {}).setdefault(effect.target, []).append(node.ast)
    for cycle in _cycles(edges, order):
        hand_overs = [(a, b, node) for a, b in zip(cycle, cycle[1:] + cycle[:1]) for node in edges[a][b]]
        last = max(hand_overs, key=lambda h: _position(h[2]))
        start = cycle.index(last[1])
        names = cycle[start:] + cycle[:start]
        if len(cycle) == 1:
            message = f"flow `{cycle[0]}` hands participants back to itself with no wait on the way"
        else:
            message = ("flows " + " → ".join(f"`{f}`" for f in names + names[:1]) +
                       " hand participants round in a cycle with no wait on the way")
        firsts = {(a, b): min(edges[a][b], key=_position) for a, b, _ in hand_overs}
        related = [(node, f"`{a}` hands participants to `{b}` here")
                   for (a, b), node in firsts.items() if (a, b) != last[:2]]
        ctx.report("FL407", last[2], message, related=related,
                   help="put a wait before one of these hand-overs, or remove one of them")


def _position(node: n.Node) -> tuple:
    return (node.span.file, node.span.line, node.span.column)


#: Enough for any real project; a pathological one is not enumerated further.
MAX_CYCLES = 200
MAX_SEARCH = 100_000


def _cycles(edges: dict[str, dict[str, list]], order: dict[str, int]) -> Iterator[list[str]]:
    """The elementary cycles of the hand-over graph, each once, starting at its
    first flow in file order."""
    found = steps = 0
    for start in sorted(edges, key=order.get):
        rank = order[start]
        stack = [(start, iter(sorted(edges.get(start, {}), key=order.get)))]
        path = [start]
        while stack:
            _, targets = stack[-1]
            steps += 1
            if steps > MAX_SEARCH:
                return
            for target in targets:
                if target == start:
                    yield list(path)
                    found += 1
                    if found >= MAX_CYCLES:
                        return
                elif order[target] > rank and target not in path:
                    path.append(target)
                    stack.append((target, iter(sorted(edges.get(target, {}), key=order.get))))
                    break
            else:
                stack.pop()
                path.pop()
