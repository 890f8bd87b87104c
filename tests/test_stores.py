"""The engine suite over all three stores (DESIGN §8): memory, SQLite (a file in
the test's folder) and PostgreSQL (a real local server, see `pgserver.py`; a
database of its own per test).

Three kinds of tests:
- the `Store` protocol itself on each store;
- the engine's lifecycle, outbox and delivery rules (DESIGN §7) on each store,
  with concrete expectations;
- equivalence: the same inputs on a durable store, closed and reopened on the
  way or not, end in the same state as on the in-memory store (the reference):
  the same runs with their statuses, steps, paths and data, the same outbox
  and dead letters, and the same multiset of deliveries.

Time is a `VirtualClock`; the only real waits are the handler time limits that
a test is about (fractions of a second).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest

from flowlang import Engine, EngineError, VirtualClock, compile_project, project_from_texts
from flowlang.project import load_project
from flowlang.runtime.engine import ENDED, SENDING_LEASE
from flowlang.runtime.sqlite_store import SqliteStore
from flowlang.runtime.state import STATUSES, Participant
from flowlang.runtime.store import DeadLetter, FlowRecord, MemoryStore
from flowlang.simulate import parse_time, read_jsonl

UTC = dt.timezone.utc
START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REFERENCE = ROOT.parent / "shared" / "bench" / "reference.flow"
SENDER = 'email from "news@acme.example"; email reply_to "support@acme.example"'

STORES = ("memory", "sqlite", "postgresql")
DURABLE = ("sqlite", "postgresql")


# ----------------------------------------------------------------------------- stores

class Backend:
    """One kind of store for one test: `open()` gives a store on the test's
    database (the same file or PostgreSQL database every time, so a store closed
    and opened again finds what was committed); memory gives a new, empty store."""

    def __init__(self, kind: str, location: str | None = None):
        self.kind = kind
        self.location = location
        self.opened: list = []

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    def open(self):
        if self.kind == "memory":
            store = MemoryStore()
        elif self.kind == "sqlite":
            store = SqliteStore(self.location)
        else:
            from flowlang.runtime.postgres_store import PostgresStore
            store = PostgresStore(self.location)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            close = getattr(store, "close", None)
            if close is not None:
                close()
        self.opened = []

    def __repr__(self) -> str:
        return f"<Backend {self.kind}>"


def _backend(request, kind: str, tmp_path: Path) -> Backend:
    if kind == "postgresql":
        # This suite is about what the stores keep and return, not about
        # surviving a power cut: commits need not wait for the disk (what a
        # connection sees, and what a reopened store finds, is the same).
        url = request.getfixturevalue("postgres_url")
        url += ("&" if "?" in url else "?") + "options=-c%20synchronous_commit%3Doff"
        return Backend(kind, url)
    if kind == "sqlite":
        return Backend(kind, str(tmp_path / "flows.db"))
    return Backend(kind)


@pytest.fixture(params=STORES)
def store_factory(request, tmp_path):
    backend = _backend(request, request.param, tmp_path)
    yield backend
    backend.close_all()


@pytest.fixture(params=DURABLE)
def durable_factory(request, tmp_path):
    backend = _backend(request, request.param, tmp_path)
    yield backend
    backend.close_all()


@pytest.fixture
def memory_factory():
    return Backend("memory")


# ----------------------------------------------------------------------------- a host

def machines(text: str) -> dict[str, dict]:
    return compile_project(project_from_texts({"main.flow": text})).machines


def project_machines(path: Path) -> dict[str, dict]:
    return compile_project(load_project([str(path)])).machines


class Host:
    """An engine over a backend's store on a virtual clock, every flow deployed
    and started, a catch-all handler recording what it receives. `reopen()`
    closes the store and goes on with a new store and a new engine on the same
    database, as a restarted worker would."""

    def __init__(self, backend: Backend, flows: dict[str, dict], start: dt.datetime = START, *,
                 start_flows: bool = True, handler=None, **engine_options):
        self.backend = backend
        self.machines = flows
        self.clock = VirtualClock(start)
        self.options = engine_options
        self.handler = handler or self.record
        self.deliveries: list[dict] = []
        self.engine = self._engine(backend.open())
        for name, machine in flows.items():
            self.engine.deploy(machine)
            if start_flows:
                self.engine.start(name)

    def _engine(self, store) -> Engine:
        engine = Engine(store, self.clock, **self.options)
        engine.register("*", self.handler)
        return engine

    def handle(self, handler) -> None:
        """Deliver everything to `handler` from now on (and after a reopen)."""
        self.handler = handler
        self.engine.register("*", handler)

    def reopen(self) -> None:
        assert self.backend.durable, "a memory store cannot be reopened"
        self.engine.store.close()
        self.engine = self._engine(self.backend.open())

    def record(self, delivery) -> None:
        self.deliveries.append({"key": delivery.key, "flow": delivery.flow, "step": delivery.step,
                                "action": delivery.action, "participant": delivery.participant,
                                "settings": delivery.settings, "at": delivery.at,
                                "delivered": self.clock.now(), "attempt": delivery.attempt})

    def run(self, **delta) -> None:
        self.engine.run_until(self.clock.now() + dt.timedelta(**delta))

    def p(self, flow: str, pid: str) -> Participant:
        with self.engine.store.transaction():
            return self.engine.store.participant(flow, pid)

    def steps(self, pid: str | None = None) -> list[str]:
        return [d["step"] for d in self.deliveries if pid is None or d["participant"] == pid]


def runs(engine: Engine, flow: str) -> list[Participant]:
    return list(engine.store.finished_runs(flow)) + list(engine.store.participants(flow))


def statuses_of(engine: Engine, flow: str) -> Counter:
    return Counter(p.status for p in runs(engine, flow))


def assert_counts_match(engine: Engine, flow: str) -> None:
    counts = engine.counts(flow)
    expected = statuses_of(engine, flow)
    assert {s: n for s, n in counts["statuses"].items() if n} == dict(expected)
    assert set(counts["statuses"]) == set(STATUSES)
    per_step: Counter = Counter()
    for by_status in counts["steps"].values():
        per_step.update(by_status)
    assert per_step == expected


def end_state(host: Host) -> dict:
    """Everything a store keeps that the host can observe, in a comparable form."""
    engine = host.engine
    state: dict = {"runs": {}, "counts": {}}
    for flow in host.machines:
        state["runs"][flow] = sorted((json.dumps(p.to_json(), sort_keys=True, default=str)
                                      for p in runs(engine, flow)))
        state["counts"][flow] = engine.counts(flow)
        state.setdefault("flows", {})[flow] = engine.status(flow)
    state["outbox"] = sorted((r.key, r.status, r.attempts, r.error, r.next_attempt)
                             for r in engine.store.outbox())
    state["dead"] = sorted((d.kind, d.reason, d.at, json.dumps(d.event, sort_keys=True, default=str))
                           for d in engine.dead_letters())
    state["sent"] = engine.store.sent
    state["deliveries"] = Counter(json.dumps(d, sort_keys=True, default=str) for d in host.deliveries)
    return state


def with_delivery(machine: dict, phrase: str, delivery: str) -> dict:
    """A copy of a compiled flow whose `phrase` actions declare `delivery`."""
    machine = copy.deepcopy(machine)
    for state in machine["states"]:
        do = state.get("do")
        if do is not None and do["action"] == phrase:
            do["delivery"] = delivery
    return machine


# ----------------------------------------------------------------------------- flows

SIMPLE = f"""
flow simple {{
  settings {{ {SENDER} }}
  send email "Hello" {{ subject "Hello {{{{ person.first_name }}}}" }}
  wait 1 day
  complete
}}
"""

HELD = f"""
flow f {{
  settings {{ {SENDER} }}
  wait for person.score >= 10 within 10 days
  split "Which" {{
    branch "twenty" when person.score == 20 {{ run script "twenty" }}
    otherwise {{ run script "other" }}
  }}
  complete
}}
"""

MIX = f"""
form signup {{ on submit {{ add interest "X" }} }}
flow mix {{
  settings {{ {SENDER} }}
  trigger {{ on form signup submitted; exclude selection "Stop" }}
  success when person in selection "Customers"
  send email "Hello" {{ subject "Hello {{{{ person.first_name }}}}" }}
  wait for opened email "Hello" within 2 days else exit
  wait 1 day
  complete
}}
"""

V1 = f"""
flow f {{
  settings {{ {SENDER} }}
  send email "One" {{ subject "v1 one" }}
  first: wait 1 day
  send email "Two" {{ subject "v1 two" }}
  second: wait 1 day
  send email "Three" {{ subject "v1 three" }}
  complete
}}
"""
V2 = V1.replace("v1", "v2").replace("second: wait 1 day", "third: wait 2 days")


# ----------------------------------------------------------------------------- the Store protocol

def test_versions_and_flow_records_round_trip(store_factory):
    store = store_factory.open()
    machine = machines(SIMPLE)["simple"]
    with store.transaction():
        store.put_version(machine)
        store.put_version(machine)  # the same content again is harmless
        store.put_flow(FlowRecord("simple", "paused", machine["hash"], START, "flow",
                                  {"gone": "there", "dropped": None}))
        store.put_flow(FlowRecord("other", "stopped", machine["hash"]))
    if store_factory.durable:
        store.close()
        store = store_factory.open()
    assert store.version(machine["hash"]) == machine
    record = store.flow("simple")
    assert (record.name, record.status, record.version, record.paused_at, record.kind,
            record.migration) == ("simple", "paused", machine["hash"], START, "flow",
                                  {"gone": "there", "dropped": None})
    assert [r.name for r in store.flows()] == ["simple", "other"]
    assert store.flow("nothing") is None
    with store.transaction():
        store.delete_flow("other")
    assert [r.name for r in store.flows()] == ["simple"]


def _participants_run_columns(store) -> str:
    if isinstance(store, SqliteStore):
        return ", ".join(row[2] for row in store.db.execute("PRAGMA index_info(participants_run)"))
    found = store.db.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'participants_run'")
    definition = found.fetchone()[0]
    store.db.rollback()
    return definition[definition.index("(") + 1:definition.rindex(")")]


def _has_index(store, name: str) -> bool:
    if isinstance(store, SqliteStore):
        return store.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                                (name,)).fetchone() is not None
    found = store.db.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()
    store.db.rollback()
    return found is not None


def test_a_store_of_schema_1_is_migrated_with_its_data(durable_factory):
    host = Host(durable_factory, machines(MIX))
    host.engine.enroll("mix", "ann", {"first_name": "Ann", "score": 3})
    host.run(hours=30)
    before = [p.to_json() for p in runs(host.engine, "mix")]
    counts = host.engine.counts("mix")
    store = host.engine.store
    with store.transaction():  # back to what flowlang wrote before schema 2
        store._execute("DROP INDEX participants_run")
        store._execute("CREATE UNIQUE INDEX participants_run ON participants(flow, pid, run)")
        store._execute("CREATE INDEX outbox_pending ON outbox(flow) WHERE status = 'pending'")
        # before schema 4, each row held its place's name
        store._execute("ALTER TABLE participants ADD COLUMN place_name TEXT")
        store._execute("UPDATE participants SET place_name = "
                       "(SELECT name FROM places WHERE places.id = participants.place)")
        store._execute("ALTER TABLE participants DROP COLUMN place")
        store._execute("ALTER TABLE participants RENAME COLUMN place_name TO place")
        store._execute("DROP TABLE places")
        store._execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    assert _participants_run_columns(store) == "flow, pid, run"
    host.reopen()
    store = host.engine.store
    assert _participants_run_columns(store) == "pid, flow, run"
    assert not _has_index(store, "outbox_pending")
    assert store._schema_version() == len(store.migrations) >= 4
    assert [p.to_json() for p in runs(host.engine, "mix")] == before
    assert host.engine.counts("mix") == counts
    with store.reading():
        names = {name for (name,) in store._rows("SELECT name FROM places")}
    assert names == {p["step"] or p["path"][-1] for p in before}
    host.run(hours=24 * 30)  # and the migrated runs go on to their ends
    assert {p.status for p in runs(host.engine, "mix")} <= {"completed", "completed_success",
                                                            "dropout"}


def test_a_rollback_forgets_the_ids_it_added(durable_factory):
    """A name given a number in a transaction that is rolled back loses it (the
    number may go to another name): the store must not remember it."""
    store = durable_factory.open()
    with pytest.raises(ZeroDivisionError):
        with store.transaction():
            store._place_id("ghost")
            1 / 0
    with store.transaction():
        real = store._place_id("real")  # on SQLite, the number "ghost" had
    with store.transaction():
        ghost = store._place_id("ghost")
    assert ghost != real
    assert (store._place_name(real), store._place_name(ghost)) == ("real", "ghost")
    with store.reading():
        assert dict(store._rows("SELECT id, name FROM places")) == {real: "real", ghost: "ghost"}


def test_a_store_newer_than_this_flowlang_is_refused(durable_factory):
    from flowlang.runtime.sqlstore import NotAStore
    store = durable_factory.open()
    with store.transaction():
        store._execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    store.close()
    with pytest.raises(NotAStore, match="schema version 99, newer than this flowlang knows"):
        durable_factory.open()


def test_participants_keep_everything_across_a_reopen(store_factory):
    host = Host(store_factory, machines(MIX))
    e = host.engine
    e.enroll("mix", "ann", {"first_name": "Ann", "score": 3}, {"selection": ["A", "B"]})
    e.enroll("mix", "bo", {"first_name": "Bo"})
    e.ingest({"type": "email.opened", "participant": "ann", "email": "Hello"})
    e.ingest({"type": "data.changed", "participant": "bo", "set": {"score": 7}})
    host.run(hours=30)
    before = {p.id: p.to_json() for p in runs(e, "mix")}
    assert before["ann"]["history"] and before["ann"]["path"]
    assert before["ann"]["memberships"] == {"selection": ["A", "B"]}
    if store_factory.durable:
        host.reopen()
    after = {p.id: p.to_json() for p in runs(host.engine, "mix")}
    assert after == before
    assert host.engine.store.person("bo")["data"] == {"first_name": "Bo", "score": 7}


def test_participants_wake_in_time_order_and_in_enrolment_order_among_equals(store_factory):
    host = Host(store_factory, machines(SIMPLE))
    e = host.engine
    for pid in ("p3", "p1", "p2"):
        e.enroll("simple", pid, {"first_name": pid})
    host.clock.advance(dt.timedelta(hours=1))
    e.enroll("simple", "p0", {"first_name": "p0"})  # wakes an hour later than the others
    store = e.store
    with store.transaction():
        assert store.next_due() == START + dt.timedelta(days=1)
        assert store.due(START + dt.timedelta(hours=23), 10) == []
    with store.transaction():
        first = store.due(START + dt.timedelta(days=2), 2)
    assert [p.id for p in first] == ["p3", "p1"]


def test_held_events_come_back_in_order_once(store_factory):
    store = store_factory.open()
    events = [{"type": "data.changed", "participant": "a", "set": {"n": n}} for n in range(5)]
    with store.transaction():
        for event in events:
            store.hold_event("f", event)
        store.hold_event("g", {"type": "email.opened", "participant": "b", "email": "x"})
    with store.transaction():
        assert store.held_events("f") == events
    with store.transaction():
        assert store.held_events("f") == []
        assert len(store.held_events("g")) == 1


def test_a_person_who_leaves_every_membership_keeps_their_data(store_factory):
    """(The memory store keeps data and memberships apart: a person whose
    memberships empty must not lose the data, nor keep the old memberships.)"""
    store = store_factory.open()
    with store.transaction():
        store.put_person("p", {"data": {"a": 1}, "memberships": {"selection": ["S"]}})
        store.put_person("p", {"data": {"a": 2}, "memberships": {}})
    if store_factory.durable:
        store.close()
        store = store_factory.open()
    with store.transaction():
        assert store.person("p") == {"data": {"a": 2}, "memberships": {}}
        store.put_person("p", {"data": {"a": 3}, "memberships": {"project": ["P"]}})
        assert store.person("p") == {"data": {"a": 3}, "memberships": {"project": ["P"]}}


def test_dead_letters_and_people_round_trip(store_factory):
    store = store_factory.open()
    letters = [DeadLetter({"type": "x", "participant": "p"}, "unknown event type `x`", START),
               DeadLetter({"action": "send email", "key": "k"}, "RuntimeError: down",
                          START + dt.timedelta(minutes=1), kind="action")]
    with store.transaction():
        for letter in letters:
            store.dead_letter(letter)
        store.put_person("p", {"data": {"a": 1, "nested": {"b": [1, 2]}},
                               "memberships": {"selection": ["S"]}})
    if store_factory.durable:
        store.close()
        store = store_factory.open()
    assert [(d.event, d.reason, d.at, d.kind) for d in store.dead_letters()] == \
        [(d.event, d.reason, d.at, d.kind) for d in letters]
    assert store.person("p") == {"data": {"a": 1, "nested": {"b": [1, 2]}},
                                 "memberships": {"selection": ["S"]}}
    assert store.person("nobody") is None


def test_outbox_rows_are_claimed_updated_and_cancelled(store_factory):
    host = Host(store_factory, machines(SIMPLE),
                handler=lambda d: (_ for _ in ()).throw(RuntimeError("down")), max_attempts=9)
    e, store = host.engine, host.engine.store
    e.enroll_many("simple", [(f"p{i}", {"first_name": "X"}) for i in range(5)])
    assert sorted(r.status for r in store.outbox()) == ["pending"] * 5
    with store.transaction():
        assert store.next_outbox() == START
        assert store.outbox_due(START - dt.timedelta(seconds=1), 10) == []
    host.run(minutes=2)  # each failed once; the next attempt is a backoff away
    rows = store.outbox()
    assert {(r.status, r.attempts) for r in rows} == {("pending", 2)}
    with store.transaction():
        first = store.cancel_outbox("simple", 2)
    # the durable stores cancel a chunk per transaction; memory has nothing to chunk
    assert first == (2 if store_factory.durable else 5)
    with store.transaction():
        assert store.cancel_outbox("simple", 10) == 5 - first
        assert store.cancel_outbox("simple", 10) == 0
    assert {r.status for r in store.outbox()} == {"cancelled"}
    assert store.sent == 0


def test_outbox_rows_changed_since_this_store_wrote_them_are_read_again(durable_factory):
    """A store delivers the outbox rows it wrote from memory, without reading them
    back; a row that a rolled-back batch tried, or that another worker tried,
    is read from the database (its attempts count on)."""
    host = Host(durable_factory, machines(SIMPLE))
    engine = host.engine

    class Interrupted(BaseException):
        pass

    def interrupt(delivery):
        raise Interrupted

    engine.enroll("simple", "bo", {"first_name": "Bo"})
    host.handle(interrupt)
    with pytest.raises(Interrupted):
        engine.dispatch()  # rolled back, after the row in memory counted an attempt
    host.handle(host.record)
    engine.dispatch()

    engine.enroll("simple", "ann", {"first_name": "Ann"})
    elsewhere = Engine(durable_factory.open(), host.clock, backoff=dt.timedelta(hours=1))

    def down(delivery):
        raise RuntimeError("down")

    elsewhere.register("*", down)
    assert elsewhere.dispatch() == 1  # ann's attempt 1 failed there
    host.clock.advance(dt.timedelta(hours=1))
    engine.dispatch()
    assert [(d["participant"], d["attempt"]) for d in host.deliveries] == [("bo", 1), ("ann", 2)]
    assert engine.store.sent == 2


TWO_FLOWS = f"""
link offer "https://acme.example/offer" {{ on click {{ add interest "Offer" }} }}
flow scorer {{
  settings {{ {SENDER} }}
  wait for clicked link offer within 7 days else exit
  update person {{ increase score by 10 }}
  complete
}}
flow watcher {{
  settings {{ {SENDER} }}
  send email "Score" {{ subject "Your score: {{{{ person.score }}}}" }}
  complete
}}
"""


@pytest.mark.parametrize("many", [False, True])
def test_a_person_changed_by_one_flow_leaves_the_runs_of_another_as_they_were(
        store_factory, many):
    """A run keeps the data it has until its own steps take the person's news (as
    in memory): the SQL stores, whose runs share the person's data until the two
    differ, give a run (here a finished one) its own copy when another flow
    changes the person, also when events come many at a time and the runs were
    read ahead."""
    host = Host(store_factory, machines(TWO_FLOWS))
    engine = host.engine
    for flow in ("scorer", "watcher"):
        engine.enroll_many(flow, [(f"p{i}", {"first_name": "Ann", "score": i}) for i in range(4)])
    assert {host.p("watcher", f"p{i}").status for i in range(4)} == {"completed"}
    clicks = [{"type": "link.clicked", "participant": f"p{i}", "link": "offer"} for i in (1, 3)]
    if many:
        engine.ingest_many(clicks)
    else:
        for click in clicks:
            engine.ingest(click)
    assert [engine.store.person(f"p{i}")["data"]["score"] for i in range(4)] == [0, 11, 2, 13]
    assert [host.p("scorer", f"p{i}").data["score"] for i in range(4)] == [0, 11, 2, 13]
    assert [host.p("watcher", f"p{i}").data["score"] for i in range(4)] == [0, 1, 2, 3]
    if store_factory.durable:
        host.reopen()
        assert [host.p("watcher", f"p{i}").data["score"] for i in range(4)] == [0, 1, 2, 3]


def test_data_json_cannot_hold_is_refused_and_nothing_is_kept(durable_factory):
    host = Host(durable_factory, machines(SIMPLE))
    with pytest.raises(TypeError, match="a value of type date cannot be stored"):
        host.engine.enroll("simple", "ann", {"first_name": "Ann", "born": dt.date(2000, 1, 1)})
    assert host.p("simple", "ann") is None and host.engine.store.person("ann") is None
    host.engine.enroll("simple", "bo", {"first_name": "Bo", "id": 2**70, "ratio": float("inf")})
    host.reopen()
    assert host.p("simple", "bo").data == {"first_name": "Bo", "id": 2**70, "ratio": float("inf")}


@pytest.mark.parametrize("stale_after", [0, 10**9])
def test_the_cache_of_unsent_rows_stays_within_its_bound(durable_factory, monkeypatch,
                                                          stale_after):
    """Full, the cache forgets rows written long ago (0: every earlier
    transaction's), or takes no more (10**9: none is old enough)."""
    from flowlang.runtime import sqlstore
    monkeypatch.setattr(sqlstore, "UNSENT_CACHE", 4)
    monkeypatch.setattr(sqlstore, "UNSENT_STALE_AFTER", stale_after)
    host = Host(durable_factory, machines(SIMPLE))
    for chunk in range(3):  # rows written but not delivered: the older are forgotten
        host.engine.enroll_many("simple", [(f"p{chunk}-{i}", {"first_name": "A"}) for i in range(3)])
        assert len(host.engine.store._unsent) == (3 if stale_after == 0 else min(4, 3 * (chunk + 1)))
    host.engine.dispatch()  # forgotten rows are read from the database
    assert sorted(d["participant"] for d in host.deliveries) == sorted(
        f"p{chunk}-{i}" for chunk in range(3) for i in range(3))
    assert host.engine.store._unsent == {}


def test_a_failed_transaction_leaves_nothing_behind(durable_factory):
    store = durable_factory.open()
    machine = machines(SIMPLE)["simple"]
    with store.transaction():
        store.put_version(machine)
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction():
            store.put_flow(FlowRecord("simple", "running", machine["hash"]))
            store.put_person("p", {"data": {"a": 1}, "memberships": {}})
            store.hold_event("simple", {"type": "x"})
            raise RuntimeError("boom")
    assert store.flow("simple") is None
    assert store.person("p") is None
    with store.transaction():
        assert store.held_events("simple") == []
    store.close()
    store = durable_factory.open()
    assert store.flows() == []


# ----------------------------------------------------------------------------- the reference flow

def reference_scenario(host: Host, reopen_at: tuple[str, ...] = ()) -> None:
    """The benchmark's flow: people with a score of 50 or more are hot; of the
    rest, every other one clicks the offer. `reopen_at` names the moments a
    durable store is closed and opened again."""
    e = host.engine
    e.enroll_many("reference", [(f"p{i:02}", {"first_name": f"P{i}", "score": (i * 7) % 100,
                                               "mobile": f"+4790000{i:03}"}) for i in range(40)])
    if "enrolled" in reopen_at:
        host.reopen()
    host.run(days=3, hours=1)
    if "waiting" in reopen_at:
        host.reopen()
    e = host.engine
    for i in range(0, 40, 2):
        e.ingest({"type": "link.clicked", "participant": f"p{i:02}", "link": "offer"})
    host.run(days=2)
    if "late" in reopen_at:
        host.reopen()
    host.run(days=10)


def expect_reference_outcome(host: Host) -> None:
    e = host.engine
    final = {p.id: p for p in runs(e, "reference")}
    assert len(final) == 40
    for i in range(40):
        p = final[f"p{i:02}"]
        hot = (i * 7) % 100 >= 50
        if hot:
            assert p.status == "completed" and p.path[-1] == "split-score/hot/complete"
        elif i % 2 == 0:
            assert p.status == "completed" and p.data["score"] == (i * 7) % 100 + 10
        else:
            assert p.status == "dropout", p
    hot = sum((i * 7) % 100 >= 50 for i in range(40))
    per_action = Counter(d["action"] for d in host.deliveries)
    assert per_action["send email"] == 40
    assert per_action["create followup"] == per_action["add to selection"] == hot
    assert per_action["send sms"] == 40 - hot
    assert len({d["key"] for d in host.deliveries}) == len(host.deliveries)
    assert e.store.outbox() == [] and e.store.sent == len(host.deliveries)
    assert_counts_match(e, "reference")


@pytest.fixture(scope="module")
def reference_machines():
    assert REFERENCE.exists(), f"the benchmark's reference flow is missing: {REFERENCE}"
    return project_machines(REFERENCE)


def test_the_reference_flow_runs_on_each_store(store_factory, reference_machines):
    host = Host(store_factory, reference_machines)
    reference_scenario(host)
    expect_reference_outcome(host)


@pytest.mark.parametrize("reopen_at", [("enrolled",), ("waiting", "late")])
def test_a_reopened_store_continues_where_it_was(durable_factory, memory_factory,
                                                 reference_machines, reopen_at):
    durable = Host(durable_factory, reference_machines)
    reference_scenario(durable, reopen_at)
    expect_reference_outcome(durable)
    memory = Host(memory_factory, reference_machines)
    reference_scenario(memory)
    assert end_state(durable) == end_state(memory)


# ----------------------------------------------------------------------------- the examples

def examples_scenario(host: Host) -> None:
    """The newsletter's people and events (as `flowlang simulate` feeds them),
    two deals through the deal sequence and a lead through the pipeline."""
    e = host.engine
    for _, person in read_jsonl(str(EXAMPLES / "newsletter" / "people.jsonl")):
        e._person(person["id"], person["data"], person.get("memberships"))
    deal = {"stage": "Proposal made", "person": {"first_name": "Ann", "full_name": "Ann Berg"},
            "company": {"name": "Holm Design AB"}}
    assert e.enroll("deal_sequence", "deal-big", {**deal, "value": 250000, "title": "Big"}).admitted
    assert e.enroll("deal_sequence", "deal-small", {**deal, "value": 60000, "title": "Small"}).admitted
    assert not e.enroll("deal_sequence", "deal-tiny", {**deal, "value": 100, "title": "Tiny"}).admitted
    assert e.enroll("lead_pipeline", "lead-1", {"name": "Lead One"}).admitted
    events = [event for _, event in read_jsonl(str(EXAMPLES / "newsletter" / "events.jsonl"))]
    events += [{"at": "2026-03-03T09:00", "participant": "lead-1", "type": "email.sent", "email": "Hi"},
               {"at": "2026-03-04T09:00", "participant": "deal-big", "type": "task.done",
                "step": "draft-email-proposal-sent"},
               {"at": "2026-03-05T09:00", "participant": "lead-1", "type": "email.replied",
                "email": "Hi"},
               {"at": "2026-03-06T09:00", "participant": "nobody", "type": "email.opened",
                "email": "Hi"}]
    for event in sorted(events, key=lambda ev: parse_time(ev["at"], "Europe/Oslo", "at")):
        event = dict(event)
        e.run_until(parse_time(event.pop("at"), "Europe/Oslo", "at"))
        e.ingest(event)
    host.run(days=40)


@pytest.fixture(scope="module")
def example_machines():
    return project_machines(EXAMPLES)


def test_the_examples_end_alike_on_each_store(store_factory, memory_factory, example_machines):
    start = dt.datetime(2026, 3, 2, 8, tzinfo=UTC)
    host = Host(store_factory, example_machines, start)
    examples_scenario(host)
    state = end_state(host)
    # something happened in every kind of flow
    assert state["counts"]["newsletter_welcome"]["statuses"]["completed_success"] == 1
    assert state["counts"]["deal_sequence"]["statuses"]["active"] == 2
    assert {d["flow"] for d in host.deliveries} >= {"newsletter_welcome", "newsletter_winback",
                                                    "newsletter_onboarding", "deal_sequence",
                                                    "lead_pipeline"}
    assert any(d.reason.startswith("no flow") for d in host.engine.dead_letters())
    for flow in example_machines:
        assert_counts_match(host.engine, flow)
    reference = Host(memory_factory, example_machines, start)
    examples_scenario(reference)
    assert state == end_state(reference)


def lifecycle_scenario(host: Host, reopen: bool = False) -> None:
    """Pause, events while paused, a new version with a rule for a removed step,
    resume, an end half-way, a second run, retried deliveries: everything that
    changes what a store keeps. `reopen`: a restart between each part."""
    def restart():
        if reopen:
            host.reopen()

    e = host.engine
    e.enroll("f", "past_first", {})
    e.enroll_many("mix", [(f"m{i}", {"first_name": f"M{i}"}) for i in range(6)])
    e.enroll("held", "h", {"score": 0})
    host.run(days=1)
    restart()
    e = host.engine
    e.enroll("f", "at_first", {})
    e.ingest({"type": "email.opened", "participant": "m1", "email": "Hello"})
    e.ingest({"type": "selection.added", "participant": "m2", "selection": "Customers"})
    e.pause("f")
    e.pause("held")
    e.enroll("f", "queued", {})
    e.ingest({"type": "data.changed", "participant": "h", "set": {"score": 5}})
    e.ingest({"type": "data.changed", "participant": "h", "set": {"score": 20}})
    e.ingest({"type": "email.teleported", "participant": "h"})
    restart()
    e = host.engine
    e.deploy(machines(V2)["f"], removed={"second": "third"})
    host.run(days=1)
    e.resume("f")
    e.resume("held")
    host.run(hours=6)
    restart()
    e = host.engine
    e.enroll("mix", "m7", {"first_name": "M7"})  # its e-mail is not delivered yet
    e.end("mix")
    e.start("mix")
    e.enroll("mix", "m9", {"first_name": "M9"})
    e.ingest({"type": "form.submitted", "participant": "m1", "form": "signup"})
    host.run(days=8)


def flaky(record):
    """A handler that fails the first attempt of every other participant's actions."""
    def handler(delivery):
        if delivery.attempt == 1 and delivery.participant[-1] in "13579":
            raise ConnectionError("try again")
        record(delivery)
    return handler


def lifecycle_flows() -> dict[str, dict]:
    return {"f": machines(V1)["f"], "mix": machines(MIX)["mix"],
            "held": machines(HELD.replace("flow f", "flow held"))["held"]}


def test_lifecycle_end_state_matches_memory(durable_factory, memory_factory):
    def play(backend: Backend, reopen: bool) -> dict:
        host = Host(backend, lifecycle_flows(), max_attempts=3)
        host.handle(flaky(host.record))
        lifecycle_scenario(host, reopen)
        return end_state(host)

    expected = play(memory_factory, False)
    assert expected["flows"] == {"f": "running", "mix": "running", "held": "running"}
    assert any(row[1] == "cancelled" for row in expected["outbox"])
    assert expected["dead"] and expected["sent"] > 10
    assert play(durable_factory, True) == expected


# ----------------------------------------------------------------------------- lifecycle

def test_lifecycle_rules(store_factory):
    host = Host(store_factory, machines(SIMPLE), start_flows=False)
    e = host.engine
    assert e.status("simple") == "stopped"
    assert not e.enroll("simple", "a", {"first_name": "A"}).admitted
    with pytest.raises(EngineError):
        e.pause("simple")
    e.start("simple")
    with pytest.raises(EngineError, match="running"):
        e.delete("simple")
    e.pause("simple")
    with pytest.raises(EngineError, match="paused"):
        e.start("simple")
    e.resume("simple")
    e.end("simple")
    assert e.status("simple") == "stopped"
    e.delete("simple")
    with pytest.raises(EngineError):
        e.status("simple")


def test_a_pause_keeps_enrolments_and_events_unclaimed_and_resume_applies_them_in_order(
        store_factory):
    host = Host(store_factory, machines(HELD))
    e = host.engine
    e.enroll("f", "a", {"score": 0})
    e.pause("f")
    assert e.enroll("f", "q", {"score": 0}).status == "queued"
    for pid in ("a", "q"):
        e.ingest({"type": "data.changed", "participant": pid, "set": {"score": 5}})
        e.ingest({"type": "data.changed", "participant": pid, "set": {"score": 20}})
    if store_factory.durable:
        host.reopen()
        e = host.engine
    before = host.p("f", "a").to_json()
    host.run(days=12)  # past the wait's 10 days: still nothing moves
    assert host.p("f", "a").to_json() == before and host.p("f", "a").history == ()
    assert host.p("f", "q").status == "queued"
    assert host.deliveries == []
    e.resume("f")
    host.run(hours=1)
    assert host.steps() == ["split-which/twenty/run-script-twenty"] * 2
    assert host.p("f", "a").data["score"] == 20 and host.p("f", "q").data["score"] == 20
    assert_counts_match(e, "f")


def test_a_pause_freezes_timers(store_factory):
    host = Host(store_factory, machines(SIMPLE))
    e = host.engine
    e.enroll("simple", "a", {"first_name": "A"})
    host.run(hours=6)
    e.pause("simple")
    host.run(days=4)
    e.resume("simple")  # a's remaining 18 hours start now
    host.run(hours=17)
    assert host.p("simple", "a").status == "active"
    host.run(hours=2)
    assert host.p("simple", "a").status == "completed"


def test_end_drops_out_the_active_and_cancels_their_pending_actions(store_factory):
    host = Host(store_factory, machines(SIMPLE),
                handler=lambda d: (_ for _ in ()).throw(RuntimeError("down")), max_attempts=9,
                chunk=2)
    e = host.engine
    e.enroll_many("simple", [(f"p{i}", {"first_name": "X"}) for i in range(5)])
    e.pause("simple")
    assert e.enroll("simple", "queued", {"first_name": "Q"}).status == "queued"
    e.resume("simple")
    host.run(minutes=2)
    e.end("simple")
    assert e.status("simple") == "stopped"
    final = runs(e, "simple")
    assert {(p.status, p.error) for p in final} == {("dropout", ENDED)}
    assert len(final) == 6
    assert {r.status for r in e.store.outbox()} == {"cancelled"}
    assert len(e.store.outbox()) == 6
    host.run(days=3)
    assert all(r.status == "cancelled" for r in e.store.outbox())
    # a restart admits only new people
    e.start("simple")
    assert not e.enroll("simple", "p0", {"first_name": "X"}).admitted
    assert e.enroll("simple", "new", {"first_name": "N"}).status == "active"
    assert_counts_match(e, "simple")


def test_delete_only_when_not_running_and_it_forgets_the_participants(store_factory):
    host = Host(store_factory, machines(HELD))
    e = host.engine
    e.enroll("f", "a", {"score": 0})
    with pytest.raises(EngineError, match="running"):
        e.delete("f")
    e.pause("f")
    e.ingest({"type": "data.changed", "participant": "a", "set": {"score": 20}})
    e.delete("f")
    if store_factory.durable:
        host.reopen()
        e = host.engine
    with pytest.raises(EngineError):
        e.status("f")
    assert list(e.store.participants("f")) == []
    e.deploy(host.machines["f"])
    e.start("f")
    assert list(e.store.participants("f")) == []
    host.run(days=1)
    assert host.deliveries == []  # the held event went with the flow
    assert e.enroll("f", "a").status == "active"


def deployed_v1(backend: Backend) -> Host:
    host = Host(backend, machines(V1))
    host.engine.enroll("f", "past_first", {})
    host.run(days=1)  # past_first now rests at `second`
    host.engine.enroll("f", "at_first", {})
    return host


def test_a_new_version_while_paused_moves_those_at_a_removed_step_by_the_rule(store_factory):
    host = deployed_v1(store_factory)
    e = host.engine
    v2 = machines(V2)["f"]
    with pytest.raises(EngineError, match="pause"):
        e.deploy(v2)
    e.pause("f")
    with pytest.raises(EngineError, match="second"):
        e.deploy(v2)
    e.deploy(v2, removed={"second": "third"})
    e.enroll("f", "queued", {})
    if store_factory.durable:
        host.reopen()
        e = host.engine
    e.resume("f")
    host.run(days=6)
    subjects = {(d["participant"], d["settings"]["subject"]) for d in host.deliveries}
    assert ("at_first", "v2 two") in subjects and ("past_first", "v1 two") in subjects
    assert ("past_first", "v2 three") in subjects and ("queued", "v2 one") in subjects
    past = host.p("f", "past_first")
    assert past.status == "completed" and "third" in past.path and past.version == v2["hash"]
    assert all(p.status == "completed" for p in e.store.participants("f"))
    assert_counts_match(e, "f")


def test_a_new_version_while_paused_can_drop_out_those_at_a_removed_step(store_factory):
    host = deployed_v1(store_factory)
    e = host.engine
    e.pause("f")
    e.deploy(machines(V2)["f"], removed={"second": None})
    e.resume("f")
    host.run(days=6)
    past = host.p("f", "past_first")
    assert past.status == "dropout" and "removed" in past.error
    assert host.p("f", "at_first").status == "completed"
    assert_counts_match(e, "f")


# ----------------------------------------------------------------------------- dead letters and counts

@pytest.mark.parametrize("event, reason", [
    ({"type": "email.opened", "participant": "stranger", "email": "Hello"}, "no flow"),
    ({"type": "email.teleported", "participant": "a"}, "unknown event type"),
    ({"type": "email.opened"}, "names no `participant`"),
    ({"type": "email.opened", "participant": "a"}, "needs `email`"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_events_are_kept_as_dead_letters_with_the_reason(store_factory, event, reason):
    host = Host(store_factory, machines(SIMPLE))
    host.engine.enroll("simple", "a", {"first_name": "A"})
    assert host.engine.ingest(event).startswith("dead letter")
    if store_factory.durable:
        host.reopen()
    (letter,) = host.engine.dead_letters()
    assert reason in letter.reason and letter.event == event and letter.kind == "event"
    assert letter.at == START


def test_counts_always_equal_the_participants_statuses(store_factory):
    host = Host(store_factory, machines(MIX))
    e = host.engine
    e.enroll("mix", "completes", {"first_name": "A"})
    e.enroll("mix", "drops", {"first_name": "B"})
    e.enroll("mix", "fails", {})
    e.enroll("mix", "succeeds", {"first_name": "C"})
    e.enroll("mix", "excluded_later", {"first_name": "D"})
    assert_counts_match(e, "mix")
    e.ingest({"type": "email.opened", "participant": "completes", "email": "Hello"})
    e.ingest({"type": "selection.added", "participant": "succeeds", "selection": "Customers"})
    e.ingest({"type": "selection.added", "participant": "excluded_later", "selection": "Stop"})
    host.run(hours=1)
    assert_counts_match(e, "mix")
    e.pause("mix")
    e.enroll("mix", "queued", {"first_name": "E"})
    host.run(days=5)
    assert_counts_match(e, "mix")
    e.resume("mix")
    host.run(days=5)
    e.ingest({"type": "form.submitted", "participant": "completes", "form": "signup"})  # a 2nd run
    if store_factory.durable:
        host.reopen()
        e = host.engine
    assert_counts_match(e, "mix")
    got = {p.id: p.status for p in e.store.participants("mix")}
    assert got == {"completes": "active", "drops": "dropout", "fails": "failed",
                   "succeeds": "completed_success", "excluded_later": "dropout", "queued": "dropout"}
    assert [p.status for p in e.store.finished_runs("mix")] == ["completed"]
    e.end("mix")
    assert_counts_match(e, "mix")


# ----------------------------------------------------------------------------- delivery

def test_a_failing_handler_is_retried_with_backoff_then_fails_into_the_dead_letters(store_factory):
    attempts = []

    def smtp_down(delivery):
        attempts.append((host.clock.now(), delivery.attempt, delivery.key))
        raise ConnectionError("smtp down")

    host = Host(store_factory, machines(SIMPLE), handler=smtp_down, max_attempts=4,
                backoff=dt.timedelta(minutes=5))
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    host.run(hours=1)
    if store_factory.durable:
        host.reopen()
    host.run(days=3)
    assert [a[1] for a in attempts] == [1, 2, 3, 4]
    assert len({a[2] for a in attempts}) == 1
    assert [a[0] - START for a in attempts] == [dt.timedelta(minutes=m) for m in (0, 5, 15, 35)]
    p = host.p("simple", "a")
    assert p.status == "failed" and "smtp down" in p.error and "send email" in p.error
    (row,) = host.engine.store.outbox()
    assert row.status == "failed" and row.attempts == 4 and "smtp down" in row.error
    (letter,) = host.engine.dead_letters()
    assert letter.kind == "action" and "smtp down" in letter.reason
    assert letter.event["key"] == attempts[0][2]
    assert_counts_match(host.engine, "simple")


def test_at_most_once_is_never_tried_twice(store_factory):
    calls = []

    def down(delivery):
        calls.append(delivery.key)
        raise ConnectionError("down")

    flow = with_delivery(machines(SIMPLE)["simple"], "send email", "at most once")
    host = Host(store_factory, {"simple": flow}, handler=down, max_attempts=5)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    host.run(days=2)
    assert len(calls) == 1
    (row,) = host.engine.store.outbox()
    assert row.status == "failed" and row.attempts == 1
    assert host.p("simple", "a").status == "failed"
    assert [d.kind for d in host.engine.dead_letters()] == ["action"]


class WorkerDied(BaseException):
    """Stands for the worker's process dying inside a handler: not an error the
    engine handles, so the transaction it is in is rolled back."""


@pytest.mark.parametrize("delivery", ["at least once", "at most once"])
def test_a_worker_that_dies_while_delivering(durable_factory, delivery):
    """At least once: the batch was not committed, so the row is delivered again
    (the host dedupes on the key). At most once: the row was marked as being
    sent before the handler ran; after its lease it goes to the dead letters,
    never to the handler again."""
    seen = []

    def handler(d):
        seen.append(d.key)
        if len(seen) == 1:
            raise WorkerDied()

    flow = with_delivery(machines(SIMPLE)["simple"], "send email", delivery)
    host = Host(durable_factory, {"simple": flow}, handler=handler)
    with pytest.raises(WorkerDied):
        host.engine.enroll("simple", "a", {"first_name": "Ann"})
        host.engine.tick()
    host.reopen()
    host.engine.recover()
    host.run(minutes=1)
    if delivery == "at least once":
        assert len(seen) == 2 and seen[0] == seen[1]
        assert host.engine.store.outbox() == [] and host.engine.store.sent == 1
        assert host.engine.dead_letters() == []
    else:
        assert len(seen) == 1
        (row,) = host.engine.store.outbox()
        assert row.status == "sending"  # its lease has not run out: nobody touches it
        host.run(minutes=SENDING_LEASE.total_seconds() / 60)
        assert len(seen) == 1
        (row,) = host.engine.store.outbox()
        assert row.status == "failed" and "at most once" in row.error
        (letter,) = host.engine.dead_letters()
        assert letter.kind == "action" and letter.event["key"] == seen[0]


def test_poison_handlers_fail_alone_and_the_rest_of_the_batch_commits(store_factory):
    release = threading.Event()

    def handler(d):
        if d.participant == "hangs":
            release.wait(5)
            return  # too late: the engine gave up on it
        if d.participant == "raises":
            raise ValueError("poison")
        host.record(d)

    host = Host(store_factory, machines(SIMPLE), handler=handler, max_attempts=1,
                handler_timeout=0.5)
    try:
        host.engine.enroll_many("simple", [(pid, {"first_name": pid})
                                           for pid in ("ok1", "hangs", "raises", "ok2")])
        host.run(days=2)
    finally:
        release.set()
    if store_factory.durable:
        host.reopen()
    final = {p.id: p for p in host.engine.store.participants("simple")}
    assert {pid: p.status for pid, p in final.items()} == {
        "ok1": "completed", "hangs": "failed", "raises": "failed", "ok2": "completed"}
    assert "did not return within 0.5 s" in final["hangs"].error
    assert "poison" in final["raises"].error
    reasons = {d.event["participant"]: d.reason for d in host.engine.dead_letters()}
    assert set(reasons) == {"hangs", "raises"}
    assert "HandlerTimeout" in reasons["hangs"] and "ValueError: poison" in reasons["raises"]
    assert sorted(d["participant"] for d in host.deliveries) == ["ok1", "ok2"]


# ----------------------------------------------------------------------------- PostgreSQL only

@pytest.fixture
def pg(postgres_url):
    from flowlang.runtime.postgres_store import PostgresStore
    opened = []

    def open_store(**options):
        store = PostgresStore(postgres_url, **options)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def test_postgres_claims_skip_rows_another_worker_holds(pg):
    first, second = pg(), pg()
    clock = VirtualClock(START)
    engine = Engine(first, clock)
    engine.deploy(machines(SIMPLE)["simple"])
    engine.start("simple")
    engine.enroll_many("simple", [(f"p{i}", {"first_name": "X"}) for i in range(6)])
    later = START + dt.timedelta(days=2)
    with first.transaction():
        mine = first.due(later, 4)
        with second.transaction():
            theirs = second.due(later, 10)
        assert [p.id for p in mine] == ["p0", "p1", "p2", "p3"]
        assert [p.id for p in theirs] == ["p4", "p5"]
    with second.transaction():
        assert [p.id for p in second.due(later, 10)] == [f"p{i}" for i in range(6)]


def test_postgres_two_engines_never_advance_one_participant_twice(pg):
    """A second engine steps a participant from a stale read (as a worker that
    read it before the first committed would): its transaction violates the
    transition record's key and is rolled back as a `Retry`, never committed."""
    from flowlang.runtime import interpreter as interp
    from flowlang.runtime.store import Retry

    first, second = pg(), pg()
    clock = VirtualClock(START)
    a, b = Engine(first, clock), Engine(second, clock)
    a.deploy(machines(SIMPLE)["simple"])
    a.start("simple")
    a.enroll("simple", "p", {"first_name": "P"})
    clock.advance(dt.timedelta(days=2))
    with second.transaction():
        stale = second.participant("simple", "p")
    assert a.tick() == 1
    with pytest.raises(Retry, match="UniqueViolation"):
        with second.transaction():
            b._save(interp.step(b.program(stale.version), stale, clock.now()), stale)
    assert [p.status for p in runs(a, "simple")] == ["completed"]
    assert first.transitions() == 1


def test_postgres_clock_is_the_database_clock(pg):
    store = pg()
    now = store.clock.now()
    server = store.db.execute("SELECT clock_timestamp()").fetchone()[0]
    store.db.rollback()
    assert now.tzinfo is not None and now.utcoffset() == dt.timedelta(0)
    assert abs(now - server) < dt.timedelta(seconds=2)
    assert store.clock.now() >= now
    assert Engine(store).clock is store.clock


def test_postgres_wakes_idle_workers_with_a_notification(pg):
    idle, busy = pg(), pg()
    assert idle.wait_for_hint(0.05) is False
    machine = machines(SIMPLE)["simple"]
    engine = Engine(busy, VirtualClock(START))
    engine.deploy(machine)  # a flow change: NOTIFY at commit
    assert idle.wait_for_hint(5) is True
    assert idle.wait_for_hint(0.05) is False  # taken
    assert busy.wait_for_hint(0.05) is False  # its own notifications are not news to it
    with busy.transaction():
        busy.put_flow(FlowRecord("simple", "running", machine["hash"]))
    assert idle.wait_for_hint(5) is True
    # nothing is said for a rolled-back change
    with pytest.raises(RuntimeError):
        with busy.transaction():
            busy.put_flow(FlowRecord("simple", "paused", machine["hash"]))
            raise RuntimeError("no")
    assert idle.wait_for_hint(0.1) is False


def test_postgres_workers_started_together_migrate_once(postgres_url):
    from flowlang.runtime.postgres_store import PostgresStore

    barrier = threading.Barrier(4)
    stores, errors = [], []

    def start():
        barrier.wait()
        try:
            stores.append(PostgresStore(postgres_url))
        except Exception as e:  # collected: a thread's exception would be lost
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(stores) == 4
        rows = stores[0].db.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        assert rows == [("schema", str(len(PostgresStore.migrations)))]  # and no counter rows until something is sent
    finally:
        for store in stores:
            store.close()


def _sqlite_columns() -> dict[str, list[str]]:
    db = sqlite3.connect(":memory:")
    for ddl in SqliteStore.migrations:
        db.executescript(ddl)
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%'")]
    return {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def test_postgres_schema_has_the_sqlite_tables_and_columns(pg):
    from flowlang.runtime.postgres_store import PostgresStore
    assert len(PostgresStore.migrations) == len(SqliteStore.migrations)
    store = pg()
    rows = store.db.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position").fetchall()
    store.db.rollback()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    assert found == _sqlite_columns()


def test_a_worker_of_an_older_schema_cannot_write_a_place_name(durable_factory):
    """Schema 4 keeps places as numbers: a worker of an older flowlang that is
    still running (the upgrade notes say to stop it) fails instead of writing a
    step's name where a number belongs."""
    host = Host(durable_factory, machines(MIX))
    host.engine.enroll("mix", "ann", {"first_name": "Ann", "score": 3})
    before = [p.to_json() for p in runs(host.engine, "mix")]
    store = host.engine.store
    with pytest.raises(Exception, match="(?i)check constraint|integer"):
        with store.transaction():
            store._execute("UPDATE participants SET place = 'a step name'")
    assert [p.to_json() for p in runs(host.engine, "mix")] == before
