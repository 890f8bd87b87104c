"""What the reliability tests and their worker processes share: the reference
flow and its timeline, the deduping key sink, the invariant checks, and the
control engine that delivers without the outbox.

The timeline is the host's side of a run: deploy and start the reference flow,
enrol the population at START, let time run to CLICK_AT, send the clicks, run to
END. A worker that is killed and restarted runs the same timeline again from the
top; everything before the kill that committed is not done twice, because the
engine's state is durable and the host's inputs (enrolment, clicks) are marked
taken in a state folder once every chunk of them committed.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
from collections import Counter
from pathlib import Path

import attrs

from flowlang.compiler import compile_project
from flowlang.project import load_project
from flowlang.runtime.clock import VirtualClock
from flowlang.runtime.engine import Engine
from flowlang.runtime.store import MemoryStore
from flowlang.runtime.stores import open_store

HERE = Path(__file__).parent
UTC = dt.timezone.utc
FLOW = "reference"
START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
#: after `wait 3 days`, inside the 7 days of `wait for clicked link offer`
CLICK_AT = START + dt.timedelta(days=5)
#: after every `wait for` has timed out (START + 10 days)
END = START + dt.timedelta(days=11)


@functools.cache
def machine(name: str = FLOW, file: str | None = None) -> dict:
    """A compiled flow from `tests/durable/<file or name>.flow`."""
    return compile_project(load_project([str(HERE / f"{file or name}.flow")])).machines[name]


def population(n: int) -> list[tuple[str, dict]]:
    """`n` people; scores 0..99 spread evenly, so half take the `Hot` branch."""
    return [(f"p{i:06d}", {"first_name": f"P{i}", "score": (i * 37) % 100}) for i in range(n)]


def clicks(n: int) -> list[dict]:
    """A click on the offer link by every other person of the `otherwise` branch."""
    return [{"type": "link.clicked", "participant": pid, "link": "offer"}
            for i, (pid, data) in enumerate(population(n)) if data["score"] < 50 and i % 2 == 0]


def prepare(engine: Engine, n: int, state: Path | None = None) -> None:
    """Deploy and start the reference flow and enrol the population at START, a
    slice at a time. With a `state` folder the host keeps a cursor there (how
    many people were offered and committed), so a restarted worker goes on from
    it; the slice it offers again is refused (already in the flow), not doubled."""
    engine.clock.set(START)
    engine.deploy(machine())
    if engine.status(FLOW) == "stopped":
        engine.start(FLOW)
    cursor = state / "enrolled" if state is not None else None
    done = int(cursor.read_text() or 0) if cursor is not None and cursor.exists() else 0
    people = population(n)
    while done < n:
        engine.enroll_many(FLOW, people[done:done + ENROL_SLICE])
        done = min(n, done + ENROL_SLICE)
        if cursor is not None:
            _replace(cursor, str(done))


#: how many people the host offers at once (and then moves its cursor)
ENROL_SLICE = 1_000


def _replace(path: Path, text: str) -> None:
    """Write a small file so that a kill leaves the old or the new text, never half."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def timeline(engine: Engine, n: int, state: Path | None = None) -> None:
    """Run the reference timeline on `engine` (its clock a VirtualClock), from the
    start or after a crash. `state` holds the host's markers (None: no crash
    can happen, as in the in-memory oracle). Clicks sent twice (a restart before
    the marker, or two workers at once) change nothing: a click finds its
    participant gone on."""
    prepare(engine, n, state)
    engine.run_until(CLICK_AT)
    if state is None or not (state / "clicked").exists():
        engine.ingest_many(clicks(n))
        if state is not None:
            (state / "clicked").touch()
    engine.run_until(END)


class KeySink:
    """The host's handler: appends each delivery's idempotency key to a file,
    one line per delivery, with one unbuffered `write` of O_APPEND before it
    returns, so the line survives a SIGKILL of the process the moment after (the
    tests kill processes, they do not cut the power: no fsync needed). The
    reader dedupes; the duplicates are counted, not hidden."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, delivery) -> None:
        delivery.settings  # render, as a real host would
        os.write(self.fd, (delivery.key + "\n").encode())


def read_keys(folder: Path) -> Counter:
    """Every key any worker's sink received (files `keys-*.txt`), with how often."""
    keys: Counter = Counter()
    for path in sorted(folder.glob("keys-*.txt")):
        keys.update(line for line in path.read_text().split("\n") if line)
    return keys


class NoOutboxEngine(Engine):
    """The control: an engine without the outbox guarantee. Step results' actions
    are not written to the outbox with the state; they are kept in memory and
    sent once the tick's (or the ingest's) transactions committed, as a host
    would that "sends after commit". A crash between the commit and the sends
    loses those actions, and the checks must notice."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._unsent: list = []

    def _save(self, result, before=None) -> None:
        self._unsent.extend(result.actions)
        super()._save(result._replace(actions=()), before)
        for action in result.actions:
            self._own_effects(action)

    def _save_many(self, outcomes, before=None) -> None:
        """The bulk path's saves, through `_save` above (one outcome at a time)."""
        from flowlang.runtime.interpreter import StepResult
        for index, (participant, actions) in enumerate(outcomes):
            self._save(StepResult(participant, tuple(actions), participant.wake_at),
                       before[index] if before is not None else None)

    def _send_unsent(self) -> None:
        handler = self.handlers["*"]
        unsent, self._unsent = self._unsent, []
        for action in unsent:
            handler(_Sent(action.key))

    def tick(self, stop=None) -> int:
        moved = super().tick(stop)
        self._send_unsent()
        return moved

    def ingest_many(self, events) -> Counter:
        outcome = super().ingest_many(events)
        self._send_unsent()
        return outcome

    def enroll_many(self, flow, people) -> Counter:
        outcome = super().enroll_many(flow, people)
        self._send_unsent()
        return outcome


@attrs.frozen
class _Sent:
    key: str
    settings: dict = attrs.field(factory=dict)


# ------------------------------------------------------------------------ expectations

@attrs.frozen
class Expected:
    """What a run of the timeline must end with: the in-memory engine's result."""
    states: dict  # pid -> (status, step, path)
    keys: frozenset
    statuses: dict  # status -> how many
    moves: dict  # pid -> ((position, moved_to), ...): its transition records


class MovesMemoryStore(MemoryStore):
    """The in-memory store, noting each save's transition record (`moved`), which
    it has no table for."""

    keeps_transitions = True

    def __init__(self):
        super().__init__()
        self.moves: dict[str, list] = {}

    def save_many(self, saves):
        saves = list(saves)
        for participant, _outbox, moved in saves:
            if moved is not None:
                self.moves.setdefault(participant.id, []).append(moved)
        super().save_many(saves)


@functools.cache
def expected(n: int) -> Expected:
    """The oracle: the timeline on the in-memory engine, no crash, one worker."""
    store = MovesMemoryStore()
    engine = Engine(store, VirtualClock(START))
    delivered: list[str] = []
    engine.register("*", lambda d: delivered.append(d.key))
    timeline(engine, n)
    assert len(delivered) == len(set(delivered))
    states = {p.id: (p.status, p.step, p.path) for p in engine.store.participants(FLOW)}
    statuses = {s: k for s, k in engine.counts(FLOW)["statuses"].items() if k}
    moves = {pid: tuple(m for m in found if m[0] > 0) for pid, found in store.moves.items()}
    return Expected(states, frozenset(delivered), statuses, moves)


@attrs.define
class Findings:
    """What the checks found after a run on a durable store (empty lists: fine)."""
    lost: list = attrs.field(factory=list)  # participants missing
    wrong: list = attrs.field(factory=list)  # (pid, got, expected) final state differs
    missing_keys: set = attrs.field(factory=set)  # should have reached the sink, did not
    unexpected_keys: set = attrs.field(factory=set)
    duplicates: int = 0  # deliveries of a key after its first (at least once)
    unsent: list = attrs.field(factory=list)  # outbox rows pending, sending or failed
    broken_chains: list = attrs.field(factory=list)  # transition records not the oracle's moves
    transitions: int = 0
    counts: dict = attrs.field(factory=dict)
    dead: list = attrs.field(factory=list)

    def problems(self) -> list[str]:
        """Everything that breaks the guarantees (duplicates do not: the sink
        dedupes, and a crash may cause them)."""
        found = []
        for name in ("lost", "wrong", "missing_keys", "unexpected_keys", "unsent",
                     "broken_chains", "dead"):
            value = getattr(self, name)
            if value:
                found.append(f"{name}: {len(value)}, e.g. {sorted(value, key=repr)[:3]}")
        return found


def query(store, sql: str, args=()) -> list:
    """Rows of a read-only query on a durable store's own connection (tests only:
    the stores share one schema, and `?` works for both)."""
    with store.transaction():
        return store._rows(sql, args)


def transition_records(store, flow: str) -> dict:
    """(pid, run) -> its transition records, ((position, moved_to), ...) in order."""
    rows = query(store, "SELECT t.pid, t.run, t.position, t.moved_to FROM transitions t "
                        "JOIN flows f ON f.id = t.flow WHERE f.name = ? "
                        "ORDER BY t.pid, t.run, t.position", (flow,))
    found: dict = {}
    for pid, run, position, moved_to in rows:
        found.setdefault((pid, run), []).append((position, moved_to))
    return {key: tuple(chain) for key, chain in found.items()}


def broken_chains(records: dict, want: dict) -> list:
    """Participants whose transition records are not exactly the oracle's: each
    participant moved along its path once, in the same steps as the in-memory
    engine did (a record for position 0, the entry, is not required: a new
    run's row key guards it). A participant advanced twice from one place would
    need a second record for that position, which the key refuses, or would
    show a chain that skips or repeats a stretch of its path."""
    broken = []
    for (pid, run), chain in records.items():
        chain = tuple(m for m in chain if m[0] > 0)
        if run != 1 or chain != want.get(pid, ()):
            broken.append((pid, run, chain, want.get(pid)))
    broken.extend((pid, 1, (), chain) for pid, chain in want.items()
                  if chain and (pid, 1) not in records)
    return broken


def inspect(engine: Engine, folder: Path, n: int) -> Findings:
    """Check a finished run of the timeline against the in-memory oracle (keys of
    other flows' participants in the sinks are left out)."""
    want = expected(n)
    store = engine.store
    found = Findings()
    got = {p.id: p for p in store.participants(FLOW)}
    found.lost = sorted(set(want.states) - set(got))
    for pid, state in want.states.items():
        p = got.get(pid)
        if p is not None and (p.status, p.step, p.path) != state:
            found.wrong.append((pid, (p.status, p.step, p.path), state))
    found.wrong.extend((p.id, "a second run", None) for p in store.finished_runs(FLOW))
    people = {pid for pid, _ in population(n)}
    keys = Counter({key: k for key, k in read_keys(folder).items() if key.split(":")[1] in people})
    found.missing_keys = set(want.keys - set(keys))
    found.unexpected_keys = set(keys) - want.keys
    found.duplicates = sum(keys.values()) - len(keys)
    found.unsent = [(r.key, r.status, r.error) for r in store.outbox() if r.status != "sent"]
    records = transition_records(store, FLOW)
    found.transitions = sum(len(chain) for chain in records.values())
    found.broken_chains = broken_chains(records, want.moves)
    found.counts = {s: k for s, k in engine.counts(FLOW)["statuses"].items() if k}
    if found.counts != want.statuses:
        found.wrong.append(("counts", found.counts, want.statuses))
    found.dead = [(d.kind, d.reason) for d in engine.dead_letters()]
    return found


def fresh_engine(url: str, **options) -> Engine:
    """An engine over the store at `url` on a virtual clock at START."""
    return Engine(open_store(url), VirtualClock(START), **options)
