"""The engine: the only part of the runtime with I/O. It loads versions and
participants from a store, feeds them to the pure interpreter, saves the results
together with their outbox rows, keeps the flow lifecycle (DESIGN §7), and
delivers actions to the host's handlers with retries.

Time comes from the clock; nothing here reads the wall clock.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from itertools import repeat
from typing import Callable

import attrs

from flowlang.gcpause import batch
from flowlang.runtime import bulk
from flowlang.runtime import interpreter as interp
from flowlang.runtime import pipeline as pipelines
from flowlang.runtime.calls import TimedCaller
from flowlang.runtime.clock import RealClock
from flowlang.runtime.crashpoints import crashpoint
from flowlang.runtime.render import RenderError, prerenderer_of, render_args, render_settings
from flowlang.runtime.state import EMPTY, FINISHED, STATUSES, Participant
from flowlang.runtime.store import DeadLetter, FlowRecord, MemoryStore, OutboxRow, Retry, Store

CONTROLS = ("start", "pause", "resume", "end")
#: A participant handed from flow to flow more often than this in one go is in a
#: cycle without a wait: it fails instead of running for ever.
MAX_HANDOVERS = 100
#: Why a participant whose run `end` stopped is a dropout; a restart of the flow
#: admits only people without such a run.
ENDED = "the flow was ended"
#: How often a unit of work is tried again when a durable store reports a
#: conflict with another worker (a deadlock, a participant advanced elsewhere).
ATTEMPTS = 5
#: An at-most-once action being delivered holds its row this long; a row still
#: `sending` after that was lost with its worker, and is not sent again.
SENDING_LEASE = dt.timedelta(minutes=10)


class EngineError(Exception):
    """A lifecycle request that is not allowed now (say why in the message)."""


class Delivery:
    """What a handler receives: the action, its idempotency key, and its settings
    with templates rendered over the participant's data. Rendering happens when
    the handler first reads `settings` or `args` (a template error then fails the
    delivery like a handler error, without retries)."""

    __slots__ = ("key", "flow", "participant", "step", "action", "data", "at", "attempt",
                 "_do", "_type", "_settings", "_args")

    def __init__(self, action, participant_type: str, attempt: int,
                 settings: dict | None = None, args: list | None = None):
        self.key = action.key
        self.flow = action.flow
        self.participant = action.participant
        self.step = action.step
        self.action = action.action
        self.data = action.data
        self.at = action.at
        self.attempt = attempt
        self._do = action.do
        self._type = participant_type
        self._settings = settings
        self._args = args

    @property
    def settings(self) -> dict:
        if self._settings is None:
            self._settings = render_settings(self._do, self._type, self.data)
        return self._settings

    @property
    def operations(self) -> list[dict]:
        """For an `update`: what it changes, values as set (templates rendered):
        `[{"op": "set", "field": "lead_status", "value": "Engaged"}, …]`."""
        ops = self._do.get("operations") or []
        entity = self._do.get("operations_on", self._type)
        record = self.data.get(entity, {}) if entity != self._type else self.data
        out = []
        for op in ops:
            value = record.get(op["field"]) if op["op"] == "set" else op["value"]
            out.append({"op": op["op"], "field": op["field"], "value": value, "record": entity})
        return out

    @property
    def args(self) -> list:
        if self._args is None:
            self._args = render_args(self._do, self._type, self.data)
        return self._args

    def __repr__(self) -> str:
        return f"<Delivery {self.action} {self.key}>"


@attrs.frozen
class Admission:
    admitted: bool
    status: str  # active | queued | refused
    reason: str | None = None


Handler = Callable[[Delivery], object]


def known_event_types() -> frozenset[str]:
    from flowlang.stdlib import standard_registry
    return frozenset(e.type for e in standard_registry().events)


def event_needs() -> dict[str, frozenset[str]]:
    """Event type -> the payload keys it must carry (`needs` in its declarations)."""
    from flowlang.stdlib import standard_registry
    out: dict[str, set] = {}
    for decl in standard_registry().events:
        out.setdefault(decl.type, set()).update(decl.needs)
    return {k: frozenset(v) for k, v in out.items()}


def event_updates() -> dict[str, tuple]:
    """Event type -> the fields it sets from its payload (`updates F from K`)."""
    from flowlang.stdlib import standard_registry
    out: dict[str, tuple] = {}
    for decl in standard_registry().events:
        if decl.updates:
            out[decl.type] = out.get(decl.type, ()) + decl.updates
    return out


def _person_plan(do: dict) -> tuple:
    """What an action changes in what the engine knows of the person, worked out
    once per IR action: (whether it sets fields, its membership changes as
    (kind, adds, name), the flows it hands the participant over to); `()` when
    the action does not touch the person."""
    cached = _PLANS.get(id(do))
    if cached is None or cached[0] is not do:
        plan = (bool(do.get("operations")), interp.membership_changes(do),
                tuple(e["target"] for e in do.get("effects", ())
                      if e["verb"] == "hands_over" and e["kind"] == "flow"))
        cached = _PLANS[id(do)] = (do, plan if any(plan) else ())
    return cached[1]


def _moved(before: Participant | None, after: Participant) -> tuple[int, int] | None:
    """A step's transition record: the positions in the path it moved between
    (from the start for a new run), or None when it did not move."""
    start = len(before.path) if before is not None and before.run == after.run else 0
    return (start, len(after.path)) if len(after.path) > start else None


_PLANS: dict[int, tuple[dict, tuple]] = {}


def unit_of_work(method):
    """Run an engine method as one transaction of its store (nested calls join the
    outer one), tried again from the start when a durable store reports a conflict
    with another worker: everything it did was rolled back, so it can be redone."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.store.in_transaction():
            return method(self, *args, **kwargs)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.store.transaction():
                    return method(self, *args, **kwargs)
            except Retry:
                self._handovers.clear()
                self._handing_over = False
                if attempt == ATTEMPTS:
                    raise
    return wrapper


#: the payload keys that name something (a selection, a link …): strings only
_NAMING_KEYS_IN_ORDER = ("selection", "project", "form", "link", "email", "stage", "reason")
_NAMING_KEYS = frozenset(_NAMING_KEYS_IN_ORDER)


def _candidate(flow: str, version: str, pid: str, person: dict) -> Participant:
    """A person offered to a flow, as a participant about to enter. It shares the
    person's data dict: both are copy-on-write."""
    memberships = person["memberships"]
    return Participant(pid, flow, version, person["data"],
                       {k: frozenset(v) for k, v in memberships.items()} if memberships else EMPTY)


def _offer(pid: str, data: dict | None = None, memberships: dict | None = None,
           event: dict | None = None) -> tuple:
    """An `enroll_many` entry read as `enroll`'s arguments."""
    return pid, data, memberships, event


class Engine:
    def __init__(self, store: Store | None = None, clock=None, *, seed: int = 0,
                 max_attempts: int = 5, backoff: dt.timedelta = dt.timedelta(minutes=1),
                 batch: int = 10_000, event_types: frozenset[str] | None = None,
                 handler_timeout: float | None = None, chunk: int = 1_000):
        self.store: Store = store if store is not None else MemoryStore()
        #: work out transition records only for a store that keeps them (a store
        #: that does not say keeps them, to be safe)
        self._transitions: bool = getattr(self.store, "keeps_transitions", True)
        if clock is None:
            clock = getattr(self.store, "clock", None) or RealClock()
        self.clock = clock
        #: a handler that runs longer than this (seconds) has failed (None: no limit)
        self.handler_timeout = handler_timeout
        self._caller = TimedCaller() if handler_timeout else None
        #: how many participants or outbox rows `end` changes per transaction
        self.chunk = chunk
        self.seed = seed
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.batch = batch
        self.handlers: dict[str, Handler] = {}
        self.event_types = event_types if event_types is not None else known_event_types()
        self.event_updates = event_updates()
        self.event_needs = {kind: tuple(sorted(keys)) for kind, keys in event_needs().items()}
        self._programs: dict[str, interp.Program] = {}
        #: hand-overs (`add to flow X`) still to do, worked off in a loop, not by
        #: recursion: flows may hand a participant round a cycle (FL407 warns)
        self._handovers: list[tuple] = []
        self._handing_over = False
        #: (id of memberships, id of action) -> (memberships, action, after): see `_joined`
        self._memberships: dict[tuple[int, int], tuple[dict, dict, dict]] = {}
        #: called with every step result (simulations, progress displays)
        self.listeners: list[Callable] = []
        #: participants whose steps carry a trace of why (`simulate --explain`)
        self.explain: set[str] = set()
        #: running totals, for progress displays: participants moved by `tick`,
        #: outbox rows handled by `dispatch`
        self.moved = 0
        self.delivered = 0

    # ------------------------------------------------------------------ handlers
    def register(self, phrase: str, handler: Handler) -> None:
        """Deliver actions of `phrase` (`"send email"`) to `handler`. A handler that
        raises is retried with backoff; after the last attempt the participant
        fails with the error kept. Actions with no handler are delivered to the
        `"*"` handler if one is registered, else recorded as sent."""
        self.handlers[phrase] = handler

    # ------------------------------------------------------------------ programs
    def program(self, version: str):
        """The loaded program of a deployed version (a flow's or a pipeline's)."""
        found = self._programs.get(version)
        if found is None:
            machine = self.store.version(version)
            found = (interp.Program(machine, self.seed) if machine["kind"] == "flow"
                     else pipelines.PipelineProgram(machine))
            self._programs[version] = found
        return found

    def current(self, flow: str) -> interp.Program:
        record = self._record(flow)
        return self.program(record.version)

    def _record(self, flow: str) -> FlowRecord:
        record = self.store.flow(flow)
        if record is None:
            raise EngineError(f"no flow `{flow}` is deployed")
        return record

    # ------------------------------------------------------------------ lifecycle
    @unit_of_work
    def deploy(self, machine: dict, removed: dict[str, str | None] | None = None) -> str:
        """Deploy a compiled flow (IR). A new version of a deployed flow can only be
        deployed while the flow is paused or stopped. Participants resting at a step
        the new version no longer has need an explicit rule in `removed`: the id of
        the step to move them to, or None to make them drop out."""
        if machine.get("kind") not in ("flow", "pipeline"):
            raise EngineError("not a compiled flow or pipeline")
        name = machine["name"]
        record = self.store.flow(name)
        if machine["kind"] == "pipeline":
            self.store.put_version(machine)
            if record is None:
                record = FlowRecord(name, "stopped", machine["hash"], kind="pipeline")
            record.version = machine["hash"]
            self.store.put_flow(record)
            return machine["hash"]
        if record is not None and record.status == "running" and record.version != machine["hash"]:
            raise EngineError(f"flow `{name}` is running; pause it before deploying a new version")
        self.store.put_version(machine)
        if record is None:
            self.store.put_flow(FlowRecord(name, "stopped", machine["hash"]))
            return machine["hash"]
        if record.version != machine["hash"]:
            new_steps = {s["id"] for s in machine["states"]}
            stranded = {p.step for p in self.store.participants(name)
                        if p.status == "active" and p.step not in new_steps}
            missing = sorted(stranded - set(removed or {}))
            if missing:
                raise EngineError(
                    f"participants of `{name}` rest at steps the new version removes: "
                    f"{', '.join(missing)}; say where they go (removed={{step: new_step or None}})")
            bad = [t for t in (removed or {}).values() if t is not None and t not in new_steps]
            if bad:
                raise EngineError(f"the new version of `{name}` has no step {', '.join(bad)}")
            record.migration = {**record.migration, **(removed or {})}
            record.version = machine["hash"]
            self.store.put_flow(record)
        return machine["hash"]

    @unit_of_work
    def start(self, flow: str) -> None:
        record = self._record(flow)
        if record.status == "paused":
            raise EngineError(f"flow `{flow}` is paused; resume it instead")
        if record.status == "ending":
            raise EngineError(f"flow `{flow}` is being ended; wait until it is stopped")
        record.status = "running"
        self.store.put_flow(record)

    @unit_of_work
    def pause(self, flow: str) -> None:
        record = self._record(flow)
        if record.status != "running":
            raise EngineError(f"flow `{flow}` is {record.status}; only a running flow can be paused")
        record.status = "paused"
        record.paused_at = self.clock.now()
        self.store.put_flow(record)

    @unit_of_work
    def resume(self, flow: str) -> None:
        """Everyone continues where they were: timers move on by the pause, queued
        participants enter, held events apply in order, a new version applies to
        those who have not passed its edited steps."""
        record = self._record(flow)
        if record.status != "paused":
            raise EngineError(f"flow `{flow}` is {record.status}; only a paused flow can be resumed")
        now = self.clock.now()
        frozen = now - record.paused_at if record.paused_at else dt.timedelta()
        record.status = "running"
        record.paused_at = None
        self.store.put_flow(record)
        program = self.current(flow)
        migration = record.migration
        record.migration = {}
        self.store.put_flow(record)
        queued = []
        for p in self.store.participants(flow):
            if p.status == "queued":
                queued.append(p)
                continue
            if p.status != "active":
                continue
            q = p.copy()
            if q.version != program.version:
                q.version = program.version
                if q.step not in program.states:
                    target = migration.get(q.step)
                    if target is None:
                        self._finish_stranded(q)
                        continue
                    self._save(interp.enter_at(program, q, target, now), p)
                    continue
            if q.wake_at is not None:
                # a duration is frozen while paused; a `wait until` date is not: once
                # past, the participant goes on at resume
                if program.states[q.step]["kind"] != "wait_until":
                    q.wake_at = q.wake_at + frozen
                self.store.save(q)
                self.store.schedule(q)
            else:
                self.store.save(q)
        for p in queued:
            # what the person became while queued (held events, other flows) counts:
            # the exclusion and the success criterion are checked before the first step
            person = self.store.person(p.id)
            q = p.copy()
            if person is not None:
                q.data = person["data"]
                q.memberships = {k: frozenset(v) for k, v in person["memberships"].items()}
            if program.exclude & q.member_of("selection"):
                q.status = "dropout"
                q.error = "joined the exclusion selection while queued"
                self.store.save(q)
                continue
            self._save(interp.enter(program, q, now, p.id in self.explain))
        for event in self.store.held_events(flow):
            self._route(event, only=flow)

    def _finish_stranded(self, p: Participant) -> None:
        p.status = "dropout"
        p.step = None
        p.wake_at = None
        p.error = "its step was removed by a new version"
        self.store.save(p)

    def end(self, flow: str) -> None:
        """Stop the flow: active and queued participants drop out, their undelivered
        actions are cancelled; a restart admits only new participants.

        On a durable store this is many transactions: the flow is first marked
        `ending` (the durable cursor: what is left is whatever is still active), then
        participants and outbox rows change a chunk at a time. A worker that stops
        half-way leaves the flow `ending`, and `recover` finishes the job."""
        def mark():
            record = self._record(flow)
            record.status = "ending"
            record.paused_at = None
            self.store.put_flow(record)
        self._atomic(mark)
        self._finish_end(flow)

    def _finish_end(self, flow: str) -> None:
        def drop_chunk() -> int:
            chunk = self.store.unfinished(flow, self.chunk)
            for p in chunk:
                q = p.copy()
                q.status = "dropout"
                q.wake_at = None
                q.error = ENDED
                self.store.save(q)
            return len(chunk)

        while self._atomic(drop_chunk):
            crashpoint("mid_end")
        while self._atomic(self.store.cancel_outbox, flow, self.chunk):
            crashpoint("mid_end")

        def close():
            for event in self.store.held_events(flow):
                self.store.dead_letter(DeadLetter(event, f"flow `{flow}` was ended while it held "
                                                  "this event", self.clock.now()))
            record = self._record(flow)
            record.status = "stopped"
            self.store.put_flow(record)
        self._atomic(close)

    def recover(self) -> None:
        """Finish what a worker that stopped hard left half-done: an `end` in
        progress. (At-most-once rows it left `sending` come due when their lease
        runs out, and `dispatch` dead-letters them.)"""
        for record in self.store.flows():
            if record.status == "ending":
                self._finish_end(record.name)

    def _atomic(self, function, *args):
        """`function(*args)` as one unit of work (see `unit_of_work`)."""
        return unit_of_work(lambda engine: function(*args))(self)

    @unit_of_work
    def delete(self, flow: str) -> None:
        record = self._record(flow)
        if record.status == "running":
            raise EngineError(f"flow `{flow}` is running; pause or end it before deleting it")
        self.store.delete_flow(flow)

    def status(self, flow: str) -> str:
        return self._record(flow).status

    # ------------------------------------------------------------------ enrolment
    @unit_of_work
    def enroll(self, flow: str, pid: str, data: dict | None = None,
               memberships: dict | None = None, event: dict | None = None) -> Admission:
        """Offer a person to a flow through its trigger rules."""
        record = self._record(flow)
        person = self._person(pid, data, memberships)
        if record.status in ("stopped", "ending"):
            return Admission(False, "refused", f"flow `{flow}` is not running")
        if record.kind == "pipeline":
            return self._new_record(record, pid, person["data"], (data or {}).get("stage"))
        program = self.current(flow)
        existing = self.store.participant(flow, pid)
        if existing is not None and existing.status == "dropout" and existing.error == ENDED:
            return Admission(False, "refused", "this participant's run was ended; a restart "
                             "admits only new participants")
        if existing is not None and not existing.finished:
            return Admission(False, "refused", "already in the flow")
        if existing is not None and program.trigger.get("once_per_person"):
            return Admission(False, "refused", "once per person: already ran this flow")
        candidate = _candidate(flow, program.version, pid, person)
        if not interp.admits(program, candidate, event):
            return Admission(False, "refused", "the trigger's filter or exclusion keeps it out")
        if existing is not None:
            self.store.archive(existing)
            candidate.run = existing.run + 1
        if record.status == "paused":
            self.store.save(candidate)
            return Admission(True, "queued")
        self._save(interp.enter(program, candidate, self.clock.now(), pid in self.explain))
        return Admission(True, "active")

    @batch
    def enroll_many(self, flow: str, people) -> Counter:
        """Offer many people at once: `people` yields (pid, data) or (pid, data,
        memberships). Returns how many were admitted, queued and refused.

        The same as `enroll` for each in turn, done a batch at a time: the flow,
        its program and the time are looked up once per batch, and the admitted
        enter the flow together (`bulk.enter_many`)."""
        outcome: Counter = Counter()

        prefetch = getattr(self.store, "prefetch", None)

        def enroll_chunk(chunk) -> Counter:
            counted: Counter = Counter()
            if prefetch is not None:
                prefetch(flow, [person[0] for person in chunk])
            self._enroll_batch(flow, chunk, counted)
            return counted

        for chunk in _chunks(people, self.batch):
            outcome.update(self._atomic(enroll_chunk, chunk))
        return outcome

    def _enroll_batch(self, flow: str, people: list, outcome: Counter) -> None:
        record = self._record(flow)
        if record.kind != "flow" or record.status != "running" or self.listeners:
            # pipelines, queues and refusals, and listeners that may act between
            # two enrolments: one at a time
            for person in people:
                outcome[self.enroll(flow, *person).status] += 1
            return
        program = self.current(flow)
        once = program.trigger.get("once_per_person")
        # a trigger with no exclusion and no filter admits all that no event names
        open_door = not program.exclude and program.trigger.get("filter") is None
        participant = self.store.participant
        version = program.version
        candidates: list[Participant] = []
        pending: set[str] = set()
        for offer in people:
            if len(offer) == 2:  # (pid, data), the commonest: without a call (0.4%)
                (pid, data), memberships, event = offer, None, None
            else:
                pid, data, memberships, event = _offer(*offer)
            if pid in pending:
                # the same person twice in a batch: the first must be in the flow
                # before the second is offered
                self._enter_batch(program, candidates)
                candidates = []
                pending.clear()
            person = self._person(pid, data, memberships)
            existing = participant(flow, pid)
            if existing is not None and (not existing.finished or once or existing.error == ENDED
                                         and existing.status == "dropout"):
                outcome["refused"] += 1
                continue
            candidate = _candidate(flow, version, pid, person)
            if (event is not None or not open_door) and not interp.admits(program, candidate, event):
                outcome["refused"] += 1
                continue
            if existing is not None:
                self.store.archive(existing)
                candidate.run = existing.run + 1
            candidates.append(candidate)
            pending.add(pid)
            outcome["active"] += 1
        self._enter_batch(program, candidates)

    def _enter_batch(self, program: interp.Program, candidates: list[Participant]) -> None:
        if not candidates:
            return
        now = self.clock.now()
        try:
            # the candidates are the engine's own, made for this: no copies
            outcomes = bulk.enter_outcomes(program, candidates, now, own=True)
        except Retry:
            raise
        except Exception:  # one at a time: what is saved before it fails is as before
            for p in candidates:
                # the walk may have changed it: made again from the person's record
                # (which only the saves change)
                again = _candidate(p.flow, p.version, p.id, self.store.person(p.id))
                again.run = p.run
                self._save(interp.enter(program, again, now, p.id in self.explain))
            return
        self._save_many(outcomes)

    @unit_of_work
    def remember(self, pid: str, data: dict | None = None, memberships: dict | None = None) -> None:
        """Tell the engine who a person is (data, memberships) without offering
        them to a flow: events about them are then kept, and a trigger event
        later admits them."""
        self._person(pid, data, memberships)

    def _new_record(self, record: FlowRecord, pid: str, data: dict, stage: str | None) -> Admission:
        existing = self.store.participant(record.name, pid)
        if existing is not None and not existing.finished:
            return Admission(False, "refused", "already in the pipeline")
        program = self.program(record.version)
        result = pipelines.create(program, Participant(pid, record.name, program.version, dict(data)),
                                  self.clock.now(), stage)
        self._save_pipeline(program, result)
        return Admission(True, "active")

    def _save_pipeline(self, program, result: pipelines.PipelineResult, subject: str | None = None) -> None:
        rows = result.actions
        if result.record is not None:
            self.store.save(result.record, rows)
        else:
            for row in rows:
                self.store.save_outbox(row)
        for number, (stage, data) in enumerate(result.new_leads, 1):
            base = f"{subject or 'lead'}:lead"
            n = number
            while self.store.participant(program.name, f"{base}-{n}") is not None:
                n += 1
            record = self.store.flow(program.name)
            self._new_record(record, f"{base}-{n}", data, stage)

    def _person(self, pid: str, data: dict | None, memberships: dict | None) -> dict:
        person = self.store.person(pid)
        if person is None:
            person = {"data": dict(data) if data else EMPTY,
                      "memberships": ({k: sorted(v) for k, v in memberships.items()}
                                      if memberships else EMPTY)}
            self.store.put_person(pid, person)
            return person
        if data:
            person = {**person, "data": {**person["data"], **data}}
        if memberships:
            person = {**person, "memberships": {**person["memberships"],
                                                **{k: sorted(v) for k, v in memberships.items()}}}
        self.store.put_person(pid, person)
        return person

    # ------------------------------------------------------------------ events
    @unit_of_work
    def ingest(self, event: dict) -> str:
        """Take an event from the host: apply it to the participant's runs, admit
        the participant to flows it triggers, or keep it for a paused flow. A
        malformed event or one for an unknown participant goes to the dead letters
        with the reason; nothing is dropped."""
        return self._ingest(event)

    def _ingest(self, event: dict) -> str:
        problem = self._validate(event)
        if problem is not None:
            self.store.dead_letter(DeadLetter(event, problem, self.clock.now()))
            return "dead letter: " + problem
        pid = event["participant"]
        updates = self.event_updates.get(event["type"])
        if updates:
            changes = {field: event[key] for field, key in updates if key in event}
            event = {**event, "set": {**(event.get("set") or {}), **changes}}
        self._remember(event)
        touched = self._route(event)
        if not touched:
            self.store.dead_letter(DeadLetter(event, "no flow has this participant or is "
                                              "triggered by this event", self.clock.now()))
            return "dead letter: unknown participant"
        return "applied" if pid else "ignored"

    @batch
    def ingest_many(self, events) -> Counter:
        """Take many events at once; returns how many had each outcome."""
        outcome: Counter = Counter()

        prefetch = getattr(self.store, "prefetch", None)

        def ingest_chunk(chunk) -> Counter:
            counted: Counter = Counter()
            if prefetch is not None:
                pids = [e["participant"] for e in chunk if isinstance(e, dict)
                        and isinstance(e.get("participant"), str)]
                for record in self.store.flows():
                    prefetch(record.name, pids)
            ingest = self._ingest  # (this chunk is the unit of work)
            for event in chunk:
                counted[ingest(event).partition(":")[0]] += 1
            return counted

        for chunk in _chunks(events, self.batch):
            outcome.update(self._atomic(ingest_chunk, chunk))
        return outcome

    def _validate(self, event) -> str | None:
        if not isinstance(event, dict):
            return "an event is a JSON object"
        kind = event.get("type")
        if not isinstance(kind, str) or not kind:
            return "the event has no `type`"
        if kind not in self.event_types and kind != "task.done":
            return f"unknown event type `{kind}`"
        if not isinstance(event.get("participant"), str) or not event["participant"]:
            return "the event names no `participant`"
        for key in self.event_needs.get(kind, ()):
            if key not in event:
                return f"a {kind} event needs `{key}`"
        if "set" in event and not isinstance(event["set"], dict):
            return "`set` must be an object: {field: value}"
        if not _NAMING_KEYS.isdisjoint(event):
            for key in _NAMING_KEYS_IN_ORDER:
                if key in event and not isinstance(event[key], str):
                    return f"`{key}` must be a string"
        return None

    def _remember(self, event: dict) -> None:
        """Keep the directory of people up to date with data and memberships."""
        kind = event["type"]
        changes = event.get("set")
        sets = isinstance(changes, dict)
        joins = kind in interp.MEMBERSHIP_EVENTS
        if not (sets or joins):
            return  # (most events: nothing to look up)
        pid = event["participant"]
        person = self.store.person(pid)
        if person is None:
            return
        if sets:
            person = {**person, "data": {**person["data"], **changes}}
        if joins:  # (after the data: an event may do both, as on the participant)
            group, verb = kind.split(".")
            names = set(person["memberships"].get(group, ()))
            (names.add if verb == "added" else names.discard)(event[group])
            person = {**person, "memberships": {**person["memberships"], group: sorted(names)}}
        self.store.put_person(pid, person)

    def _route(self, event: dict, only: str | None = None) -> bool:
        pid = event["participant"]
        touched = False
        records = self.store.flows()
        # the participant's runs as they were when the event came: a hand-over the
        # event causes in one flow may put it in a flow still to be seen, and the
        # event came before it did
        before = {r.name: self.store.participant(r.name, pid) for r in records[1:]
                  if r.kind == "flow" and (only is None or r.name == only)} if len(records) > 1 else {}
        for record in records:
            if only is not None and record.name != only:
                continue
            p = self.store.participant(record.name, pid)
            if record.name in before and p is not None and (
                    before[record.name] is None or before[record.name].run != p.run):
                continue  # a run this event's own hand-over began (compared by run:
                # a durable store reads a new object each time)
            if record.kind == "pipeline":
                if record.status != "running":
                    if record.status == "paused":
                        self.store.hold_event(record.name, event)
                        touched = True
                    continue
                person = self.store.person(pid)
                if p is None and person is None:
                    continue
                subject = Participant(pid, record.name, record.version, dict((person or {}).get("data", {})),
                                      {k: frozenset(v) for k, v in (person or {}).get("memberships", {}).items()})
                program = self.program(record.version)
                self._save_pipeline(program, pipelines.on_event(program, p, subject, event,
                                                                self.clock.now()), pid)
                touched = True
                continue
            if p is not None and p.status in ("active", "queued"):
                touched = True
                if record.status == "paused" or p.status == "queued":
                    self.store.hold_event(record.name, event)
                    continue
                self._save(interp.step(self.program(p.version), p, self.clock.now(), event,
                                       p.id in self.explain), p)
                continue
            if record.status == "stopped" or record.version is None:
                continue
            program = self.current(record.name)
            if any(e["type"] == event["type"] for e in program.trigger["events"]):
                if self.store.person(pid) is None:
                    continue
                admission = self.enroll(record.name, pid, event=event)
                touched = touched or admission.admitted or p is not None
            elif p is not None:
                touched = True
        if not touched and self.store.person(pid) is not None:
            touched = True  # a known person: the event is kept in the directory
        return touched

    # ------------------------------------------------------------------ time
    @batch
    def tick(self, stop=None) -> int:
        """Advance every participant whose time has come, a batch per transaction,
        delivering the due actions after each batch. Returns how many participants
        moved. `stop` (a threading.Event) is looked at between batches: a worker
        asked to stop finishes the batch it is in, never half of one.

        Delivering after each batch, not after the whole backlog: the first
        actions of a million timers reach the host at once, not after the last
        timer; the rows are delivered while they are fresh (in a store's cache,
        in memory); and the outbox holds a batch's rows, not the backlog's."""
        now = self.clock.now()
        moved = 0
        while stop is None or not stop.is_set():
            self.dispatch(stop)  # what is due (the last batch's actions) before the next batch
            advanced = self._atomic(self._advance_batch, now)
            if advanced is None:
                break
            crashpoint("after_commit")
            moved += advanced
        self.moved += moved
        return moved

    def _advance_batch(self, now: dt.datetime) -> int | None:
        """Claim a batch of due participants and step them (one transaction): in
        bulk, a group per state (`bulk`), unless listeners want each step result.
        None when nothing was due."""
        due = self.store.due(now, self.batch)
        if not due:
            return None
        running = {}
        for flow in {p.flow for p in due}:
            record = self.store.flow(flow)
            running[flow] = record is not None and record.status == "running"
        # paused: those due leave the index, and resume puts them back
        awake = due if all(running.values()) else [p for p in due if running[p.flow]]
        outcomes = None
        if not self.listeners:  # they may act between two participants: one at a time
            try:
                outcomes = self._step_many(awake, now)
            except Retry:
                raise
            except Exception:  # the pure step raised: one at a time, as before bulk
                outcomes = None
        if outcomes is None:
            for p in awake:
                self._save(interp.step(self.program(p.version), p, now, None, p.id in self.explain), p)
        else:
            self._save_many(outcomes, awake)
        return len(awake)

    def _step_many(self, due: list[Participant], now: dt.datetime) -> list[bulk.Outcome]:
        """The timers of `due` fire: each version's participants advance in bulk;
        the outcomes come back in the order of `due`."""
        version = due[0].version if due else None
        if all(p.version == version for p in due):
            return bulk.step_outcomes(self.program(version), due, now) if due else []
        places: dict[str, list[int]] = {}
        for index, p in enumerate(due):
            places.setdefault(p.version, []).append(index)
        outcomes: list = [None] * len(due)
        for version, indices in places.items():
            stepped = bulk.step_outcomes(self.program(version), [due[i] for i in indices], now)
            for index, outcome in zip(indices, stepped):
                outcomes[index] = outcome
        return outcomes

    def next_wake(self) -> dt.datetime | None:
        times = [t for t in (self.store.next_due(), self.store.next_outbox()) if t is not None]
        return min(times) if times else None

    @batch
    def run_until(self, when: dt.datetime) -> None:
        """On a virtual clock: process everything due up to `when`, in time order."""
        while True:
            wake = self.next_wake()
            if wake is None or wake > when:
                break
            if wake > self.clock.now():
                self.clock.set(wake)
            self.tick()
        if when > self.clock.now():
            self.clock.set(when)
        self.tick()

    # ------------------------------------------------------------------ saving and the outbox
    def _save(self, result: interp.StepResult, before: Participant | None = None) -> None:
        """Store a step's result with its outbox rows; the positions in the path it
        moved between are its transition record (a durable store refuses a second
        record for one position: no participant is advanced twice)."""
        p = result.participant
        self.store.save(p, result.actions, _moved(before, p) if self._transitions else None)
        for listener in self.listeners:
            listener(result)
        for action in result.actions:
            self._own_effects(action)

    def _save_many(self, outcomes: list[bulk.Outcome], before: list[Participant] | None = None) -> None:
        """`_save` for each outcome in turn (the bulk paths run without listeners,
        so without the step results they would be given); `before`: the
        participants as they were, for the transition records. The saves go to
        the store a run at a time, up to each action that touches the person (its
        effects then see exactly the saves before it, as one at a time)."""
        save_many = self.store.save_many
        own_effects = self._own_effects
        transitions = self._transitions
        saves = []
        touching: dict[int, tuple] = {}  # id(IR action) -> its `_person_plan`
        for (participant, actions), was in zip(outcomes, before if before is not None else repeat(None)):
            saves.append((participant, actions, _moved(was, participant) if transitions else None))
            for action in actions:
                # (a batch's actions come from a few IR actions, alive for the whole
                # call: a local memo saves a call per action, measured at 1.5%)
                plan = touching.get(id(action.do))
                if plan is None:
                    plan = touching[id(action.do)] = _person_plan(action.do)
                if plan:
                    if saves:
                        save_many(saves)
                        saves = []
                    own_effects(action, plan)
        if saves:
            save_many(saves)

    def _own_effects(self, action: interp.Action, plan: tuple | None = None) -> None:
        """What the engine itself does about an action: the person's record learns
        the memberships and fields the flow set, and a hand-over (`add to flow X`)
        offers the participant to flow X. (`plan`: the action's `_person_plan`,
        when the caller has it.)"""
        if plan is None:
            plan = _person_plan(action.do)
        if not plan:
            return
        sets_fields, changes, handovers = plan
        pid = action.participant
        if sets_fields or changes:
            person = self.store.person(pid)
            if person is not None:
                data = {**person["data"], **action.data} if sets_fields else person["data"]
                memberships = person["memberships"]
                if changes:
                    memberships = self._joined(memberships, action.do, changes)
                self.store.put_person(pid, {"data": data, "memberships": memberships})
        for target in handovers:
            if self.store.flow(target) is not None:
                self._handovers.append((target, pid, action))
        if self._handing_over or not self._handovers:
            return  # the outer call works the list off; or nothing to hand over
        self._handing_over = True
        try:
            done = 0
            while self._handovers:
                target, who, cause = self._handovers.pop(0)
                done += 1
                if done > MAX_HANDOVERS:
                    self._handovers.clear()
                    stuck = self.store.participant(cause.flow, cause.participant)
                    if stuck is not None:
                        q = stuck.copy()
                        q.status = "failed"
                        q.wake_at = None
                        q.error = (f"more than {MAX_HANDOVERS} hand-overs without a wait: flows "
                                   "hand the participant to each other in a cycle")
                        self.store.save(q)
                    break
                self.enroll(target, who)
        finally:
            self._handing_over = False

    def _joined(self, memberships: dict, do: dict, changes: tuple) -> dict:
        """A person's memberships after an action's changes. People who had the
        same memberships share the new ones (records are never changed in place),
        so that a million people added to one selection cost one new record each,
        not four."""
        key = (id(memberships), id(do))
        found = self._memberships.get(key)
        if found is None or found[0] is not memberships or found[1] is not do:
            new = dict(memberships)
            for kind, adds, name in changes:
                names = set(new.get(kind, ()))
                (names.add if adds else names.discard)(name)
                new[kind] = sorted(names)
            if len(self._memberships) >= 4096:
                self._memberships.clear()
            # (the old record and the action are kept alive: their ids stay theirs)
            found = self._memberships[key] = (memberships, do, new)
        return found[2]

    @batch
    def dispatch(self, stop=None) -> int:
        """Deliver due outbox rows to the handlers; retry failures with backoff;
        fail the participant after the last attempt, keeping the error, and put the
        action in the dead letters.

        At least once (the default): a batch of rows is claimed, delivered and
        marked sent in one transaction; a worker that stops before the commit
        leaves the rows pending, and they are delivered again (the handler dedupes
        on the key). At most once: the row is marked `sending` and committed
        before its handler runs; a row found still `sending` after its lease was
        lost with its worker and is dead-lettered, never sent again."""
        now = self.clock.now()
        delivered = 0
        while stop is None or not stop.is_set():
            claimed, once = self._atomic(self._dispatch_batch, now)
            if not claimed:
                break
            delivered += claimed
            for row in once:
                self._atomic(self._deliver, row, now)
        self.delivered += delivered
        return delivered

    def _dispatch_batch(self, now: dt.datetime) -> tuple[int, list[OutboxRow]]:
        """Deliver a claimed batch in order, up to the first at-most-once row: that
        one is marked `sending` and handed back, to be delivered after this
        commit; the rows after it wait for the next batch (order is kept)."""
        rows = self.store.outbox_due(now, self.batch)
        handled = 0
        once: list[OutboxRow] = []
        plain: list[OutboxRow] = []  # rows delivered as they come, gathered in order
        for row in rows:
            handled += 1
            lost = row.status == "sending"
            if not lost and row.do.get("delivery") != "at most once":
                plain.append(row)
                continue
            # a row that needs more: those before it are delivered first, in order
            self._deliver_each(plain, now)
            plain = []
            if lost:
                row.status = "failed"
                row.error = ("the worker stopped while delivering it; at most once: not "
                             "sent again, and whether it reached the host is unknown")
                self.store.update_outbox(row)
                self.store.dead_letter(_action_letter(row, now))
            else:
                row.status = "sending"
                row.next_attempt = now + SENDING_LEASE
                self.store.update_outbox(row)
                once.append(row)
                self.store.release_outbox(rows[handled:])
                break
        self._deliver_each(plain, now)
        if rows:
            crashpoint("before_ack")
        return handled, once

    def _deliver(self, row: OutboxRow, now: dt.datetime) -> None:
        self._deliver_each((row,), now)

    def _deliver_each(self, rows, now: dt.datetime) -> None:
        """Hand each row to its handler, in order; a failure is retried later,
        or, after the last attempt (or at most once), fails the participant."""
        handlers = self.handlers
        caller = self._caller
        update = self.store.update_outbox
        # a batch's rows come from a few IR actions, often in runs of one: each
        # action's handler and render plan are looked up once per call (the rows
        # keep the actions alive, so their ids stay theirs)
        plans: dict[int, tuple] = {}
        do = None
        for row in rows:
            if row.do is not do:
                do = row.do
                plan = plans.get(id(do))
                if plan is None:
                    plan = plans[id(do)] = (handlers.get(row.action) or handlers.get("*"),
                                            prerenderer_of(do))
                handler, render = plan
            row.attempts += 1
            kind = row.participant_type
            try:
                # render first: a refused template never runs
                settings, args = render(kind, row.data)
                if handler is not None:
                    delivery = Delivery(row, kind, row.attempts, settings, args)
                    if caller is not None:
                        caller.call(handler, delivery, self.handler_timeout)
                    else:
                        handler(delivery)
                    crashpoint("after_send")
            except Exception as e:  # a handler's failure is data: retried, then kept
                row.error = f"{type(e).__name__}: {e}" if not isinstance(e, RenderError) else str(e)
                # (`sending`: an at-most-once row, marked so before its attempt)
                if row.attempts >= self.max_attempts or isinstance(e, RenderError) \
                        or row.status == "sending":
                    row.status = "failed"
                    self._fail(row, row.error)
                    self.store.dead_letter(_action_letter(row, now))
                else:
                    row.next_attempt = now + self.backoff * (2 ** (row.attempts - 1))
                update(row)
                continue
            row.status = "sent"
            row.error = None
            update(row)

    def _fail(self, action, error: str) -> None:
        p = self.store.participant(action.flow, action.participant)
        if p is None or p.status in FINISHED and p.status != "completed" and p.status != "completed_success":
            return
        q = p.copy()
        q.status = "failed"
        q.error = f"`{action.action}` at {action.step} failed: {error}"
        q.wake_at = None
        self.store.save(q)

    def dead_letters(self) -> list[DeadLetter]:
        return self.store.dead_letters()

    # ------------------------------------------------------------------ counts
    def counts(self, flow: str) -> dict:
        """Per-step and per-status counts (Pipedrive's In progress / Completed /
        Failed overview). A finished participant counts at the last step it passed."""
        steps: dict[str, Counter] = {}
        statuses: Counter = Counter({s: 0 for s in STATUSES})
        for (where, status), number in self.store.tally(flow).items():
            statuses[status] += number
            steps.setdefault(where, Counter())[status] += number
        return {"steps": {k: dict(v) for k, v in steps.items()}, "statuses": dict(statuses)}


def _action_letter(row: OutboxRow, now: dt.datetime) -> DeadLetter:
    return DeadLetter({"action": row.action, "key": row.key, "flow": row.flow,
                       "participant": row.participant, "step": row.step},
                      row.error or "failed", now, kind="action")


def _chunks(items, size: int):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
