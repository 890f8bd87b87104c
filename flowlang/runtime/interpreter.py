"""The interpreter: a pure function from (program, participant, now, event) to
(new participant, actions to perform, next wake-up).

No I/O, no clock reads, no globals: time comes in as `now`, randomness from a
hash of (seed, participant, split), and the participant that comes in is never
changed (see `state.Participant`). The engine does everything else.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
from typing import Callable, NamedTuple

import attrs

from flowlang.runtime.calendar import Calendar
from flowlang.runtime.expr import compile_expression, matches
from flowlang.runtime.render import RenderError, render_text
from flowlang.runtime.state import Participant

#: A run may pass at most this many states without resting: a guard against a loop
#: with no wait, which the checker (FL402) already refuses.
MAX_TRANSITIONS = 10_000


@attrs.define(slots=True, eq=False)
class Action:
    """One action for the host: perform `do` (an IR action) for `participant`.
    `key` is the idempotency key: flow version, participant, step, visit.

    The same object is the action's outbox row: the engine keeps its delivery
    state (`attempts`, `next_attempt`, `status`, `error`) on it, so that an
    action costs one object, not two. (Not frozen: a frozen attrs class pays for
    every field on every creation.)"""

    key: str
    flow: str
    participant: str
    step: str
    action: str
    do: dict
    at: dt.datetime
    data: dict = attrs.field(eq=False, repr=False)
    participant_type: str = "person"
    attempts: int = 0
    next_attempt: dt.datetime | None = None
    status: str = "pending"  # pending | sent | failed | cancelled
    error: str | None = None

    @property
    def settings(self) -> dict:
        return self.do["settings"]


class StepResult(NamedTuple):
    """What a step did. (A named tuple: a frozen attrs class pays for every field
    on every creation, and there is one result per event.)"""
    participant: Participant
    actions: tuple[Action, ...]
    wake_at: dt.datetime | None
    #: Which states were passed and why, for `simulate --explain`.
    trace: tuple[str, ...] = ()


class Program:
    """An IR flow loaded for running: states by id, the calendar, the seed."""

    def __init__(self, machine: dict, seed: int = 0):
        if machine.get("kind") != "flow":
            raise ValueError("a Program runs flows; pipelines run in PipelineProgram")
        self.ir = machine
        self.name: str = machine["name"]
        self.version: str = machine["hash"]
        self.states: dict[str, dict] = {s["id"]: s for s in machine["states"]}
        self.start: str | None = machine["start"]
        self.calendar = Calendar.of(machine["settings"])
        self.success = machine.get("success")
        self.on_success: list = machine.get("on_success") or []
        self.trigger = machine["trigger"]
        self.exclude = frozenset(self.trigger.get("exclude") or ())
        self.seed = seed
        self.key_prefix = self.version[7:19] + ":"
        self.participant_type: str = machine["participant"]
        self._due: dict = {}
        self._tests: dict[int, tuple[dict, Callable]] = {}
        self._plans: dict[int, tuple[dict, tuple]] = {}

    @functools.cached_property
    def arrive(self) -> dict[str, tuple[Callable, dict]]:
        """State id -> (what arriving there does, the state): one lookup a step."""
        return {sid: (_ARRIVE[state["kind"]], state) for sid, state in self.states.items()}

    def plan(self, do: dict) -> tuple[tuple, tuple]:
        """An action's changes to the participant's own record: its field
        operations, and its membership changes as (kind, adds, target)."""
        found = self._plans.get(id(do))
        if found is None or found[0] is not do:
            found = self._plans[id(do)] = (do, (tuple(do.get("operations", ())),
                                                membership_changes(do)))
        return found[1]

    def compiled(self, node: dict) -> Callable:
        """An IR expression of this program as a function of a participant
        (compiled once, on first use)."""
        found = self._tests.get(id(node))
        if found is None or found[0] is not node:
            found = self._tests[id(node)] = (node, compile_expression(node))
        return found[1]

    def test(self, node: dict, participant) -> object:
        """Evaluate an IR expression of this program."""
        return self.compiled(node)(participant)

    def due(self, state: dict, now: dt.datetime) -> dt.datetime:
        """When a timed state that starts at `now` ends; memoised, since those who
        wait together wake together."""
        key = (state["id"], now)
        found = self._due.get(key)
        if found is None:
            if state["kind"] == "wait":
                found = self.calendar.add(now, state["duration"])
            elif state["kind"] == "wait_for":
                found = self.calendar.add(now, state["within"])
            else:
                found = self.calendar.at(state["date"], state["time"])
            if len(self._due) > 4096:
                self._due.clear()
            self._due[key] = found
        return found


class _Run:
    """The working state of one `step` call."""

    __slots__ = ("program", "p", "now", "actions", "trace", "explain")

    def __init__(self, program: Program, p: Participant, now: dt.datetime, explain: bool):
        self.program = program
        self.p = p
        self.now = now
        self.actions: list[Action] = []
        self.trace: list[str] | tuple = [] if explain else ()
        self.explain = explain

    def note(self, text: str) -> None:
        if self.explain:
            self.trace.append(text)

    # ------------------------------------------------------------------ effects
    def emit(self, do: dict, step_id: str) -> None:
        p = self.p
        # the visit: how many times the participant has been at the state that
        # owns this action (the state itself, or the exit/split/wait that runs a
        # block of actions); derived from the path, so nothing extra is stored
        # and the run (a second run of the same version must not repeat the
        # first run's keys)
        visit = p.path.count(p.step) if p.step is not None else 1
        key = f"{self.program.key_prefix}{p.id}:{p.run}:{step_id}:{visit}"
        # the action sees the data as its own operations leave it
        self.apply_effects(do)
        self.actions.append(Action(key, self.program.name, p.id, step_id, do["action"], do,
                                   self.now, p.data, self.program.participant_type, 0, self.now))

    def apply_effects(self, do: dict) -> None:
        """The flow's own changes to the participant, so that conditions and the
        success criterion see them at once."""
        operations, memberships = self.program.plan(do)
        if not operations and not memberships:
            return
        p = self.p
        if operations:
            p.data = self.operated(p.data, do, operations)
        if memberships:
            p.memberships = with_memberships(p.memberships, memberships)

    def operated(self, data: dict, do: dict, operations) -> dict:
        """The participant's data after an `update` block. The block changes the
        participant's own record, or a linked one (`update company` in a flow for
        person changes `person.company`); `set` values are templates."""
        entity = do.get("operations_on", self.program.participant_type)
        linked = entity != self.program.participant_type
        record = dict(data.get(entity) or {}) if linked else dict(data)
        for op in operations:
            name, value = op["field"], op["value"]
            kind = op["op"]
            if kind == "set":
                if isinstance(value, str) and "{" in value:
                    try:
                        value = render_text(value, self.program.participant_type, data)
                    except RenderError as e:
                        raise StepFailure(f"`set {name}`: {e}") from None
                record[name] = value
            elif kind == "clear":
                record.pop(name, None)
            elif kind in ("increase", "decrease"):
                current = record.get(name) or 0
                record[name] = current + value if kind == "increase" else current - value
            elif kind == "add":
                items = list(record.get(name) or [])
                if value not in items:
                    items.append(value)
                record[name] = items
            elif kind == "remove":
                record[name] = [i for i in (record.get(name) or []) if i != value]
        return {**data, entity: record} if linked else record

    # ------------------------------------------------------------------ endings
    def finish(self, status: str, actions: list[dict] = ()) -> None:
        p = self.p
        for do in actions:
            self.emit(do, do["id"])
        p.status = status
        p.step = None
        p.wake_at = None
        if self.explain:
            self.note(f"finished: {status}")

    def success_holds(self) -> bool:
        success = self.program.success
        return success is not None and bool(self.program.test(success, self.p))

    def check_success(self) -> bool:
        """The success criterion ends the run as soon as it holds."""
        if self.p.status == "active" and self.success_holds():
            self.note("the success criterion holds")
            self.finish("completed_success", self.program.on_success)
            return True
        return False

    def check_exclusion(self) -> bool:
        exclude = self.program.exclude
        if exclude and exclude & self.p.member_of("selection"):
            self.note("joined the exclusion selection")
            self.finish("dropout")
            return True
        return False

    # ------------------------------------------------------------------ moving
    def go(self, state_id: str | None) -> None:
        """Pass states from `state_id` until the participant rests or finishes."""
        program, p = self.program, self.p
        arrive = program.arrive
        success = program.success is not None
        for _ in range(MAX_TRANSITIONS):
            if state_id is None:
                self.finish("completed")
                return
            handler, state = arrive[state_id]
            p.path = p.path + (state_id,)
            p.step = state_id
            p.arrived_at = self.now
            try:
                state_id = handler(self, state)
            except StepFailure as e:
                p.status = "failed"
                p.error = f"{p.step}: {e}"
                p.wake_at = None
                self.note(f"failed: {e}")
                return
            if state_id is _REST or p.status != "active":
                return
            if success and self.check_success():
                return
        p.status = "failed"
        p.error = f"more than {MAX_TRANSITIONS} steps without a wait"
        p.step = None


_REST = object()  # a handler's answer when the participant rests where it is


def membership_changes(do: dict) -> tuple:
    """An action's changes to selections, projects and interests, as
    (kind, adds, name)."""
    return tuple((e["kind"], e["verb"] == "adds", e["target"]) for e in do.get("effects", ())
                 if e["kind"] in ("selection", "project", "interest")
                 and e["verb"] in ("adds", "removes"))


def with_memberships(memberships: dict, changes: tuple) -> dict:
    """Memberships after an action's (kind, adds, target) changes (a new dict)."""
    for kind, adds, target in changes:
        names = set(memberships.get(kind, ()))
        (names.add if adds else names.discard)(target)
        memberships = {**memberships, kind: frozenset(names)}
    return memberships


class StepFailure(Exception):
    """A step that cannot be done for this participant (a template it cannot
    render): the participant fails, with the reason kept."""


def _arrive_action(run: _Run, state: dict):
    missing = state["do"].get("when_missing")
    if missing is not None and not run.p.data.get(missing["field"]):
        if missing["rule"] == "exit":
            if run.explain:
                run.note(f"{state['id']}: no {missing['field']}, exits")
            run.finish("dropout", missing["actions"])
            return _REST
        if run.explain:
            run.note(f"{state['id']}: no {missing['field']}, skipped")
        return state["next"]
    run.emit(state["do"], state["id"])
    if run.explain:
        run.note(f"{state['id']}: {state['do']['action']}")
    if run.program.exclude and run.check_exclusion():
        return _REST
    return state["next"]


def _arrive_manual(run: _Run, state: dict):
    run.emit(state["do"], state["id"])
    run.p.wake_at = None
    if run.explain:
        run.note(f"{state['id']}: {state['do']['action']} (manual: waits until done)")
    return _REST


def _arrive_wait(run: _Run, state: dict):
    run.p.wake_at = run.program.due(state, run.now)
    if run.explain:
        run.note(f"{state['id']}: waits until {run.p.wake_at.isoformat()}")
    return _REST


def _arrive_wait_until(run: _Run, state: dict):
    due = run.program.due(state, run.now)
    if due <= run.now:
        if run.explain:
            run.note(f"{state['id']}: {state['date']} has passed, goes on")
        return state["next"]
    run.p.wake_at = due
    if run.explain:
        run.note(f"{state['id']}: waits until {due.isoformat()}")
    return _REST


def _arrive_wait_for(run: _Run, state: dict):
    if run.program.test(state["condition"], run.p):
        if run.explain:
            run.note(f"{state['id']}: the condition already holds")
        return state["next"]
    run.p.wake_at = run.program.due(state, run.now)
    if run.explain:
        run.note(f"{state['id']}: waits for the condition until {run.p.wake_at.isoformat()}")
    return _REST


def _bucket(seed: int, participant: str, split: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{participant}:{split}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64 * 100


def _arrive_split(run: _Run, state: dict):
    p = run.p
    mode = state["mode"]
    if mode == "random":
        point = _bucket(run.program.seed, p.id, state["id"])
        total = 0.0
        for branch in state["branches"]:
            total += branch["weight"]
            if point < total:
                if run.explain:
                    run.note(f"{state['id']}: random branch \"{branch['name']}\"")
                return branch["next"]
    elif mode == "value":
        subject = run.program.test(state["subject"], p)
        for branch in state["branches"]:
            if subject in branch["values"]:
                if run.explain:
                    run.note(f"{state['id']}: value {subject!r} takes branch \"{branch['name']}\"")
                return branch["next"]
    else:
        for branch in state["branches"]:
            if run.program.test(branch["condition"], p):
                if run.explain:
                    run.note(f"{state['id']}: branch \"{branch['name']}\" holds")
                return branch["next"]
    otherwise = state["otherwise"]
    if otherwise is None:
        if run.explain:
            run.note(f"{state['id']}: no branch holds, goes on after the split")
        return state["next"]
    if otherwise["exit"]:
        if run.explain:
            run.note(f"{state['id']}: no branch holds, otherwise exit")
        run.finish("dropout", otherwise["actions"])
        return _REST
    if run.explain:
        run.note(f"{state['id']}: no branch holds, otherwise")
    return otherwise["next"]


def _arrive_goto(run: _Run, state: dict):
    return state["target"]


def _arrive_exit(run: _Run, state: dict):
    run.finish("dropout", state["actions"])
    return _REST


def _arrive_complete(run: _Run, state: dict):
    if run.success_holds():
        run.finish("completed_success", state["success_actions"])
    else:
        run.finish("completed", state["no_success_actions"])
    return _REST


_ARRIVE: dict[str, Callable] = {
    "action": _arrive_action, "manual": _arrive_manual, "wait": _arrive_wait,
    "wait_until": _arrive_wait_until, "wait_for": _arrive_wait_for, "split": _arrive_split,
    "goto": _arrive_goto, "exit": _arrive_exit, "complete": _arrive_complete,
}


# ---------------------------------------------------------------------- events

#: the events that change a membership: (selection | project).(added | removed)
MEMBERSHIP_EVENTS = frozenset({"selection.added", "selection.removed", "project.added",
                               "project.removed"})


def apply_event(p: Participant, event: dict) -> None:
    """What an event changes in the participant's own record (on a copy)."""
    kind = event["type"]
    payload = {k: v for k, v in event.items() if k not in ("type", "at", "participant")}
    p.history = p.history + ((kind, payload),)
    if isinstance(event.get("set"), dict):  # data.changed, and events that update fields
        p.data = {**p.data, **event["set"]}
    if kind in MEMBERSHIP_EVENTS:
        group, verb = kind.split(".")
        names = set(p.member_of(group))
        (names.add if verb == "added" else names.discard)(event.get(group))
        p.memberships = {**p.memberships, group: frozenset(names)}


def enter(program: Program, participant: Participant, now: dt.datetime,
          explain: bool = False) -> StepResult:
    """A queued participant starts the flow at its first step."""
    p = participant.copy()
    p.status = "active"
    p.version = program.version
    p.entered_at = now
    p.history = ()
    run = _Run(program, p, now, explain)
    run.note("entered the flow")
    if not run.check_success():
        run.go(program.start)
    return StepResult(p, tuple(run.actions), p.wake_at, tuple(run.trace))


def step(program: Program, participant: Participant, now: dt.datetime,
         event: dict | None = None, explain: bool = False) -> StepResult:
    """Advance an active participant: apply `event` if given, else wake it if its
    time has come. Returns the new participant, the actions and the next wake-up."""
    p = participant.copy()
    run = _Run(program, p, now, explain)
    if p.status != "active" or p.step is None:
        return StepResult(p, (), None, ())
    state = program.states[p.step]
    if event is not None:
        apply_event(p, event)
        if run.explain:
            run.note(f"event {event['type']}")
        if (program.exclude and run.check_exclusion()) or (
                program.success is not None and run.check_success()):
            return StepResult(p, tuple(run.actions), p.wake_at, tuple(run.trace))
        kind = state["kind"]
        if kind == "wait_for" and program.compiled(state["condition"])(p):
            if run.explain:
                run.note(f"{state['id']}: the condition holds")
            p.wake_at = None
            run.go(state["next"])
        elif kind == "manual" and event["type"] == "task.done" and event.get("step") in (None, p.step):
            if run.explain:
                run.note(f"{state['id']}: done")
            p.wake_at = None
            run.go(state["next"])
    elif p.wake_at is not None and now >= p.wake_at:
        p.wake_at = None
        kind = state["kind"]
        if kind == "wait_for":
            if state["on_timeout"] == "exit":
                if run.explain:
                    run.note(f"{state['id']}: timed out, else exit")
                run.finish("dropout", state["timeout_actions"])
            else:
                if run.explain:
                    run.note(f"{state['id']}: timed out, goes on")
                run.go(state["next"])
        else:
            if run.explain:
                run.note(f"{state['id']}: time is up")
            run.go(state["next"])
    return StepResult(p, tuple(run.actions), p.wake_at, tuple(run.trace))


def admits(program: Program, participant: Participant, event: dict | None = None) -> bool:
    """Do the trigger's rules let this participant in? (`filter` checked once, on
    entry; the exclusion selection; an `on` event must match when given.)"""
    trigger = program.trigger
    if program.exclude and program.exclude & participant.member_of("selection"):
        return False
    if event is not None:
        if not any(e["type"] == event["type"] and matches(event, e["match"])
                   for e in trigger["events"]):
            return False
    flt = trigger.get("filter")
    return flt is None or bool(program.test(flt, participant))


def enter_at(program: Program, participant: Participant, state_id: str, now: dt.datetime) -> StepResult:
    """Move a participant to a named step (the rule for a step a new version
    removed), arriving there as if it had just got there."""
    p = participant.copy()
    p.version = program.version
    p.wake_at = None
    run = _Run(program, p, now, False)
    run.go(state_id)
    return StepResult(p, tuple(run.actions), p.wake_at, tuple(run.trace))
