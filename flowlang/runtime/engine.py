"""The engine: the only part of the runtime with I/O. It loads versions and
participants from a store, feeds them to the pure interpreter, saves the results
together with their outbox rows, keeps the flow lifecycle (DESIGN §7), and
delivers actions to the host's handlers with retries.

Time comes from the clock; nothing here reads the wall clock.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Callable

import attrs

from flowlang.gcpause import batch
from flowlang.runtime import bulk
from flowlang.runtime import interpreter as interp
from flowlang.runtime import pipeline as pipelines
from flowlang.runtime.clock import RealClock
from flowlang.runtime.render import RenderError, prerender, render_args, render_settings
from flowlang.runtime.state import EMPTY, FINISHED, STATUSES, Participant
from flowlang.runtime.store import DeadLetter, FlowRecord, MemoryStore, OutboxRow, Store

CONTROLS = ("start", "pause", "resume", "end")
#: A participant handed from flow to flow more often than this in one go is in a
#: cycle without a wait: it fails instead of running for ever.
MAX_HANDOVERS = 100


class EngineError(Exception):
    """A lifecycle request that is not allowed now (say why in the message)."""


class Delivery:
    """What a handler receives: the action, its idempotency key, and its settings
    with templates rendered over the participant's data. Rendering happens when
    the handler first reads `settings` or `args` (a template error then fails the
    delivery like a handler error, without retries)."""

    __slots__ = ("key", "flow", "participant", "step", "action", "data", "at", "attempt",
                 "_do", "_type", "_settings", "_args")

    def __init__(self, action, participant_type: str, attempt: int):
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
        self._settings = None
        self._args = None

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


_MEMBERSHIP_KINDS = frozenset({"selection", "project", "interest"})


_TOUCHES: dict[int, tuple[dict, bool]] = {}


def _touches_person(do: dict) -> bool:
    """Does an action change what the engine knows of the person (memberships,
    fields) or hand the participant over? Computed once per IR action."""
    cached = _TOUCHES.get(id(do))
    if cached is None or cached[0] is not do:
        found = bool(do.get("operations")) or any(
            e["kind"] in _MEMBERSHIP_KINDS or e["verb"] == "hands_over" for e in do.get("effects", ()))
        cached = _TOUCHES[id(do)] = (do, found)
    return cached[1]


def _offer(pid: str, data: dict | None = None, memberships: dict | None = None,
           event: dict | None = None) -> tuple:
    """An `enroll_many` entry read as `enroll`'s arguments."""
    return pid, data, memberships, event


class Engine:
    def __init__(self, store: Store | None = None, clock=None, *, seed: int = 0,
                 max_attempts: int = 5, backoff: dt.timedelta = dt.timedelta(minutes=1),
                 batch: int = 10_000, event_types: frozenset[str] | None = None):
        self.store: Store = store if store is not None else MemoryStore()
        self.clock = clock if clock is not None else RealClock()
        self.seed = seed
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.batch = batch
        self.handlers: dict[str, Handler] = {}
        self.event_types = event_types if event_types is not None else known_event_types()
        self.event_updates = event_updates()
        self.event_needs = event_needs()
        self._programs: dict[str, interp.Program] = {}
        self._pending_migration: dict[str, dict] = {}
        #: hand-overs (`add to flow X`) still to do, worked off in a loop, not by
        #: recursion: flows may hand a participant round a cycle (FL407 warns)
        self._handovers: list[tuple] = []
        self._handing_over = False
        #: while a tick steps participants on the memory store: the outbox rows
        #: it made, for delivery without the store's due index
        self._direct: list | None = None
        #: called with every step result (simulations, progress displays)
        self.listeners: list[Callable] = []
        #: participants whose steps carry a trace of why (`simulate --explain`)
        self.explain: set[str] = set()

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
            self._pending_migration[name] = dict(removed or {})
            record.version = machine["hash"]
            self.store.put_flow(record)
        return machine["hash"]

    def start(self, flow: str) -> None:
        record = self._record(flow)
        if record.status == "paused":
            raise EngineError(f"flow `{flow}` is paused; resume it instead")
        record.status = "running"
        self.store.put_flow(record)

    def pause(self, flow: str) -> None:
        record = self._record(flow)
        if record.status != "running":
            raise EngineError(f"flow `{flow}` is {record.status}; only a running flow can be paused")
        record.status = "paused"
        record.paused_at = self.clock.now()
        self.store.put_flow(record)

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
        migration = self._pending_migration.pop(flow, {})
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
                    self._save(interp.enter_at(program, q, target, now))
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
        actions are cancelled; a restart admits only new participants."""
        record = self._record(flow)
        record.status = "stopped"
        record.paused_at = None
        for p in self.store.participants(flow):
            if p.status in ("active", "queued"):
                q = p.copy()
                q.status = "dropout"
                q.wake_at = None
                record.ended.add(q.id)
                self.store.save(q)
        for row in self.store.outbox():
            if row.status == "pending" and row.flow == flow:
                row.status = "cancelled"
                self.store.update_outbox(row)
        for event in self.store.held_events(flow):
            self.store.dead_letter(DeadLetter(event, f"flow `{flow}` was ended while it held "
                                              "this event", self.clock.now()))
        self.store.put_flow(record)

    def delete(self, flow: str) -> None:
        record = self._record(flow)
        if record.status == "running":
            raise EngineError(f"flow `{flow}` is running; pause or end it before deleting it")
        self.store.delete_flow(flow)

    def status(self, flow: str) -> str:
        return self._record(flow).status

    # ------------------------------------------------------------------ enrolment
    def enroll(self, flow: str, pid: str, data: dict | None = None,
               memberships: dict | None = None, event: dict | None = None) -> Admission:
        """Offer a person to a flow through its trigger rules."""
        record = self._record(flow)
        person = self._person(pid, data, memberships)
        if record.status == "stopped":
            return Admission(False, "refused", f"flow `{flow}` is not running")
        if record.kind == "pipeline":
            return self._new_record(record, pid, person["data"], (data or {}).get("stage"))
        if pid in record.ended:
            return Admission(False, "refused", "this participant's run was ended; a restart "
                             "admits only new participants")
        program = self.current(flow)
        existing = self.store.participant(flow, pid)
        if existing is not None and not existing.finished:
            return Admission(False, "refused", "already in the flow")
        if existing is not None and program.trigger.get("once_per_person"):
            return Admission(False, "refused", "once per person: already ran this flow")
        # the participant shares the person's data dict: both are copy-on-write
        memberships = person["memberships"]
        candidate = Participant(pid, flow, program.version, person["data"],
                                {k: frozenset(v) for k, v in memberships.items()} if memberships else EMPTY)
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
        chunk: list = []
        for person in people:
            chunk.append(person)
            if len(chunk) >= self.batch:
                self._enroll_batch(flow, chunk, outcome)
                chunk = []
        if chunk:
            self._enroll_batch(flow, chunk, outcome)
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
            if len(offer) == 2:
                pid, data = offer
                memberships = event = None
            else:
                pid, data, memberships, event = _offer(*offer)
            if pid in pending:
                # the same person twice in a batch: the first must be in the flow
                # before the second is offered
                self._enter_batch(program, candidates)
                candidates = []
                pending.clear()
            person = self._person(pid, data, memberships)
            if pid in record.ended:
                outcome["refused"] += 1
                continue
            existing = participant(flow, pid)
            if existing is not None and (not existing.finished or once):
                outcome["refused"] += 1
                continue
            memberships = person["memberships"]
            candidate = Participant(pid, flow, version, person["data"],
                                    {k: frozenset(v) for k, v in memberships.items()}
                                    if memberships else EMPTY)
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
            outcomes = bulk.enter_outcomes(program, candidates, now)
        except Exception:  # one at a time: what is saved before it fails is as before
            for p in candidates:
                self._save(interp.enter(program, p, now, p.id in self.explain))
            return
        self._save_many(outcomes)

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
        self._leave_direct()  # its rows go through the due index, after those before them
        now = self.clock.now()
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
    def ingest(self, event: dict) -> str:
        """Take an event from the host: apply it to the participant's runs, admit
        the participant to flows it triggers, or keep it for a paused flow. A
        malformed event or one for an unknown participant goes to the dead letters
        with the reason; nothing is dropped."""
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
        for event in events:
            outcome[self.ingest(event).split(":")[0]] += 1
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
        for key in sorted(self.event_needs.get(kind, ())):
            if key not in event:
                return f"a {kind} event needs `{key}`"
        if "set" in event and not isinstance(event["set"], dict):
            return "`set` must be an object: {field: value}"
        for key in ("selection", "project", "form", "link", "email", "stage", "reason"):
            if key in event and not isinstance(event[key], str):
                return f"`{key}` must be a string"
        return None

    def _remember(self, event: dict) -> None:
        """Keep the directory of people up to date with data and memberships."""
        pid = event["participant"]
        person = self.store.person(pid)
        if person is None:
            return
        kind = event["type"]
        if isinstance(event.get("set"), dict):
            self.store.put_person(pid, {**person, "data": {**person["data"], **event["set"]}})
        if kind in ("selection.added", "selection.removed", "project.added", "project.removed"):
            group, verb = kind.split(".")
            names = set(person["memberships"].get(group, ()))
            (names.add if verb == "added" else names.discard)(event[group])
            self.store.put_person(pid, {**person, "memberships": {**person["memberships"],
                                                                   group: sorted(names)}})

    def _route(self, event: dict, only: str | None = None) -> bool:
        pid = event["participant"]
        touched = False
        records = self.store.flows()
        # the participant's runs as they were when the event came: a hand-over the
        # event causes in one flow may put it in a flow still to be seen, and the
        # event came before it did
        before = {r.name: self.store.participant(r.name, pid) for r in records[1:]
                  if r.kind == "flow" and (only is None or r.name == only)}
        for record in records:
            if only is not None and record.name != only:
                continue
            p = self.store.participant(record.name, pid)
            if record.name in before and p is not before[record.name]:
                continue  # a run this event's own hand-over began
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
                                       p.id in self.explain))
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
    def tick(self) -> int:
        """Advance every participant whose time has come, then deliver due actions.
        Returns how many participants moved."""
        now = self.clock.now()
        # the memory store can hand this tick's new outbox rows straight to
        # delivery below instead of through its due index (`save_unqueued`)
        if not self.listeners and hasattr(self.store, "save_unqueued"):
            self._direct = []
        try:
            moved = self._advance(now)
        except BaseException:
            self._leave_direct()
            raise
        direct, self._direct = self._direct, None
        if direct:
            self._deliver_direct(direct, now)
        self.dispatch()
        return moved

    def _advance(self, now: dt.datetime) -> int:
        """Step every participant whose time has come: how many moved."""
        moved = 0
        while True:
            due = self.store.due(now, self.batch)
            if not due:
                break
            running: dict[str, bool] = {}
            awake = []
            for p in due:
                live = running.get(p.flow)
                if live is None:
                    record = self.store.flow(p.flow)
                    live = running[p.flow] = record is not None and record.status == "running"
                if live:  # paused: it leaves the index, and resume puts it back
                    awake.append(p)
            moved += len(awake)
            if self.listeners:  # they may act between two participants: one at a time
                for p in awake:
                    self._save(interp.step(self.program(p.version), p, now, None, p.id in self.explain))
            else:
                try:
                    outcomes = self._step_many(awake, now)
                except Exception:  # one at a time: what is saved before it fails is as before
                    for p in awake:
                        self._save(interp.step(self.program(p.version), p, now, None,
                                               p.id in self.explain))
                    continue
                self._save_many(outcomes)
        return moved

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
    def _save(self, result: interp.StepResult) -> None:
        p = result.participant
        if self._direct is None:
            self.store.save(p, result.actions)
        else:
            self.store.save_unqueued(p, result.actions)
            self._direct.extend(result.actions)
        for listener in self.listeners:
            listener(result)
        for action in result.actions:
            self._own_effects(action)

    def _save_many(self, outcomes: list[bulk.Outcome]) -> None:
        """`_save` for each outcome in turn (the bulk paths run without listeners,
        so without the step results they would be given)."""
        direct = self._direct
        save = self.store.save if direct is None else self.store.save_unqueued
        touches = _TOUCHES
        for participant, actions in outcomes:
            save(participant, actions)
            if actions:
                if direct is not None:
                    direct.extend(actions)
                for action in actions:
                    do = action.do
                    known = touches.get(id(do))
                    if known[1] if known is not None and known[0] is do else _touches_person(do):
                        self._own_effects(action)

    def _own_effects(self, action: interp.Action) -> None:
        """What the engine itself does about an action: the person's record learns
        the memberships and fields the flow set, and a hand-over (`add to flow X`)
        offers the participant to flow X."""
        if not _touches_person(action.do):
            return
        pid = action.participant
        person = self.store.person(pid)
        if person is not None:
            data = {**person["data"], **action.data} if action.do.get("operations") else person["data"]
            memberships = dict(person["memberships"])
            for effect in action.do.get("effects", ()):
                kind = effect["kind"]
                if kind in ("selection", "project", "interest") and effect["verb"] in ("adds", "removes"):
                    names = set(memberships.get(kind, ()))
                    (names.add if effect["verb"] == "adds" else names.discard)(effect["target"])
                    memberships[kind] = sorted(names)
            self.store.put_person(pid, {"data": data, "memberships": memberships})
        for effect in action.do.get("effects", ()):
            if effect["verb"] == "hands_over" and effect["kind"] == "flow":
                target = effect["target"]
                if self.store.flow(target) is not None:
                    self._handovers.append((target, pid, action))
        if self._handing_over:
            return  # the outer call works the list off
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

    @batch
    def dispatch(self) -> int:
        """Deliver due outbox rows to the handlers; retry failures with backoff;
        fail the participant after the last attempt, keeping the error."""
        now = self.clock.now()
        delivered = 0
        while True:
            rows = self.store.outbox_due(now, self.batch)
            if not rows:
                return delivered
            for row in rows:
                self._deliver(row, now)
                delivered += 1

    def _leave_direct(self) -> None:
        """Stop handing rows straight to delivery for the rest of this tick: the
        rows kept so far join the due index, in order."""
        rows, self._direct = self._direct, None
        if rows:
            self.store.queue_outbox(rows)

    def _deliver_direct(self, rows: list[OutboxRow], now: dt.datetime) -> None:
        """Deliver the rows this tick made, as `dispatch` would have taken them
        from the due index: in order, a batch at a time, each batch of those
        still pending when it is taken. If older rows are due too, those go first:
        then all go through the index."""
        first = self.store.next_outbox()
        if first is not None and first <= now:
            self.store.queue_outbox(rows)
            return
        size = self.batch
        for start in range(0, len(rows), size):
            taken = [row for row in rows[start:start + size] if row.status == "pending"]
            for done, row in enumerate(taken):
                taken[done] = None  # delivered rows go as they are done, not at the end
                try:
                    self._deliver(row, now)
                except BaseException:  # not a handler's failure (those are data): keep the rest
                    self.store.queue_outbox(taken[done + 1:] + rows[start + size:])
                    raise
            for index in range(start, min(start + size, len(rows))):
                rows[index] = None

    def _deliver(self, row: OutboxRow, now: dt.datetime) -> None:
        action = row
        handler = self.handlers.get(action.action) or self.handlers.get("*")
        row.attempts += 1
        try:
            delivery = Delivery(action, row.participant_type, row.attempts)
            # render first: a refused template never runs
            delivery._settings, delivery._args = prerender(action.do, row.participant_type,
                                                           action.data)
            if handler is not None:
                handler(delivery)
        except Exception as e:  # a handler's failure is data: retried, then kept
            row.error = f"{type(e).__name__}: {e}" if not isinstance(e, RenderError) else str(e)
            if row.attempts >= self.max_attempts or isinstance(e, RenderError):
                row.status = "failed"
                self._fail(action, row.error)
            else:
                row.next_attempt = now + self.backoff * (2 ** (row.attempts - 1))
            self.store.update_outbox(row)
            return
        row.status = "sent"
        row.error = None
        self.store.update_outbox(row)

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
        runs = list(self.store.participants(flow)) + list(self.store.finished_runs(flow))
        for p in runs:
            statuses[p.status] += 1
            where = p.step or (p.path[-1] if p.path else "(queued)" if p.status == "queued" else "(start)")
            steps.setdefault(where, Counter())[p.status] += 1
        return {"steps": {k: dict(v) for k, v in steps.items()}, "statuses": dict(statuses)}
