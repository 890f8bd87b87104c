"""Diagrams of flows and pipelines: IR -> `Diagram` -> DOT or Mermaid text.

`diagram(machine, counts)` turns one compiled machine (and, when given, the
counts of a simulation or of a running engine) into the back-end-neutral
`Diagram` of `style`; `RENDERERS` maps each output format to the function that
draws it. Text formats are pure functions of the IR; SVG and PNG pipe the DOT
text through Graphviz's `dot` program, the only I/O here.

    from flowlang.render import RENDERERS, diagram
    text = RENDERERS["mermaid"].render(diagram(machines["welcome"]), legend=True)
"""
from __future__ import annotations

from typing import Callable, Mapping

import attrs

from flowlang.ir import RESTING
from flowlang.render import dot, mermaid
from flowlang.render.style import (
    MANUAL_LINE,
    STATUSES,
    Diagram,
    Edge,
    Node,
    RenderError,
    action_kind,
    action_list,
    declaration,
    describe,
    details,
    duration,
    expr_text,
    literal,
    wrap,
    wrap_all,
)

__all__ = ["RENDERERS", "Format", "Counts", "Diagram", "RenderError", "diagram", "read_counts",
           "unknown_steps"]


@attrs.frozen
class Format:
    """An output format: how to draw a diagram (`render(diagram, legend=False)`),
    and whether the result is bytes, which never go to a terminal."""
    render: Callable[..., str | bytes]
    binary: bool = False


RENDERERS: dict[str, Format] = {
    "dot": Format(dot.render),
    "svg": Format(dot.render_svg),
    "png": Format(dot.render_png, binary=True),
    "mermaid": Format(mermaid.render),
}

TRIGGER, END = "#trigger", "#end"


# ---------------------------------------------------------------------- flows

class _Flow:
    """Collects the nodes and edges of one flow, state by state."""

    def __init__(self, machine: Mapping):
        self.machine = machine
        self.participant = machine["participant"]
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []
        self.ends = False

    def to(self, target: str | None) -> str:
        """A state's `next`, or the flow's end (status completed) when null."""
        if target is None:
            self.ends = True
            return END
        return target

    def edge(self, tail: str, head: str | None, kind: str, label=()) -> None:
        self.edges.append(Edge(tail, self.to(head), kind, wrap_all(label)))

    def step(self, state: Mapping, kind: str, title: str, lines=(), manual: bool = False) -> None:
        label = state.get("label")
        if label and not title.startswith(label):
            title = f"{label}: {title}"
        self.nodes.append(Node(state["id"], kind, wrap(title), wrap_all(lines), manual))

    def exit(self, node_id: str, actions, why: str = "") -> None:
        """An `exit` node for an `else exit`, `otherwise exit`, `no … exit`."""
        lines = ([why] if why else []) + action_list(actions, self.participant)
        self.nodes.append(Node(node_id, "exit", ("exit",), wrap_all(lines)))


def _action(f: _Flow, s: Mapping) -> None:
    do, manual = s["do"], s["kind"] == "manual"
    lines = details(do)
    missing = do.get("when_missing")
    if missing and missing["rule"] != "exit":
        lines.append(f"no {missing['field']}: {missing['rule']}")
    if manual:
        lines.append(MANUAL_LINE)
    f.step(s, action_kind(do), describe(do, f.participant), lines, manual)
    f.edge(s["id"], s["next"], "next")
    if missing and missing["rule"] == "exit":
        exit_id = f"{s['id']}#no-{missing['field']}-exit"
        f.exit(exit_id, missing["actions"])
        f.edge(s["id"], exit_id, "exit", [f"no {missing['field']}"])


def _wait(f: _Flow, s: Mapping) -> None:
    f.step(s, "wait", f"wait {duration(s['duration'])}")
    f.edge(s["id"], s["next"], "next")


def _wait_until(f: _Flow, s: Mapping) -> None:
    f.step(s, "wait", " ".join(["wait until", s["date"], *([s["time"]] if s["time"] else [])]))
    f.edge(s["id"], s["next"], "next")


def _wait_for(f: _Flow, s: Mapping) -> None:
    within = duration(s["within"])
    f.step(s, "wait_for", f"wait for {expr_text(s['condition'], f.participant)}", [f"within {within}"])
    f.edge(s["id"], s["next"], "next")
    if s["on_timeout"] == "exit":
        exit_id = f"{s['id']}#timeout-exit"
        f.exit(exit_id, s["timeout_actions"])
        f.edge(s["id"], exit_id, "exit", [f"after {within}: else exit"])
    else:
        f.edge(s["id"], s["next"], "timeout", [f"after {within}"])


def _split_title(s: Mapping, participant: str) -> str:
    title = s["title"] or "split"
    if s["mode"] == "value":
        on = f"split on {expr_text(s['subject'], participant)}"
        return f"{s['title']}: {on}" if s["title"] else on
    return f"{title} (random)" if s["mode"] == "random" else title


#: The label of a split's branch, by the split's mode.
_BRANCH_LABEL: dict[str, Callable[[Mapping, str], list[str]]] = {
    "when": lambda b, p: [b["name"], expr_text(b["condition"], p)],
    "random": lambda b, p: [b["name"], f"{literal(b['weight'])}%"],
    "value": lambda b, p: [", ".join(literal(v) for v in b["values"])],
}


def _split(f: _Flow, s: Mapping) -> None:
    f.step(s, "split", _split_title(s, f.participant))
    for branch in s["branches"]:
        f.edge(s["id"], branch["next"], "branch", _BRANCH_LABEL[s["mode"]](branch, f.participant))
    otherwise = s["otherwise"]
    if otherwise and otherwise["exit"]:
        exit_id = f"{s['id']}#otherwise-exit"
        f.exit(exit_id, otherwise["actions"])
        f.edge(s["id"], exit_id, "exit", ["otherwise exit"])
    elif otherwise:
        f.edge(s["id"], otherwise["next"], "branch", ["otherwise"])
    elif s["mode"] != "random":
        f.edge(s["id"], s["next"], "branch", ["no branch taken"])


def _goto(f: _Flow, s: Mapping) -> None:
    f.step(s, "goto", f"goto {s['target']}")
    f.edges.append(Edge(s["id"], s["target"], "goto"))


def _exit(f: _Flow, s: Mapping) -> None:
    f.step(s, "exit", "exit", action_list(s["actions"], f.participant))


def _complete(f: _Flow, s: Mapping) -> None:
    f.step(s, "complete", "complete",
           action_list(s["success_actions"], f.participant, "success: ")
           + action_list(s["no_success_actions"], f.participant, "no success: "))


STATES: dict[str, Callable[[_Flow, Mapping], None]] = {
    "action": _action, "manual": _action, "wait": _wait, "wait_until": _wait_until,
    "wait_for": _wait_for, "split": _split, "goto": _goto, "exit": _exit, "complete": _complete,
}


def _trigger(machine: Mapping) -> Node:
    trigger, p = machine["trigger"], machine["participant"]
    lines = [f"on {e['phrase']}" for e in trigger["events"]] or ["no trigger event: enrolled directly"]
    if trigger["once_per_person"]:
        lines.append("once per person")
    if trigger["filter"] is not None:
        lines.append(f"filter {expr_text(trigger['filter'], p)}")
    lines += [f"exclude selection {literal(s)}" for s in trigger["exclude"]]
    if machine["success"] is not None:
        lines.append(f"success when {expr_text(machine['success'], p)}")
    return Node(TRIGGER, "trigger", ("trigger",), wrap_all(lines))


def flow_diagram(machine: Mapping) -> Diagram:
    f = _Flow(machine)
    f.nodes.append(_trigger(machine))
    f.edge(TRIGGER, machine["start"], "next")
    for state in machine["states"]:
        STATES[state["kind"]](f, state)
    if f.ends:
        f.nodes.append(Node(END, "end", ("end",)))
    return Diagram(machine["name"], _title(machine), "TB", tuple(f.nodes), tuple(f.edges))


def _title(machine: Mapping) -> str:
    kind = machine["kind"]
    name = f"{kind} {machine['name']}"
    return f"{machine['title']} ({name})" if machine["title"] else name


# ------------------------------------------------------------------ pipelines

def _stage_settings(action: Mapping) -> list[str]:
    """The settings of an action that name a stage (declared `{stage}`)."""
    decl = declaration(action)
    if decl is None:
        return []
    return [s.text for s in decl.settings
            if any(slot.kind == "stage" for alt in s.alternatives for slot in alt.slots)]


def pipeline_diagram(machine: Mapping) -> Diagram:
    p = machine["participant"]
    stages = machine["stages"]
    ids = {s["id"] for s in stages}
    nodes = [Node(TRIGGER, "trigger", (f"new {p}",), ("starts in the first stage",))]
    edges = [Edge(TRIGGER, stages[0]["id"], "next")] if stages else []
    for stage in stages:
        lines = ["final: completes the record"] if stage["final"] else []
        if stage["on_enter"]:
            lines += ["on enter:", *action_list(stage["on_enter"], p, "· ")]
        nodes.append(Node(stage["id"], "final" if stage["final"] else "stage",
                          wrap(stage["title"] or stage["id"]), wrap_all(lines)))
    moved = set()
    for move in machine["moves"]:
        moved |= {(move["from"], move["to"]), (move["to"], move["from"])}
        label = "on " + ", ".join(e["phrase"] for e in move["on"])
        edges.append(Edge(move["from"], move["to"], "move", wrap(label)))
    # stages stand left to right in their (forward) order even where no move joins them
    for a, b in zip(stages, stages[1:]):
        if (a["id"], b["id"]) not in moved:
            edges.append(Edge(a["id"], b["id"], "order"))
    for i, handler in enumerate(machine["handlers"], 1):
        node_id = f"#handler-{i}"
        lines = [f"where {expr_text(handler['where'], p)}"] if handler["where"] is not None else []
        nodes.append(Node(node_id, "handler", wrap(f"on {handler['on']['phrase']}"),
                          wrap_all(lines + action_list(handler["actions"], p)), group="handlers"))
        for action in handler["actions"]:
            for setting in _stage_settings(action):
                stage = action["settings"].get(setting)
                if stage in ids:
                    edges.append(Edge(node_id, stage, "creates", wrap(describe(action, p))))
    return Diagram(machine["name"], _title(machine), "LR", tuple(nodes), tuple(edges))


BUILDERS: dict[str, Callable[[Mapping], Diagram]] = {
    "flow": flow_diagram, "pipeline": pipeline_diagram,
}


# --------------------------------------------------------------------- counts

@attrs.frozen
class Counts:
    """Participants per step and status, and when known the path each took."""
    steps: Mapping[str, Mapping[str, int]]
    paths: tuple[tuple[str, tuple[str, ...]], ...] | None = None  # (status, path)


#: Pseudo-steps of `Engine.counts` for participants not yet at a step.
_BEFORE_START = ("(queued)", "(start)")


def read_counts(data) -> Counts:
    """The `counts` of `flowlang simulate --format json` (with its participants'
    paths), or a `{"steps": {…}}` object as the engine's counts give it."""
    steps = None
    if isinstance(data, dict):
        steps = data.get("counts", data.get("steps"))
    if not isinstance(steps, dict) or not all(
            isinstance(v, dict) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                        for n in v.values()) for v in steps.values()):
        raise RenderError('expected the JSON of `flowlang simulate --format json` (a "counts" '
                          'object: step -> {status: n}) or {"steps": {step: {status: n}}}')
    paths = None
    participants = data.get("participants")
    if isinstance(participants, list):
        paths = tuple((str(p.get("status")), tuple(str(s) for s in p.get("path") or ()))
                      for p in participants if isinstance(p, dict))
    return Counts({k: dict(v) for k, v in steps.items()}, paths)


def _count_line(statuses: Mapping[str, int], passed: int | None) -> tuple[str, ...]:
    parts = [f"passed {passed}"] if passed else []
    parts += [f"{word} {statuses[s]}" for s, word in STATUSES.items() if statuses.get(s)]
    parts += [f"{s} {n}" for s, n in sorted(statuses.items()) if s not in STATUSES and n]
    return wrap(" · ".join(parts)) if parts else ()


def overlay(d: Diagram, machine: Mapping, counts: Counts) -> Diagram:
    """Counts on the nodes (by status, and how many passed), traffic on the edges
    (from the participants' paths when given), nodes shaded by volume."""
    at: dict[str, dict[str, int]] = {}
    for step, statuses in counts.steps.items():
        target = TRIGGER if step in _BEFORE_START else step
        for status, n in statuses.items():
            at.setdefault(target, {}).setdefault(status, 0)
            at[target][status] += n
    passed: dict[str, int] = {}
    traffic: dict[tuple[str, str], int] = {}
    if counts.paths is not None:
        nexts = {s["id"]: s.get("next") for s in machine.get("states", ())}
        # a dropout whose run ended at a step it does not rest at left by that
        # step's exit edge (otherwise exit, no mobile exit); at a resting step it
        # may as well have been excluded, so no edge is guessed there
        passing = {s["id"] for s in machine.get("states", ()) if s["kind"] not in RESTING}
        exits = {e.tail: e.head for e in d.edges if e.kind == "exit" and e.tail in passing}
        for status, path in counts.paths:
            if not path:
                continue
            passed[TRIGGER] = passed.get(TRIGGER, 0) + 1
            for step in path:
                passed[step] = passed.get(step, 0) + 1
            hops = list(zip((TRIGGER, *path), path))
            last = path[-1]
            if last in nexts and nexts[last] is None and status.startswith("completed"):
                hops.append((last, END))
            elif status == "dropout" and last in exits:
                hops.append((last, exits[last]))
            for hop in hops:
                traffic[hop] = traffic.get(hop, 0) + 1
        passed[END] = sum(n for (_, head), n in traffic.items() if head == END)
    volume = {n.id: passed.get(n.id) if counts.paths is not None
              else sum(at.get(n.id, {}).values()) for n in d.nodes}
    top = max((v or 0 for v in volume.values()), default=0) or 1
    nodes = tuple(attrs.evolve(n, counts=_count_line(at.get(n.id, {}), passed.get(n.id)),
                               volume=(volume[n.id] or 0) / top) for n in d.nodes)
    edges, seen = [], set()
    for e in d.edges:
        n = traffic.get((e.tail, e.head)) if (e.tail, e.head) not in seen else None
        if n is not None and e.kind != "order":
            seen.add((e.tail, e.head))
            e = attrs.evolve(e, traffic=n, label=e.label + (f"n = {n}",))
        edges.append(e)
    busiest = max((e.traffic or 0 for e in edges), default=0) or 1
    edges = [attrs.evolve(e, weight=e.traffic / busiest) if e.traffic else e for e in edges]
    return attrs.evolve(d, nodes=nodes, edges=tuple(edges), overlay=True)


def unknown_steps(d: Diagram, counts: Counts) -> list[str]:
    """Steps in the counts that the diagram does not have (another version?)."""
    ids = {n.id for n in d.nodes}
    return sorted(s for s in counts.steps if s not in ids and s not in _BEFORE_START)


def diagram(machine: Mapping, counts: Counts | None = None) -> Diagram:
    d = BUILDERS[machine["kind"]](machine)
    return overlay(d, machine, counts) if counts is not None else d
