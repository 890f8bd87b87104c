"""Where the engine keeps its state, behind one protocol so that the in-memory
store (simulations, tests), SQLite and PostgreSQL are interchangeable.

The in-memory store is also the reference the durable stores are tested against.
A store keeps: deployed versions by content hash, each flow's lifecycle record,
participants (one current run per flow and person, finished runs kept for
counts), a due-time index, events held while a flow is paused, the outbox, and
the dead letters.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import heapq
from collections import Counter, deque
from typing import Iterable, Iterator, Protocol

import attrs

from flowlang.runtime.interpreter import Action
from flowlang.runtime.state import EMPTY, Participant


@attrs.define
class FlowRecord:
    name: str
    status: str = "stopped"  # stopped | running | paused
    version: str | None = None  # the current deployed version's hash
    paused_at: dt.datetime | None = None
    kind: str = "flow"  # flow | pipeline
    #: a new version's rule for participants at steps it removed, kept until the
    #: resume that applies it: {old step: new step or None (dropout)}
    migration: dict = attrs.field(factory=dict)


#: An outbox row is the interpreter's Action itself, with its delivery state.
OutboxRow = Action


@attrs.define
class DeadLetter:
    """An event the engine could not take, or an action that failed for good."""
    event: dict
    reason: str
    at: dt.datetime | None = None
    kind: str = "event"  # event | action


class Retry(Exception):
    """A durable store's transaction lost a race with another worker (a deadlock,
    a participant another worker advanced first): everything it did is rolled
    back, and the engine does the unit of work again."""


class Store(Protocol):
    """What the engine needs of a store. Every engine operation runs inside
    `transaction()` (reentrant: nested blocks join the outer one); in a durable
    store its writes commit together or not at all, and a conflict with another
    worker raises `Retry`."""
    #: whether `save` keeps transition records (`moved`); if not, the engine need
    #: not work them out
    keeps_transitions: bool

    def transaction(self) -> contextlib.AbstractContextManager: ...
    def reading(self) -> contextlib.AbstractContextManager: ...
    def in_transaction(self) -> bool: ...
    def put_version(self, machine: dict) -> None: ...
    def version(self, version: str) -> dict: ...
    def flow(self, name: str) -> FlowRecord | None: ...
    def put_flow(self, record: FlowRecord) -> None: ...
    def delete_flow(self, name: str) -> None: ...
    def flows(self) -> list[FlowRecord]: ...
    def participant(self, flow: str, pid: str) -> Participant | None: ...
    def participants(self, flow: str) -> Iterator[Participant]: ...
    def save(self, participant: Participant, outbox: Iterable[OutboxRow] = (),
             moved: tuple[int, int] | None = None) -> None: ...
    def save_many(self, saves: Iterable[tuple[Participant, Iterable[OutboxRow], tuple | None]]) -> None: ...
    def save_outbox(self, row: OutboxRow) -> None: ...
    def archive(self, participant: Participant) -> None: ...
    def finished_runs(self, flow: str) -> Iterator[Participant]: ...
    def unfinished(self, flow: str, limit: int) -> list[Participant]: ...
    def tally(self, flow: str) -> Counter: ...
    def due(self, now: dt.datetime, limit: int) -> list[Participant]: ...
    def schedule(self, participant: Participant) -> None: ...
    def next_due(self) -> dt.datetime | None: ...
    def hold_event(self, flow: str, event: dict) -> None: ...
    def held_events(self, flow: str) -> list[dict]: ...
    def outbox_due(self, now: dt.datetime, limit: int) -> list[OutboxRow]: ...
    def next_outbox(self) -> dt.datetime | None: ...
    def update_outbox(self, row: OutboxRow) -> None: ...
    def outbox(self) -> list[OutboxRow]: ...
    def cancel_outbox(self, flow: str, limit: int) -> int: ...
    def release_outbox(self, rows: list[OutboxRow]) -> None: ...
    def dead_letter(self, letter: DeadLetter) -> None: ...
    def dead_letters(self) -> list[DeadLetter]: ...
    def dead_letter_count(self) -> int: ...
    def outbox_counts(self) -> Counter: ...
    def person(self, pid: str) -> dict | None: ...
    def put_person(self, pid: str, record: dict) -> None: ...


def _bucket(buckets: dict, times: list, when: dt.datetime) -> deque:
    """The bucket of an index (timers, outbox attempts) for a time, made and its
    time pushed on the heap the first time it is asked for."""
    bucket = buckets.get(when)
    if bucket is None:
        bucket = buckets[when] = deque()
        heapq.heappush(times, when)
    return bucket


def _take(queue: deque, count: int) -> list:
    """Up to `count` entries from the front of a bucket, in order: a batch off a
    bucket of a million costs the batch, not the bucket."""
    popleft = queue.popleft
    return [popleft() for _ in range(min(count, len(queue)))]


class _UnitOfWork:
    """A memory store's transaction: nothing to commit, only how deep it is."""

    __slots__ = ("depth",)

    def __init__(self):
        self.depth = 0

    def __enter__(self):
        self.depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self.depth -= 1


class MemoryStore:
    """Everything in dicts, a heap for timers (stale entries skipped on pop)."""

    #: no transition records: memory survives no crash, and one process steps each
    #: participant, so nothing can advance it twice
    keeps_transitions = False

    def __init__(self):
        self._versions: dict[str, dict] = {}
        self._flows: dict[str, FlowRecord] = {}
        self._participants: dict[str, dict[str, Participant]] = {}
        self._finished: dict[str, list[Participant]] = {}
        #: the due-time index: wake time -> participants, and a heap of the times;
        #: those who wait together wake together, as one bucket
        self._buckets: dict[dt.datetime, deque[Participant]] = {}
        self._times: list[dt.datetime] = []
        self._held: dict[str, list[dict]] = {}
        #: rows to deliver, by the time of their next attempt, like the timers (the
        #: rows themselves: memory needs no look-up by key; an entry whose row has
        #: moved on, to another time or out of pending, is skipped when popped)
        self._attempts: dict[dt.datetime, deque[OutboxRow]] = {}
        self._attempt_times: list[dt.datetime] = []
        #: rows that will not be attempted again (failed, cancelled), kept to be seen
        self._settled: dict[str, OutboxRow] = {}
        self._dead: list[DeadLetter] = []
        #: what the engine knows of people, in two parts rather than one record
        #: per person: a data dict of plain values is not tracked by the garbage
        #: collector, and most people have no memberships (a million records would
        #: be a million more objects for every collection to walk)
        self._data: dict[str, dict] = {}
        self._memberships: dict[str, dict] = {}  # only for people with any
        #: how many outbox rows were delivered (their rows are not kept)
        self.sent = 0
        self._unit = _UnitOfWork()

    # ------------------------------------------------------------------ transactions
    def transaction(self):
        """Memory has nothing to commit: a unit of work is just run (its depth is
        counted, so that the engine's nested units join the outer one, as in the
        durable stores)."""
        return self._unit

    def reading(self):
        return contextlib.nullcontext()

    def in_transaction(self) -> bool:
        return self._unit.depth > 0

    # ------------------------------------------------------------------ versions and flows
    def put_version(self, machine: dict) -> None:
        self._versions[machine["hash"]] = machine

    def version(self, version: str) -> dict:
        return self._versions[version]

    def flow(self, name: str) -> FlowRecord | None:
        return self._flows.get(name)

    def put_flow(self, record: FlowRecord) -> None:
        self._flows[record.name] = record

    def delete_flow(self, name: str) -> None:
        self._flows.pop(name, None)
        self._participants.pop(name, None)
        self._finished.pop(name, None)
        self._held.pop(name, None)

    def flows(self) -> list[FlowRecord]:
        return list(self._flows.values())

    # ------------------------------------------------------------------ participants
    def participant(self, flow: str, pid: str) -> Participant | None:
        runs = self._participants.get(flow)
        return runs.get(pid) if runs is not None else None

    def participants(self, flow: str) -> Iterator[Participant]:
        return iter(list(self._participants.get(flow, {}).values()))

    def save(self, participant: Participant, outbox: Iterable[OutboxRow] = (),
             moved: tuple[int, int] | None = None) -> None:
        """The participant's new state and its outbox rows, together (one
        transaction in the durable stores, with the transition record `moved`:
        the positions in its path it went from and to)."""
        self.save_many(((participant, outbox, moved),))

    def save_many(self, saves: Iterable[tuple[Participant, Iterable[OutboxRow], tuple | None]]) -> None:
        """`save` for each (participant, outbox rows, moved) in turn."""
        participants = self._participants
        flow = runs = None
        # those saved together mostly wake together and act at the same time: the
        # last bucket of each kind is kept at hand (`schedule` and `_queue_attempt`
        # without a call per participant and row)
        woken = sleepers = attempted = attempts = None
        for participant, outbox, _moved in saves:
            if participant.flow != flow:
                flow = participant.flow
                runs = participants.get(flow)
                if runs is None:
                    runs = participants[flow] = {}
            before = runs.get(participant.id)
            runs[participant.id] = participant
            wake_at = participant.wake_at
            if wake_at is not None and participant.status == "active" and (
                    before is None or before.wake_at != wake_at):
                if wake_at != woken:
                    woken = wake_at
                    sleepers = _bucket(self._buckets, self._times, wake_at)
                sleepers.append(participant)
            for row in outbox:
                when = row.next_attempt
                if when != attempted:
                    attempted = when
                    attempts = _bucket(self._attempts, self._attempt_times, when)
                attempts.append(row)

    def save_outbox(self, row: OutboxRow) -> None:
        """An outbox row with no participant change (a pipeline handler's action
        for a person who is not a record of the pipeline)."""
        self._queue_attempt(row)

    def _queue_attempt(self, row: OutboxRow) -> None:
        _bucket(self._attempts, self._attempt_times, row.next_attempt).append(row)

    def _waiting_rows(self) -> Iterator[OutboxRow]:
        """The rows still to be attempted, each once, in the order of their turns."""
        seen: set[int] = set()
        for when in sorted(self._attempts):
            for row in self._attempts[when]:
                if (row.next_attempt == when and (row.status == "pending" or row.status == "sending")
                        and id(row) not in seen):
                    seen.add(id(row))
                    yield row

    def schedule(self, participant: Participant) -> None:
        """Put a participant (back) into the due-time index at its `wake_at`."""
        _bucket(self._buckets, self._times, participant.wake_at).append(participant)

    def archive(self, participant: Participant) -> None:
        """Keep a finished run for the counts before the person starts a new one."""
        self._finished.setdefault(participant.flow, []).append(participant)

    def finished_runs(self, flow: str) -> Iterator[Participant]:
        return iter(self._finished.get(flow, ()))

    def unfinished(self, flow: str, limit: int) -> list[Participant]:
        """Active and queued participants (all of them: memory survives no crash,
        so it needs no chunks)."""
        return [p for p in self._participants.get(flow, {}).values()
                if p.status == "active" or p.status == "queued"]

    def tally(self, flow: str) -> Counter:
        """(place, status) -> how many runs, finished runs included."""
        counted: Counter = Counter()
        for p in self._participants.get(flow, {}).values():
            counted[p.place, p.status] += 1
        for p in self._finished.get(flow, ()):
            counted[p.place, p.status] += 1
        return counted

    def due(self, now: dt.datetime, limit: int) -> list[Participant]:
        out: list[Participant] = []
        taken = set()
        while self._times and self._times[0] <= now and len(out) < limit:
            wake_at = self._times[0]
            bucket = self._buckets[wake_at]
            chunk = _take(bucket, limit - len(out))
            if not bucket:
                heapq.heappop(self._times)
                del self._buckets[wake_at]
            flow = runs = None
            for entry in chunk:
                # an entry stands for its participant's latest state, if that still
                # waits for this time (a later save may have moved or ended it)
                if entry.flow != flow:
                    flow = entry.flow
                    runs = self._participants.get(flow, {})
                p = runs.get(entry.id)
                if (p is not None and p.status == "active" and p.wake_at == wake_at
                        and id(p) not in taken):
                    taken.add(id(p))  # (the latest states are alive: ids are theirs)
                    out.append(p)
        return out

    def next_due(self) -> dt.datetime | None:
        """The earliest time in the index (it may hold stale entries, which `due`
        skips)."""
        return self._times[0] if self._times else None

    # ------------------------------------------------------------------ events
    def hold_event(self, flow: str, event: dict) -> None:
        self._held.setdefault(flow, []).append(event)

    def held_events(self, flow: str) -> list[dict]:
        return self._held.pop(flow, [])

    # ------------------------------------------------------------------ outbox
    def outbox_due(self, now: dt.datetime, limit: int) -> list[OutboxRow]:
        out: list[OutboxRow] = []
        while self._attempt_times and self._attempt_times[0] <= now and len(out) < limit:
            when = self._attempt_times[0]
            rows = self._attempts[when]
            chunk = _take(rows, limit - len(out))
            if not rows:
                heapq.heappop(self._attempt_times)
                del self._attempts[when]
            for row in chunk:
                if row.next_attempt == when and (row.status == "pending" or row.status == "sending"):
                    out.append(row)
        return out

    def next_outbox(self) -> dt.datetime | None:
        return self._attempt_times[0] if self._attempt_times else None

    def update_outbox(self, row: OutboxRow) -> None:
        if row.status == "sent":
            # delivered: memory holds only what is still to do or went wrong
            self.sent += 1
        elif row.status == "pending" or row.status == "sending":
            self._queue_attempt(row)
        else:
            self._settled[row.key] = row

    def outbox(self) -> list[OutboxRow]:
        return [*self._waiting_rows(), *self._settled.values()]

    def release_outbox(self, rows: list[OutboxRow]) -> None:
        """Claimed rows a batch did not get to: back to the front of their
        attempt-time buckets, in order."""
        for row in reversed(rows):
            _bucket(self._attempts, self._attempt_times, row.next_attempt).appendleft(row)

    def cancel_outbox(self, flow: str, limit: int) -> int:
        """Cancel a flow's undelivered rows (all at once in memory)."""
        cancelled = 0
        for row in list(self._waiting_rows()):
            if row.status == "pending" and row.flow == flow:
                row.status = "cancelled"
                self._settled[row.key] = row
                cancelled += 1
        return cancelled

    # ------------------------------------------------------------------ people
    def person(self, pid: str) -> dict | None:
        """What the engine knows of a person across flows: data and memberships."""
        data = self._data.get(pid)
        if data is None:
            return None
        return {"data": data, "memberships": self._memberships.get(pid, EMPTY)}

    def put_person(self, pid: str, record: dict) -> None:
        self._data[pid] = record["data"]
        memberships = record["memberships"]
        if memberships:
            self._memberships[pid] = memberships
        else:
            self._memberships.pop(pid, None)

    # ------------------------------------------------------------------ dead letters
    def dead_letter(self, letter: DeadLetter) -> None:
        self._dead.append(letter)

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def dead_letter_count(self) -> int:
        return len(self._dead)

    def outbox_counts(self) -> Counter:
        """(flow, status) -> outbox rows; delivered ones as ("*", "sent")."""
        counted: Counter = Counter((row.flow, row.status) for row in self.outbox())
        counted["*", "sent"] = self.sent
        return counted
