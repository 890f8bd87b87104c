"""Advancing many participants at once (DESIGN §8: "participants at the same step
and due time are advanced in bulk where their data does not matter").

`step_many` and `enter_many` give, participant by participant, the results that
`interpreter.step` (a timer firing) and `interpreter.enter` give, and are tested
against them. They walk the flow a group at a time: the participants that stand
at one state arrive there together, the state's work that does not depend on
anyone's data (finding the state, its action, compiled conditions, the due time
of a wait, the new path) is done once for the group, and per participant only
what its data decides (a condition, a template, an action's key). Where a group
parts (a split, a condition), each branch goes on as a group of its own.

Those who travel together share their path: one tuple for everyone who took the
same route from the same path, instead of one per participant.

Pure like the interpreter: no I/O, no clock; `now` comes in. A participant whose
steps are explained (`simulate --explain`) takes the one-at-a-time route, which
keeps the trace.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Collection, Iterable, Sequence

from flowlang.runtime.interpreter import (
    _ARRIVE,
    _REST,
    MAX_TRANSITIONS,
    Action,
    Program,
    StepFailure,
    StepResult,
    _Run,
    enter,
    step,
    with_memberships,
)
from flowlang.runtime.state import Participant

#: A group of runs moving on to a state: (state id or None, the runs).
Moves = Iterable[tuple]

#: What the engine saves of a step: the new participant and its actions, without
#: a `StepResult` around them (those who save many do not need the trace).
Outcome = tuple[Participant, Sequence[Action]]


def step_many(program: Program, participants: Sequence[Participant], now: dt.datetime,
              explain: Collection[str] = ()) -> list[StepResult]:
    """`[step(program, p, now, None, p.id in explain) for p in participants]`
    (timers firing, no event), with the work shared by those at the same step
    done once."""
    return _results(_step_runs(program, participants, now, explain))


def step_outcomes(program: Program, participants: Sequence[Participant],
                  now: dt.datetime) -> list[Outcome]:
    """`step_many`, as (participant, actions) pairs."""
    return _outcomes(_step_runs(program, participants, now, ()))


def enter_many(program: Program, participants: Sequence[Participant], now: dt.datetime,
               explain: Collection[str] = ()) -> list[StepResult]:
    """`[enter(program, p, now, p.id in explain) for p in participants]`, the
    group walked together."""
    return _results(_enter_runs(program, participants, now, explain))


def enter_outcomes(program: Program, participants: Sequence[Participant],
                   now: dt.datetime, own: bool = False) -> list[Outcome]:
    """`enter_many`, as (participant, actions) pairs. `own`: the participants
    are the caller's to give away (made for this call, and kept by no one): they
    are entered as they are, not copied."""
    return _outcomes(_enter_runs(program, participants, now, (), own))


def _results(runs: list[_Run | StepResult]) -> list[StepResult]:
    return [StepResult(run.p, tuple(run.actions), run.p.wake_at, ()) if type(run) is _Run else run
            for run in runs]


def _outcomes(runs: list[_Run | StepResult]) -> list[Outcome]:
    return [(run.p, run.actions) if type(run) is _Run else (run.participant, run.actions)
            for run in runs]


def _step_runs(program: Program, participants: Sequence[Participant], now: dt.datetime,
               explain: Collection[str]) -> list[_Run | StepResult]:
    """Per participant: its run if its timer fired, else its result (not due,
    not active, or explained: one at a time)."""
    runs: list[_Run | StepResult] = []
    groups: dict[str, list[_Run]] = {}
    for q in participants:
        if explain and q.id in explain:
            runs.append(step(program, q, now, None, True))
            continue
        p = q.copy()
        if p.status != "active" or p.step is None:
            runs.append(StepResult(p, (), None, ()))
            continue
        if p.wake_at is None or now < p.wake_at:
            runs.append(StepResult(p, (), p.wake_at, ()))
            continue
        p.wake_at = None
        run = _Run(program, p, now, False)
        runs.append(run)
        group = groups.get(p.step)
        if group is None:
            group = groups[p.step] = []
        group.append(run)
    for step_id, group in groups.items():
        state = program.states[step_id]
        if state["kind"] == "wait_for" and state["on_timeout"] == "exit":
            for run in group:
                run.finish("dropout", state["timeout_actions"])
        else:
            _walk(program, now, group, state["next"])
    return runs


def _enter_runs(program: Program, participants: Sequence[Participant], now: dt.datetime,
                explain: Collection[str], own: bool = False) -> list[_Run | StepResult]:
    runs: list[_Run | StepResult] = []
    walkers: list[_Run] = []
    version = program.version
    success = program.success is not None
    for q in participants:
        if explain and q.id in explain:
            runs.append(enter(program, q, now, True))
            continue
        p = q if own else q.copy()
        p.status = "active"
        p.version = version
        p.entered_at = now
        p.history = ()
        run = _Run(program, p, now, False)
        runs.append(run)
        if not success or not run.check_success():
            walkers.append(run)
    _walk(program, now, walkers, program.start)
    return runs


def _walk(program: Program, now: dt.datetime, runs: list[_Run], state_id: str | None) -> None:
    """`_Run.go(state_id)` for every run, a group at a time."""
    success = program.success is not None
    states = program.states
    stack: list[tuple[str | None, list[_Run], int]] = [(state_id, runs, 0)] if runs else []
    while stack:
        state_id, group, passed = stack.pop()
        if passed >= MAX_TRANSITIONS:
            for run in group:
                p = run.p
                p.status = "failed"
                p.error = f"more than {MAX_TRANSITIONS} steps without a wait"
                p.step = None
            continue
        if state_id is None:
            for run in group:
                run.finish("completed")
            continue
        state = states[state_id]
        _arrive(group, state_id, now)
        for next_id, movers in _MANY.get(state["kind"], _each)(program, state, group, now):
            if success:
                movers = [run for run in movers if not run.check_success()]
            if movers:
                stack.append((next_id, movers, passed + 1))


def _arrive(group: list[_Run], state_id: str, now: dt.datetime) -> None:
    """Everyone in the group arrives at the state: it joins their paths (one new
    tuple per distinct path, shared by all who had it)."""
    joined: dict[int, tuple] = {}  # id(old path) -> (old path, kept alive; new path)
    last = new = None
    for run in group:
        p = run.p
        old = p.path
        if old is not last:
            found = joined.get(id(old))
            if found is None:
                found = joined[id(old)] = (old, old + (state_id,))
            last, new = old, found[1]
        p.path = new
        p.step = state_id
        p.arrived_at = now


def _failed(run: _Run, error: StepFailure) -> None:
    p = run.p
    p.status = "failed"
    p.error = f"{p.step}: {error}"
    p.wake_at = None


def _each(program: Program, state: dict, group: list[_Run], now: dt.datetime) -> Moves:
    """Any state: its one-participant handler, for each member of the group."""
    handler = _ARRIVE[state["kind"]]
    moves: dict = {}
    for run in group:
        try:
            next_id = handler(run, state)
        except StepFailure as e:
            _failed(run, e)
            continue
        if next_id is _REST or run.p.status != "active":
            continue
        movers = moves.get(next_id)
        if movers is None:
            movers = moves[next_id] = []
        movers.append(run)
    return moves.items()


def _many_action(program: Program, state: dict, group: list[_Run], now: dt.datetime) -> Moves:
    """An action: per participant only its key and what its own data changes
    (`_arrive_action` and `_Run.emit`, with the rest looked up once)."""
    do = state["do"]
    step_id = state["id"]
    missing = do.get("when_missing")
    field = missing["field"] if missing is not None else None
    operations, memberships = program.plan(do)
    joined: dict[int, tuple] = {}  # id(old memberships) -> (old, kept alive; new)
    exclude = bool(program.exclude)
    prefix = program.key_prefix
    name = program.name
    phrase = do["action"]
    kind = program.participant_type
    append_action = Action
    movers = []
    for run in group:
        p = run.p
        if field is not None and not p.data.get(field):
            if missing["rule"] == "exit":
                try:
                    run.finish("dropout", missing["actions"])
                except StepFailure as e:
                    _failed(run, e)
                continue
            movers.append(run)
            continue
        pid = p.id
        key = f"{prefix}{pid}:{p.run}:{step_id}:{p.path.count(step_id)}"
        if operations:
            try:
                run.apply_effects(do)
            except StepFailure as e:
                _failed(run, e)
                continue
        elif memberships:
            # those who had the same memberships share the new ones
            old = p.memberships
            found = joined.get(id(old))
            if found is None:
                found = joined[id(old)] = (old, with_memberships(old, memberships))
            p.memberships = found[1]
        run.actions.append(append_action(key, name, pid, step_id, phrase, do, now, p.data, kind,
                                         0, now))
        if exclude and run.check_exclusion():
            continue
        movers.append(run)
    return ((state["next"], movers),)


def _many_wait(program: Program, state: dict, group: list[_Run], now: dt.datetime) -> Moves:
    due = program.due(state, now)
    for run in group:
        run.p.wake_at = due
    return ()


def _many_wait_for(program: Program, state: dict, group: list[_Run], now: dt.datetime) -> Moves:
    holds: Callable = program.compiled(state["condition"])
    due = None
    movers = []
    for run in group:
        p = run.p
        if holds(p):
            movers.append(run)
            continue
        if due is None:
            due = program.due(state, now)
        p.wake_at = due
    return ((state["next"], movers),)


def _many_split(program: Program, state: dict, group: list[_Run], now: dt.datetime) -> Moves:
    """A split on conditions: each participant tries the branches' compiled
    conditions in order (`_arrive_split`); random and value splits take the
    one-participant handler."""
    if state["mode"] in ("random", "value"):
        return _each(program, state, group, now)
    branches = [(program.compiled(branch["condition"]), branch["next"])
                for branch in state["branches"]]
    moves: dict = {}
    others = []
    for run in group:
        p = run.p
        for holds, next_id in branches:
            if holds(p):
                movers = moves.get(next_id)
                if movers is None:
                    movers = moves[next_id] = []
                movers.append(run)
                break
        else:
            others.append(run)
    if others:
        otherwise = state["otherwise"]
        if otherwise is None or not otherwise["exit"]:
            next_id = state["next"] if otherwise is None else otherwise["next"]
            moves.setdefault(next_id, []).extend(others)
        else:
            for run in others:
                try:
                    run.finish("dropout", otherwise["actions"])
                except StepFailure as e:
                    _failed(run, e)
    return moves.items()


def _many_complete(program: Program, state: dict, group: list[_Run], now: dt.datetime) -> Moves:
    """The end: with no success criterion and nothing to do on the way out,
    everyone is completed (`_arrive_complete` and `_Run.finish`)."""
    if program.success is not None or state["no_success_actions"]:
        return _each(program, state, group, now)
    for run in group:
        p = run.p
        p.status = "completed"
        p.step = None
        p.wake_at = None
    return ()


def _many_goto(program: Program, state: dict, group: list[_Run], now: dt.datetime) -> Moves:
    return ((state["target"], group),)


_MANY: dict[str, Callable[[Program, dict, list, dt.datetime], Moves]] = {
    "action": _many_action, "wait": _many_wait, "wait_for": _many_wait_for, "goto": _many_goto,
    "split": _many_split, "complete": _many_complete,
}
