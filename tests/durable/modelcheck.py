"""The model-based check: seeded random operations on a durable engine and on
the in-memory engine side by side, with crashes simulated in-process on the
durable side (an exception at a crash point abandons the operation, its
transaction, the engine and the store; a fresh engine over the reopened store
recovers and does the operation again). After every operation both must agree."""
from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter

from durable import harness
from flowlang.runtime import engine as engine_module
from flowlang.runtime.clock import VirtualClock
from flowlang.runtime.engine import Engine, EngineError
from flowlang.runtime.store import MemoryStore
from flowlang.runtime.stores import open_store

MODEL_SEEDS = range(20)
MODEL_STEPS = 50
MODEL_START = dt.datetime(2026, 3, 26, 7, 0, tzinfo=dt.timezone.utc)
#: just before and after each Oslo DST change of 2026
DST_JUMPS = [(dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.timezone.utc),
              dt.datetime(2026, 3, 29, 2, 0, tzinfo=dt.timezone.utc)),
             (dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.timezone.utc),
              dt.datetime(2026, 10, 25, 2, 0, tzinfo=dt.timezone.utc))]
MODEL_FLOWS = ("main", "follow")
PEOPLE = tuple(f"m{i}" for i in range(6))
EVENTS = [
    {"type": "form.submitted", "form": "signup"},
    {"type": "email.opened", "email": "Hello"},
    {"type": "link.clicked", "link": "pricing"},
    {"type": "selection.added", "selection": "Customers"},
    {"type": "selection.added", "selection": "Stop"},
    {"type": "selection.removed", "selection": "Stop"},
    {"type": "data.changed", "set": {"score": 7}},
    {"type": "data.changed", "set": {"first_name": "Renamed"}},
]
CRASH_POINTS = ("after_commit", "after_send", "before_ack", "mid_end")


class SimulatedCrash(BaseException):
    """Raised at an armed crash point: nothing catches it, so the transaction in
    progress is abandoned (rolled back) and so is the engine."""


class Crasher:
    """Stands in for `engine.crashpoint`: raises at the nth pass of the armed point
    while armed (only the durable engine's operations run armed)."""

    def __init__(self):
        self.target: tuple[str, int] | None = None
        self.armed = False
        self.fired: Counter = Counter()

    def __call__(self, name: str) -> None:
        if not self.armed or self.target is None or self.target[0] != name:
            return
        remaining = self.target[1] - 1
        self.target = (name, remaining) if remaining else None
        if not remaining:
            self.fired[name] += 1
            raise SimulatedCrash(name)


def model_ops(seed: int) -> list[tuple]:
    """A seeded random sequence of operations for both engines."""
    rng = random.Random(seed)
    ops: list[tuple] = [("enroll", pid, rng.randrange(0, 100)) for pid in PEOPLE[:3]]
    for _ in range(MODEL_STEPS):
        kind = rng.choices(["enroll", "event", "forward", "backward", "dst", "tick", "control",
                            "crash"], [3, 6, 5, 1, 1, 1, 2, 3])[0]
        if kind == "enroll":
            ops.append(("enroll", rng.choice(PEOPLE), rng.randrange(0, 100)))
        elif kind == "event":
            ops.append(("event", {**rng.choice(EVENTS), "participant": rng.choice(PEOPLE),
                                  "n": len(ops)}))
        elif kind == "forward":
            ops.append(("forward", rng.choice([0, 30, 6 * 60, 24 * 60, 3 * 24 * 60 + 7])))
        elif kind == "backward":
            ops.append(("backward", rng.choice([1, 90, 24 * 60])))
        elif kind == "dst":
            ops.append(("dst", rng.randrange(len(DST_JUMPS))))
        elif kind == "tick":
            ops.append(("tick",))
        elif kind == "control":
            ops.append(("control", rng.choice(MODEL_FLOWS),
                        rng.choice(["pause", "resume", "pause", "resume", "end", "start"])))
        else:
            # arm a crash point, and most times go where it is passed
            point = rng.choice(CRASH_POINTS)
            ops.append(("crash", point, rng.randint(1, 2)))
            if point == "mid_end" and rng.random() < 0.7:
                flow = rng.choice(MODEL_FLOWS)
                ops += [("control", flow, "end"), ("control", flow, "start")]
            elif rng.random() < 0.7:
                ops.append(("forward", rng.choice([24 * 60, 3 * 24 * 60])))
    ops.append(("forward", 40 * 24 * 60))  # let everything due happen
    return ops


class Side:
    """One engine of the comparison, its clock, and the keys its handler got."""

    def __init__(self, make_store, batch: int, chunk: int):
        self.make_store = make_store
        self.batch = batch
        self.chunk = chunk
        self.clock = VirtualClock(MODEL_START)
        self.keys: list[str] = []
        self.open()

    def open(self) -> None:
        self.engine = Engine(self.make_store(), VirtualClock(self.clock.now()), seed=5,
                             batch=self.batch, chunk=self.chunk)
        self.clock = self.engine.clock
        self.engine.register("*", self.handler)

    def handler(self, delivery) -> None:
        delivery.settings
        self.keys.append(delivery.key)

    def apply(self, op: tuple, now: dt.datetime):
        """Do `op`, which started at `now` (a crashed operation is done again from
        where it stopped, towards the same times); an EngineError is an answer,
        returned for comparison."""
        engine, kind = self.engine, op[0]
        try:
            if kind == "enroll":
                return engine.enroll("main", op[1], {"first_name": op[1].upper(), "score": op[2]}).status
            if kind == "event":
                return engine.ingest(dict(op[1]))
            if kind == "forward":
                engine.run_until(now + dt.timedelta(minutes=op[1]))
            elif kind == "backward":
                self.clock.set(now - dt.timedelta(minutes=op[1]))
                engine.tick()
            elif kind == "dst":
                before, after = DST_JUMPS[op[1]]
                self.clock.set(before)
                engine.run_until(after)
            elif kind == "tick":
                engine.tick()
            elif kind == "control":
                getattr(engine, op[2])(op[1])
        except EngineError as e:
            return f"refused: {e}"
        return None

    def snapshot(self) -> dict:
        store = self.engine.store
        out = {}
        for flow in MODEL_FLOWS:
            record = store.flow(flow)
            out[flow] = record.status
            for p in list(store.participants(flow)) + list(store.finished_runs(flow)):
                state = p.to_json()
                # an emptied membership kind and a missing one are the same
                state["memberships"] = {k: v for k, v in state["memberships"].items() if v}
                out[flow, p.id, p.run] = state
        out["dead events"] = sorted(json.dumps([d.event, d.reason], sort_keys=True)
                                    for d in store.dead_letters() if d.kind == "event")
        return out


def run_model(seed: int, url: str) -> dict:
    """Both engines on the same operations; returns figures for the report."""
    crasher = Crasher()
    durable = Side(lambda: open_store(url), batch=2, chunk=2)
    memory = Side(MemoryStore, batch=10_000, chunk=1_000)
    for side in (durable, memory):
        for name in MODEL_FLOWS:
            side.engine.deploy(harness.machine(name, "model"))
            side.engine.start(name)
    ops = model_ops(seed)
    original = engine_module.crashpoint
    engine_module.crashpoint = crasher
    try:
        for number, op in enumerate(ops):
            if op[0] == "crash":
                crasher.target = (op[1], op[2])
                continue
            now = memory.clock.now()
            crasher.armed = True
            try:
                got = durable.apply(op, now)
            except SimulatedCrash:
                # abandon the engine and its store mid-operation, open the store
                # afresh, finish what was left half-done, and do the operation again
                crasher.armed = False
                durable.engine.store.close()
                durable.open()
                durable.engine.recover()
                got = durable.apply(op, now) if op[0] != "control" else None
            finally:
                crasher.armed = False
            want = memory.apply(op, now)
            assert got == want, (seed, number, op, got, want)
            assert durable.clock.now() == memory.clock.now()
            a, b = durable.snapshot(), memory.snapshot()
            assert a == b, (seed, number, op, _diff(a, b), ops[:number + 1])
    finally:
        engine_module.crashpoint = original
    assert len(memory.keys) == len(set(memory.keys))
    assert set(durable.keys) == set(memory.keys), (seed, set(durable.keys) ^ set(memory.keys))
    rows = durable.engine.store.outbox()
    # rows still pending are the same (an action emitted at a time the clock later
    # went back before waits for the clock to come round again)
    pending = {r.key for r in rows if r.status == "pending"}
    assert pending == {r.key for r in memory.engine.store.outbox() if r.status == "pending"}
    # an at-most-once send whose worker stopped after the handler returned is not
    # sent again: its row stays `sending` until its lease runs out, then is
    # dead-lettered (its key did reach the host)
    sending = {r.key for r in rows if r.status == "sending"}
    assert sending <= set(durable.keys)
    lost = [d for d in durable.engine.dead_letters() if d.kind == "action"]
    assert all("stopped while delivering" in d.reason for d in lost), lost
    assert {d.event["key"] for d in lost} <= set(durable.keys)
    durable.engine.store.close()
    return {**{f"crashes {k}": v for k, v in crasher.fired.items()},
            "crashes": sum(crasher.fired.values()),
            "duplicates": len(durable.keys) - len(set(durable.keys)),
            "keys": len(set(memory.keys)), "lost at-most-once": len(lost) + len(sending)}


def _diff(a: dict, b: dict) -> dict:
    return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}


def drop_everything(url: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP SCHEMA public CASCADE")
        db.execute("CREATE SCHEMA public")
