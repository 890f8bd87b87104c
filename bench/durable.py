"""Durable engine throughput (issue 7): flowlang's engine on its SQLite and
PostgreSQL stores, beside the raw rate of the same database in the same run.

The workload is bench/engine.py's (read ../shared/bench/reference.flow): N
participants enter at t=0 (send email, wait 3 days); at day 3 the timers fire,
half (score >= 50) complete through "Hot" and the rest get an SMS and wait for a
click on `offer` within 7 days; a quarter click at day 5 (update person,
complete), the others time out at day 10 and drop out; the run goes on to day
12. Every action goes through the outbox and reaches a handler registered for
"*" that renders its text, as bench/engine.py's does, and records its
idempotency key. The clock is virtual: the benchmark sets it and calls
a `flowlang.runtime.worker.Worker` runs until idle (ticks: claim and advance
everyone due, a batch per transaction, then deliver the outbox; then the
store's idle housekeeping), as a worker on a real clock does when it wakes.

What is timed: everything after enrolment (delivering the welcome emails, the
timers, the clicks, the time-outs, day 12). Enrolment is done once up front,
timed on its own and left out of the rates and ratios, for every store alike
(with PostgreSQL one process enrols before the workers start; in order through
`enroll_many`, at random one `enroll` at a time, each at its own time). The
steps counted are the states passed in the timed part: 4 per participant on
average (a participant's path holds 2 states after enrolment, 6 at the end).

Raw, the database's own rate: a table of the same N rows (a pid with a unique
index, a due time with a partial index as the participants table has, a JSON
text of a participant's size), filled in the same order (untimed); then due rows
are claimed earliest first (`SELECT … ORDER BY wake LIMIT batch`; on PostgreSQL
`FOR UPDATE SKIP LOCKED`, from as many processes as flowlang has workers) and
rewritten with a new due time and a new text of the same size by one plain
`UPDATE … WHERE seq IN (…)` (PostgreSQL: `= ANY(…)`), one transaction per
batch of the engine's batch size, with the store's own pragmas (imported from
flowlang.runtime.sqlite_store) / on the same server, until every row has been
updated once per participant-step of flowlang's timed part (4 passes over the
table, each in the claim order below). Rows/s and steps/s then have the same
numerator, and the ratio (flowlang steps/s over raw rows/s) is raw time over
flowlang time. Beside it, for scale, a second raw run ("per row") reads the
claimed rows and writes each back with its own values by `executemany`, as a
store has to (each participant has its own state); it is not the target's
denominator.

Claim orders:
  - in order: everyone enrols at t=0 in pid order, so those who wait together
    wake together and a claimed batch is a run of consecutive rows (the
    reference flow as it is). PostgreSQL runs only this order.
  - random: the enrolment order is a seeded shuffle, but participant i enrols at
    t=0 + i ms, so they wake (and click) in the order of i: a claimed batch is
    scattered over the whole table. The worker wakes once per batch of them
    (every 10 virtual seconds at the default batch), so that the time-outs of
    day 10 come back in those scattered groups too. The raw table is filled in
    the same shuffled order and claimed in the order of i.

Sizes: with everyone enrolled and the welcome emails delivered (untimed, between
the first two phases), SQLite's file after `PRAGMA wal_checkpoint(TRUNCATE)`
over N (and the same less the free pages: `freelist_count`), and PostgreSQL's
`pg_total_relation_size` of all tables over N, as they are (no VACUUM).
Timings are the best of --repeat runs (flowlang and raw alternate, so that load
elsewhere on the machine hits both); SQLite files live in --dir (fsync is real
there: not a tmpfs), PostgreSQL is a throw-away server (tests/pgserver.py:
initdb + pg_ctl in a temporary folder, fsync on) with a new database per run.
Checks, per flowlang run: everyone waits at `wait 3 days` when the sizes are
measured; final statuses and the total of path lengths equal
bench/engine.py's `expected()`, every action was delivered exactly once (its
key reached the handler once, the store's sent counter agrees), and nothing is
left due.

    python bench/durable.py [--n 200000] [--quick] [--repeat 3] [--budget 1800]
        [--stores sqlite,postgres] [--orders in-order,random] [--workers 1,2,4]
        [--batch 10000] [--dir /tmp] [--seed 1] [--json]
        [--profile [--profile-n 200000]]

Targets: flowlang at least 50% of the raw rate, outbox on (the issue's
orientation: about 45,000 steps/s in order and 12,000 random on SQLite, 35,000
on PostgreSQL with 2 workers), and at most 200 bytes per waiting participant
in the SQLite file.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import multiprocessing
import os
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from engine import (CLICK_AT, END, FLOW, START, TEXT_OF, clickers, commit, expected,  # noqa: E402
                    population)
from parse import machine  # noqa: E402

from flowlang.compiler import compile_project  # noqa: E402
from flowlang.gcpause import fewer_collections  # noqa: E402
from flowlang.project import load_project  # noqa: E402
from flowlang.runtime.clock import VirtualClock  # noqa: E402
from flowlang.runtime.engine import Engine  # noqa: E402
from flowlang.runtime.sqlite_store import PRAGMAS, SqliteStore  # noqa: E402
from flowlang.runtime.worker import Worker  # noqa: E402

DEFAULT_FLOW = HERE.parent.parent / "shared" / "bench" / "reference.flow"
DEFAULT_N = 200_000
QUICK_N = 20_000
#: the engine's own default batch (participants claimed, outbox rows delivered
#: per transaction); the raw baseline uses the same
BATCH = Engine.__init__.__kwdefaults__["batch"]
#: states a participant passes at enrolment (send email, wait 3 days): not timed
ENROL_STEPS = 2
#: random order: participant i enrols this long after participant i - 1
STAGGER = dt.timedelta(milliseconds=1)

TARGET_RATIO = 0.5
TARGET_BYTES = 200
#: the issue's orientation: about half of what this machine's database did raw
ORIENTATION = {("sqlite", "in order", 1): 45_000, ("sqlite", "random", 1): 12_000,
               ("postgres", "in order", 2): 35_000}
ORDERS = {"in-order": "in order", "random": "random"}


# ---------------------------------------------------------------------- the workload

class Phase(NamedTuple):
    name: str
    times: tuple  # the clock is set to each in turn, and the worker ticks
    clicks: bool = False  # the day-5 clicks are ingested before the tick


def enrolment_order(n: int, order: str, seed: int) -> list[int]:
    """Participant numbers in the order they enrol (and fill the raw table)."""
    numbers = list(range(n))
    if order == "random":
        random.Random(seed).shuffle(numbers)
    return numbers


def enrolled_at(i: int, order: str) -> dt.datetime:
    return START if order == "in order" else START + i * STAGGER


def schedule(n: int, order: str, batch: int) -> list[Phase]:
    """When the worker wakes. In order: once per event of the reference run. At
    random: once per `batch` participants whose timers came due (see the module's
    docstring), and after the last enrolment for the welcome emails."""
    if order == "in order":
        offsets = (dt.timedelta(),)
    else:
        offsets = tuple(min((k + 1) * batch, n) * STAGGER - STAGGER
                        for k in range(-(-n // batch)))
    day3 = START + dt.timedelta(days=3)
    day10 = START + dt.timedelta(days=10)
    return [Phase("welcome (t=0)", (START + offsets[-1],)),
            Phase("timers (day 3)", tuple(day3 + o for o in offsets)),
            Phase("clicks (day 5)", (CLICK_AT,), clicks=True),
            Phase("time-outs (day 10)", tuple(day10 + o for o in offsets)),
            Phase("end (day 12)", (END,))]


def timed_steps(n: int) -> int:
    return expected(n)["steps"] - ENROL_STEPS * n


def raw_passes(n: int) -> int:
    """Passes over the raw table: one row update per participant-step timed."""
    return max(1, round(timed_steps(n) / n))


class Deliveries:
    """The host's handler for "*": the action's text rendered as bench/engine.py's
    handler does, and its idempotency key kept for the checks."""

    def __init__(self):
        self.records: list[tuple] = []

    def __call__(self, d) -> None:
        where = TEXT_OF.get(d.action)
        text = None if where is None else getattr(d, where[0])[where[1]]
        self.records.append((d.key, d.participant, d.action, d.at, text))

    def keys(self) -> list[str]:
        return [r[0] for r in self.records]


def make_engine(store, batch: int) -> tuple[Engine, Deliveries]:
    engine = Engine(store, clock=VirtualClock(START), batch=batch)
    deliveries = Deliveries()
    engine.register("*", deliveries)
    return engine, deliveries


def enrol(engine: Engine, n: int, order: str, seed: int, batch: int) -> None:
    people = list(population(n))
    if order == "in order":
        engine.enroll_many(FLOW, people)  # everyone at t=0, in pid order
        return
    store = engine.store
    numbers = enrolment_order(n, order, seed)
    with fewer_collections():  # as enroll_many does
        for first in range(0, n, batch):
            with store.transaction():
                for i in numbers[first:first + batch]:
                    engine.clock.set(enrolled_at(i, order))
                    engine.enroll(FLOW, *people[i])


def run_phase(engine: Engine, phase: Phase, clicks: list[str]) -> None:
    """Set the clock, take the clicks, and let a worker run until it is idle (it
    ticks until nothing moves, then does its store's idle housekeeping), as
    `flowlang run` does when it wakes."""
    for when in phase.times:
        engine.clock.set(when)
        if phase.clicks:
            engine.ingest_many({"type": "link.clicked", "participant": pid, "link": "offer"}
                               for pid in clicks)
        Worker(engine).run(until_idle=True)


def resting(engine: Engine) -> dict:
    """Where participants are, by status (what the sizes are measured over)."""
    return {place: {status: count for status, count in by_status.items() if count}
            for place, by_status in engine.counts(FLOW)["steps"].items()}


def check(engine: Engine, keys: list[str], n: int, waiting: dict, ir: dict) -> dict:
    """The run did what the reference run does, and delivered every action once;
    at the size measurement everyone waited at the wait after the first
    ENROL_STEPS states (so that the timed part passes the rest)."""
    exp = expected(n)
    store = engine.store
    statuses = {k: v for k, v in engine.counts(FLOW)["statuses"].items() if v}
    steps = sum(len(p.path) for p in store.participants(FLOW))
    distinct = len(set(keys))
    sent = getattr(store, "sent", None)
    left = [r for r in store.outbox() if r.status != "sent"]
    problems = []
    wait_step = ir["states"][ENROL_STEPS - 1]
    if wait_step["kind"] != "wait" or waiting != {wait_step["id"]: {"active": n}}:
        problems.append(f"after enrolment and the welcome emails: {waiting}, not everyone "
                        f"active at {wait_step['id']}")
    if statuses != exp["statuses"]:
        problems.append(f"statuses {statuses} != expected {exp['statuses']}")
    if steps != exp["steps"]:
        problems.append(f"{steps:,} steps != expected {exp['steps']:,}")
    if len(keys) != exp["actions"]:
        problems.append(f"{len(keys):,} deliveries != expected {exp['actions']:,} actions")
    if distinct != len(keys):
        problems.append(f"{len(keys) - distinct:,} actions were delivered more than once")
    if sent is not None and sent != exp["actions"]:
        problems.append(f"the store counted {sent:,} sent != {exp['actions']:,}")
    if left:
        problems.append(f"{len(left):,} outbox rows are not sent (first: {left[0].status})")
    if engine.next_wake() is not None:
        problems.append(f"something is still due at {engine.next_wake().isoformat()}")
    return {"ok": not problems, "problems": problems, "statuses": statuses, "steps": steps,
            "deliveries": len(keys), "sent": sent}


# ---------------------------------------------------------------------- SQLite

def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def sqlite_sizes(path: Path, n: int) -> dict:
    """Bytes per waiting participant: the whole file after folding the WAL back,
    and the same less its free pages; per table (dbstat) for the report."""
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        try:
            tables = {name: size / n for name, size in db.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")}
        except sqlite3.Error:
            tables = {}
    finally:
        db.close()
    size = os.path.getsize(path)
    wal = Path(str(path) + "-wal")
    return {"bytes": size / n, "bytes_live": (pages - free) * page / n,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "checkpoint_busy": busy, "free_pages": free, "pages": pages, "tables": tables}


def flowlang_sqlite(folder: Path, ir: dict, n: int, order: str, seed: int, batch: int,
                    profiler: cProfile.Profile | None = None) -> dict:
    path = folder / f"flowlang-{order.replace(' ', '-')}.db"
    _remove_db(path)
    store = SqliteStore(path)
    try:
        engine, deliveries = make_engine(store, batch)
        engine.deploy(ir)
        engine.start(FLOW)
        clicks = list(clickers(n))
        t0 = time.perf_counter()
        enrol(engine, n, order, seed, batch)
        enrol_s = time.perf_counter() - t0
        phases: dict[str, float] = {}
        sizes = None
        for phase in schedule(n, order, batch):
            if profiler is not None:
                profiler.enable()
            t0 = time.perf_counter()
            run_phase(engine, phase, clicks)
            phases[phase.name] = time.perf_counter() - t0
            if profiler is not None:
                profiler.disable()
            if sizes is None:  # everyone waits at `wait 3 days`, the welcome emails sent
                sizes = sqlite_sizes(path, n)
                sizes["waiting"] = resting(engine)
        result = {"enrol_s": enrol_s, "seconds": sum(phases.values()), "phases": phases,
                  "sizes": sizes}
        result["check"] = (check(engine, deliveries.keys(), n, sizes["waiting"], ir)
                           if profiler is None else None)
        return result
    finally:
        store.close()
        _remove_db(path)


def raw_state(i: int, data: dict) -> str:
    """A participant's row text: its data and a path, as compact JSON (about the
    size of the store's)."""
    return json.dumps({"v": 1, "e": 1767603600000000, "d": data, "p": [0, 1, 2, 6, 7]},
                      separators=(",", ":"), ensure_ascii=False)


def raw_rows(n: int, order: str, seed: int) -> list[tuple[str, int, str]]:
    """(pid, wake, state) in enrolment order: wake is the participant's number,
    so claims come in the order of i."""
    people = dict(population(n))
    return [(f"p{i}", i, raw_state(i, people[f"p{i}"])) for i in enrolment_order(n, order, seed)]


#: SQLite's limit on parameters in a statement is 32,766
MAX_PARAMETERS = 30_000

#: the raw baseline's two shapes of a batch's write: one plain UPDATE of the
#: claimed ids with one new value (the issue's raw rate: the ratio is to it),
#: and the claimed rows read and each written back with its own values by
#: executemany, as a store has to (printed beside it)
IN_LIST, PER_ROW = "raw", "raw per row"

RAW_SQLITE = """
CREATE TABLE raw (seq INTEGER PRIMARY KEY, pid TEXT NOT NULL, wake INTEGER, state TEXT NOT NULL);
CREATE UNIQUE INDEX raw_pid ON raw(pid);
CREATE INDEX raw_due ON raw(wake) WHERE wake IS NOT NULL;
"""


def raw_sqlite(folder: Path, n: int, order: str, seed: int, batch: int, shape: str) -> dict:
    path = folder / f"raw-{order.replace(' ', '-')}.db"
    _remove_db(path)
    rows = raw_rows(n, order, seed)
    state = rows[0][2]
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        for pragma in PRAGMAS:
            db.execute(pragma)
        db.executescript(RAW_SQLITE)
        t0 = time.perf_counter()
        for first in range(0, n, batch):
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO raw(pid, wake, state) VALUES (?, ?, ?)",
                           rows[first:first + batch])
            db.execute("COMMIT")
        fill_s = time.perf_counter() - t0
        del rows
        sizes = sqlite_sizes(path, n)  # every row waiting, as flowlang's are measured
        passes = raw_passes(n)
        updated = 0
        t0 = time.perf_counter()
        for p in range(passes):
            now = p * n + n - 1
            while True:
                db.execute("BEGIN IMMEDIATE")
                if shape == IN_LIST:
                    claimed = db.execute("SELECT seq FROM raw WHERE wake <= ? ORDER BY wake "
                                         "LIMIT ?", (now, batch)).fetchall()
                    for first in range(0, len(claimed), MAX_PARAMETERS):
                        part = [seq for (seq,) in claimed[first:first + MAX_PARAMETERS]]
                        db.execute(f"UPDATE raw SET wake = wake + ?, state = ? WHERE seq IN "
                                   f"({', '.join('?' * len(part))})", (n, state, *part))
                else:
                    claimed = db.execute("SELECT seq, wake, state FROM raw WHERE wake <= ? "
                                         "ORDER BY wake LIMIT ?", (now, batch)).fetchall()
                    db.executemany("UPDATE raw SET wake = ?, state = ? WHERE seq = ?",
                                   [(wake + n, text, seq) for seq, wake, text in claimed])
                db.execute("COMMIT")
                if not claimed:
                    break
                updated += len(claimed)
        seconds = time.perf_counter() - t0
    finally:
        db.close()
        _remove_db(path)
    if updated != passes * n:
        raise AssertionError(f"raw SQLite updated {updated:,} rows, not {passes * n:,}")
    return {"seconds": seconds, "rows": updated, "passes": passes, "fill_s": fill_s,
            "bytes": sizes["bytes"], "bytes_live": sizes["bytes_live"]}


# ---------------------------------------------------------------------- PostgreSQL

def start_server():
    """A throw-away PostgreSQL server with fsync on (tests/pgserver.py's helper)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import pgserver

    bindir = pgserver.find_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) found")
    user = pgserver._server_user()
    server = pgserver.LocalServer(bindir, Path(tempfile.mkdtemp(prefix="flowlang-bench-pg-")),
                                  user, fast=False)
    try:
        server.start()
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


def server_settings(url: str) -> dict:
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        return {name: db.execute(f"SHOW {name}").fetchone()[0] for name in
                ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                 "shared_buffers", "wal_level", "max_wal_size")}


class Database:
    """A new database on the server for one run, dropped afterwards."""

    count = 0

    def __init__(self, server, kind: str):
        Database.count += 1
        self.server = server
        self.name = f"bench_{kind}_{os.getpid()}_{Database.count}"

    def __enter__(self) -> str:
        import psycopg
        with psycopg.connect(self.server.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}" TEMPLATE template0')
        return self.server.url(self.name)

    def __exit__(self, *exc) -> None:
        import psycopg
        with psycopg.connect(self.server.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def postgres_sizes(url: str, n: int) -> dict:
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        tables = {name: size / n for name, size in db.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace s "
            "ON s.oid = c.relnamespace WHERE s.nspname = 'public' AND c.relkind = 'r' "
            "ORDER BY 2 DESC")}
    return {"bytes": sum(tables.values()), "tables": tables}


def _worker_main(conn, kind: str, url: str, args: dict) -> None:
    """A worker process: waits for "go", does its part of the next phase, says
    "done"; at the end sends what it delivered. `kind` is flowlang or raw."""
    try:
        if kind == "flowlang":
            from flowlang.runtime.postgres_store import PostgresStore
            store = PostgresStore(url)
            engine, deliveries = make_engine(store, args["batch"])
            engine.program(engine.store.flow(FLOW).version)  # load it before the clock starts
            conn.send("ready")
            for phase in args["phases"]:
                if conn.recv() != "go":
                    return
                run_phase(engine, phase, args["clicks"])
                conn.send("done")
            conn.send(deliveries.keys())
            store.close()
        else:
            _raw_worker(conn, url, args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def _raw_worker(conn, url: str, args: dict) -> None:
    import psycopg
    n, batch, state = args["n"], args["batch"], args["state"]
    updated = 0
    with psycopg.connect(url, autocommit=False) as db:
        cur = db.cursor()
        conn.send("ready")
        for p in range(args["passes"]):
            if conn.recv() != "go":
                return
            now = p * n + n - 1
            while True:
                if args["shape"] == IN_LIST:
                    claimed = [seq for (seq,) in cur.execute(
                        "SELECT seq FROM raw WHERE wake <= %s ORDER BY wake LIMIT %s "
                        "FOR UPDATE SKIP LOCKED", (now, batch))]
                    if claimed:
                        cur.execute("UPDATE raw SET wake = wake + %s, state = %s WHERE "
                                    "seq = ANY(%s)", (n, state, claimed))
                else:
                    claimed = cur.execute(
                        "SELECT seq, wake, state FROM raw WHERE wake <= %s ORDER BY wake LIMIT %s "
                        "FOR UPDATE SKIP LOCKED", (now, batch)).fetchall()
                    if claimed:
                        cur.executemany("UPDATE raw SET wake = %s, state = %s WHERE seq = %s",
                                        [(wake + n, text, seq) for seq, wake, text in claimed])
                db.commit()
                if not claimed:
                    break
                updated += len(claimed)
            conn.send("done")
    conn.send(updated)


class Workers:
    """W worker processes driven phase by phase; the time of a phase is from the
    first "go" to the last "done"."""

    def __init__(self, kind: str, url: str, per_worker: list[dict]):
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for args in per_worker:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, kind, url, args), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for _ in self._all():
            pass

    def _all(self):
        for pipe, proc in zip(self.pipes, self.procs):
            while not pipe.poll(1.0):
                if not proc.is_alive():  # killed, or died without a word
                    self.close()
                    raise RuntimeError(f"a worker process ended with exit code {proc.exitcode}")
            reply = pipe.recv()
            if isinstance(reply, tuple) and reply and reply[0] == "error":
                self.close()
                raise RuntimeError(f"a worker failed:\n{reply[1]}")
            yield reply

    def phase(self) -> float:
        t0 = time.perf_counter()
        for pipe in self.pipes:
            pipe.send("go")
        for _ in self._all():
            pass
        return time.perf_counter() - t0

    def results(self) -> list:
        out = list(self._all())
        for proc in self.procs:
            proc.join(60)
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


def _split(items: list, parts: int) -> list[list]:
    """Contiguous shares: the events of one participant arrive at one worker."""
    size = -(-len(items) // parts)
    return [items[k * size:(k + 1) * size] for k in range(parts)]


def flowlang_postgres(server, ir: dict, n: int, workers: int, batch: int) -> dict:
    from flowlang.runtime.postgres_store import PostgresStore
    with Database(server, "flowlang") as url:
        store = PostgresStore(url)
        try:
            engine, _ = make_engine(store, batch)
            engine.deploy(ir)
            engine.start(FLOW)
            t0 = time.perf_counter()
            enrol(engine, n, "in order", 0, batch)
            enrol_s = time.perf_counter() - t0
            phases = schedule(n, "in order", batch)
            shares = _split(list(clickers(n)), workers)
            pool = Workers("flowlang", url, [{"batch": batch, "phases": phases, "clicks": share}
                                             for share in shares])
            try:
                times: dict[str, float] = {}
                sizes = None
                for phase in phases:
                    times[phase.name] = pool.phase()
                    if sizes is None:
                        sizes = postgres_sizes(url, n)
                        sizes["waiting"] = resting(engine)
                keys = [key for part in pool.results() for key in part]
            finally:
                pool.close()
            result = {"enrol_s": enrol_s, "seconds": sum(times.values()), "phases": times,
                      "sizes": sizes, "check": check(engine, keys, n, sizes["waiting"], ir)}
        finally:
            store.close()
    return result


def raw_postgres(server, n: int, workers: int, batch: int, shape: str) -> dict:
    import psycopg
    passes = raw_passes(n)
    with Database(server, "raw") as url:
        with psycopg.connect(url, autocommit=False) as db:
            db.execute("CREATE TABLE raw (seq BIGINT PRIMARY KEY, pid TEXT NOT NULL UNIQUE, "
                       "wake BIGINT, state TEXT NOT NULL)")
            db.execute("CREATE INDEX raw_due ON raw(wake) WHERE wake IS NOT NULL")
            db.commit()
            t0 = time.perf_counter()
            rows = raw_rows(n, "in order", 0)
            with db.cursor().copy("COPY raw (seq, pid, wake, state) FROM STDIN") as copy:
                for seq, row in enumerate(rows, 1):
                    copy.write_row((seq, *row))
            db.commit()
            fill_s = time.perf_counter() - t0
            db.execute("ANALYZE raw")
            db.commit()
        sizes = postgres_sizes(url, n)
        pool = Workers("raw", url, [{"n": n, "batch": batch, "passes": passes, "shape": shape,
                                     "state": rows[0][2]}] * workers)
        try:
            seconds = sum(pool.phase() for _ in range(passes))
            updated = sum(pool.results())
        finally:
            pool.close()
    if updated != passes * n:
        raise AssertionError(f"raw PostgreSQL updated {updated:,} rows, not {passes * n:,}")
    return {"seconds": seconds, "rows": updated, "passes": passes, "fill_s": fill_s,
            "bytes": sizes["bytes"]}


# ---------------------------------------------------------------------- the benchmark

class Config(NamedTuple):
    store: str  # sqlite | postgres
    order: str  # in order | random
    workers: int

    @property
    def label(self) -> str:
        return (f"{'SQLite' if self.store == 'sqlite' else 'PostgreSQL'}, {self.order}"
                + (f", {self.workers} worker{'s' if self.workers > 1 else ''}"
                   if self.store == "postgres" else ""))


def run_one(config: Config, contender: str, ctx: dict) -> dict:
    n, batch = ctx["n"], ctx["batch"]
    if config.store == "sqlite":
        if contender == "flowlang":
            return flowlang_sqlite(ctx["dir"], ctx["ir"], n, config.order, ctx["seed"], batch)
        return raw_sqlite(ctx["dir"], n, config.order, ctx["seed"], batch, contender)
    if contender == "flowlang":
        return flowlang_postgres(ctx["server"], ctx["ir"], n, config.workers, batch)
    return raw_postgres(ctx["server"], n, config.workers, batch, contender)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flow-file", default=str(DEFAULT_FLOW))
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="participants (at least 200,000 "
                    "for the issue's figures)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_N:,} participants, one run")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (the best counts)")
    ap.add_argument("--budget", type=float, default=1800.0,
                    help="seconds: no new round of runs past this (each runs at least once)")
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--orders", default="in-order,random", help="SQLite claim orders")
    ap.add_argument("--workers", default="1,2,4", help="PostgreSQL worker processes")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--seed", type=int, default=1, help="of the random enrolment order")
    ap.add_argument("--dir", default=None, help="where the SQLite files go (default: a "
                    "temporary folder; not a tmpfs, or fsync costs nothing)")
    ap.add_argument("--profile", action="store_true",
                    help="profile one flowlang run on SQLite in order (its timed part) and stop")
    ap.add_argument("--profile-n", type=int, default=None, help="participants (default --n)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    began = time.perf_counter()
    checkout = commit()
    code = code_version()  # compared at the end: the store must not change under the run
    n, repeat = (QUICK_N, 1) if args.quick else (args.n, args.repeat)
    ir = compile_project(load_project([args.flow_file])).machines[FLOW]
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="flowlang-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    ctx = {"n": n, "batch": args.batch, "seed": args.seed, "ir": ir, "dir": folder, "server": None}
    try:
        if args.profile:
            return profile(ctx, args.profile_n or n, args.top)
        stores = [s.strip() for s in args.stores.split(",") if s.strip()]
        configs = [Config("sqlite", ORDERS[o.strip()], 1) for o in args.orders.split(",")
                   if o.strip() and "sqlite" in stores]
        if "postgres" in stores:
            configs += [Config("postgres", "in order", int(w)) for w in args.workers.split(",")
                        if w.strip()]
        settings = None
        if any(c.store == "postgres" for c in configs):
            ctx["server"] = start_server()
            settings = server_settings(ctx["server"].url())
        return run(configs, ctx, repeat, args, began, folder, settings, checkout, code)
    finally:
        if ctx["server"] is not None:
            stop_server(ctx["server"])
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


def run(configs: list[Config], ctx: dict, repeat: int, args, began: float, folder: Path,
        settings: dict | None, checkout: str, code: str) -> int:
    n = ctx["n"]
    progress = sys.stderr if sys.stderr.isatty() else None
    best: dict[tuple, dict] = {}
    runs: dict[tuple, int] = {}
    checks: list[dict] = []
    notes: list[str] = []
    round_s = None
    for r in range(repeat):
        if r and time.perf_counter() - began + round_s > args.budget:
            notes.append(f"best of {r} round(s), not {repeat}: a round takes about {round_s:.0f} s "
                         f"and --budget is {args.budget:.0f} s")
            break
        round_began = time.perf_counter()
        for config in configs:
            # alternate which goes first, so that load elsewhere hits both alike
            for contender in (("flowlang", IN_LIST, PER_ROW) if r % 2 == 0
                              else (PER_ROW, IN_LIST, "flowlang")):
                if progress:
                    print(f"  round {r + 1}/{repeat}: {config.label}: {contender} ...",
                          file=progress, flush=True)
                result = run_one(config, contender, ctx)
                key = (config, contender)
                runs[key] = runs.get(key, 0) + 1
                if result.get("check") is not None:
                    checks.append({"config": config.label, **result["check"]})
                if key not in best or result["seconds"] < best[key]["seconds"]:
                    best[key] = result
        round_s = time.perf_counter() - round_began

    steps = timed_steps(n)
    rows = []
    for config in configs:
        flow, raw, per_row = best[config, "flowlang"], best[config, IN_LIST], best[config, PER_ROW]
        steps_per_s = steps / flow["seconds"]
        rows_per_s = raw["rows"] / raw["seconds"]
        row = {"config": config.label, "store": config.store, "order": config.order,
               "workers": config.workers, "runs": runs[config, "flowlang"], "n": n,
               "steps": steps, "seconds": flow["seconds"], "steps_per_s": steps_per_s,
               "enrol_s": flow["enrol_s"], "phases": flow["phases"],
               "raw_rows": raw["rows"], "raw_seconds": raw["seconds"], "raw_rows_per_s": rows_per_s,
               "raw_fill_s": raw["fill_s"], "ratio": steps_per_s / rows_per_s,
               "raw_per_row_rows_per_s": per_row["rows"] / per_row["seconds"],
               "ratio_per_row": steps_per_s / (per_row["rows"] / per_row["seconds"]),
               "bytes_per_waiting": flow["sizes"]["bytes"],
               "bytes_per_waiting_live": flow["sizes"].get("bytes_live"),
               "bytes_by_table": flow["sizes"]["tables"], "waiting": flow["sizes"]["waiting"],
               "raw_bytes_per_row": raw["bytes"]}
        row["ratio_met"] = row["ratio"] >= TARGET_RATIO
        orientation = ORIENTATION.get((config.store, config.order, config.workers))
        row["orientation"] = orientation
        if config.store == "sqlite":
            row["bytes_met"] = row["bytes_per_waiting"] <= TARGET_BYTES
        rows.append(row)
    result = {"flow_file": args.flow_file, "n": n, "batch": ctx["batch"], "repeat": repeat,
              "budget_s": args.budget, "elapsed_s": time.perf_counter() - began,
              "commit": checkout, "machine": {**machine(), "dir": str(folder),
                                              "filesystem": filesystem(folder)},
              "postgres": settings, "timed_steps_per_participant": steps / n,
              "rows": rows, "checks": checks, "notes": notes}
    if code_version() != code:
        notes.append(f"flowlang/ changed during the run (now at {commit()}): figures may mix "
                     "versions of the code; run again")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        report(result)
    failed = [c for c in checks if not c["ok"]]
    for c in failed:
        print(f"CHECK FAILED: {c['config']}: {'; '.join(c['problems'])}", file=sys.stderr)
    return 1 if failed else 0


def code_version() -> str:
    """The content of flowlang/ (the committed tree and any uncommitted changes)."""
    import hashlib
    import subprocess
    try:
        tree = subprocess.run(["git", "rev-parse", "HEAD:flowlang"], cwd=HERE.parent,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "flowlang"], cwd=HERE.parent,
                              capture_output=True, text=True, timeout=30).stdout
        diff += subprocess.run(["git", "status", "--porcelain", "--", "flowlang"], cwd=HERE.parent,
                               capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return tree + ":" + hashlib.sha1(diff.encode()).hexdigest()


def filesystem(folder: Path) -> str:
    """The file system the SQLite files are on (fsync on a tmpfs costs nothing)."""
    best = ("?", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if str(folder.resolve()).startswith(mount) and len(mount) >= len(best[1]):
                best = (f"{kind} ({device} on {mount})", mount)
    except OSError:
        pass
    return best[0]


def report(result: dict) -> None:
    m = result["machine"]
    n = result["n"]
    print(f"flow: {result['flow_file']}; N={n:,}; batch {result['batch']:,}; virtual clock "
          f"(enter t=0, timers day 3, clicks day 5, time-outs day 10, end day 12)")
    print(f"machine: {m['cpu']}, {m['nproc']} cores, {m['python']}, load {m['load']}; "
          f"SQLite {sqlite3.sqlite_version} on {m['filesystem']}; commit {result['commit']}")
    if result["postgres"]:
        s = result["postgres"]
        print(f"PostgreSQL {s['server_version']}: fsync {s['fsync']}, synchronous_commit "
              f"{s['synchronous_commit']}, full_page_writes {s['full_page_writes']}, "
              f"shared_buffers {s['shared_buffers']}, max_wal_size {s['max_wal_size']}")
    print(f"timed: everything after enrolment ({result['timed_steps_per_participant']:.0f} "
          "steps per participant); best of up to "
          f"{result['repeat']} runs (runs column), flowlang and the raw runs alternating")
    print()
    head = (f"{'':<32} {'runs':>4} {'enrol s':>8} {'timed s':>8} {'steps/s':>9} "
            f"{'raw rows/s':>11} {'ratio':>6}  {'target >= 50%':<14} {'per row':>9} {'ratio':>6}  "
            f"{'B/waiting':>9} {'(live)':>7} {'raw B/row':>9}")
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        live = f"{r['bytes_per_waiting_live']:,.0f}" if r["bytes_per_waiting_live"] else "-"
        print(f"{r['config']:<32} {r['runs']:>4} {r['enrol_s']:>8.2f} {r['seconds']:>8.2f} "
              f"{r['steps_per_s']:>9,.0f} {r['raw_rows_per_s']:>11,.0f} {r['ratio']:>5.0%}  "
              f"{'met' if r['ratio_met'] else 'MISSED':<14} {r['raw_per_row_rows_per_s']:>9,.0f} "
              f"{r['ratio_per_row']:>5.0%}  {r['bytes_per_waiting']:>9,.0f} "
              f"{live:>7} {r['raw_bytes_per_row']:>9,.0f}")
    print("steps/s: participant-steps (states passed) in the timed part over its time; raw rows/s:")
    print("the same database claiming as many rows in the same order and rewriting them with one plain")
    print("UPDATE ... WHERE id IN (...) per batch (same pragmas / same server, as many processes);")
    print("ratio = steps/s / raw rows/s (the target). per row: the raw run reading the claimed rows and")
    print("writing each its own values with executemany, as a store has to; its ratio beside it.")
    print("B/waiting: bytes on file per participant waiting at `wait 3 days` with its welcome email")
    print("delivered (SQLite: the file after a TRUNCATE checkpoint; live: less the free pages;")
    print("PostgreSQL: pg_total_relation_size of all tables). raw B/row: the raw table's the same way.")
    print()
    print("phases of the best flowlang runs, seconds:")
    names = list(result["rows"][0]["phases"]) if result["rows"] else []
    print(f"  {'':<32} " + " | ".join(f"{name:>18}" for name in names))
    for r in result["rows"]:
        print(f"  {r['config']:<32} " + " | ".join(f"{r['phases'][name]:>18.3f}" for name in names))
    print()
    print("bytes per waiting participant, by table (flowlang, first config of each store):")
    seen = set()
    for r in result["rows"]:
        if r["store"] in seen:
            continue
        seen.add(r["store"])
        print(f"  {r['config']}: " + ", ".join(f"{name} {size:,.0f}"
                                               for name, size in r["bytes_by_table"].items() if size >= 0.5))
    print()
    exp = expected(n)
    print(f"checks (statuses {exp['statuses']}, {exp['steps']:,} steps, each of "
          f"{exp['actions']:,} actions delivered once, nothing left due):")
    by_config: dict[str, list[dict]] = {}
    for c in result["checks"]:
        by_config.setdefault(c["config"], []).append(c)
    for config, runs in by_config.items():
        failed = [c for c in runs if not c["ok"]]
        c = failed[0] if failed else runs[0]
        mark = (f"ok in {len(runs)} run{'s' if len(runs) > 1 else ''}" if not failed else
                f"FAILED in {len(failed)} of {len(runs)}: " + "; ".join(c["problems"]))
        print(f"  {config:<32} {c['statuses']} {c['steps']:,} steps, {c['deliveries']:,} "
              f"deliveries  {mark}")
    print()
    print("targets:")
    for r in result["rows"]:
        orientation = r["orientation"]
        if orientation is None:
            continue
        print(f"  {r['config']:<32} {r['ratio']:5.0%} of raw, target >= {TARGET_RATIO:.0%}: "
              f"{'met' if r['ratio_met'] else 'MISSED'}   ({r['steps_per_s']:,.0f} steps/s; the issue's "
              f"orientation about {orientation:,}: {'met' if r['steps_per_s'] >= orientation else 'missed'})")
    for r in result["rows"]:
        if r["store"] == "sqlite":
            print(f"  {r['config']:<32} {r['bytes_per_waiting']:,.0f} bytes per waiting participant "
                  f"({r['bytes_per_waiting_live']:,.0f} without free pages), target <= {TARGET_BYTES}: "
                  f"{'met' if r['bytes_met'] else 'MISSED'}")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"elapsed {result['elapsed_s']:.0f} s")


def profile(ctx: dict, n: int, top: int) -> int:
    """One flowlang run on SQLite in order, its timed part under cProfile."""
    prof = cProfile.Profile()
    result = flowlang_sqlite(ctx["dir"], ctx["ir"], n, "in order", ctx["seed"], ctx["batch"], prof)
    print(f"flowlang on SQLite, in order, N={n:,}, timed part under cProfile: "
          f"{result['seconds']:.2f} s ({timed_steps(n) / result['seconds']:,.0f} steps/s; "
          "profiling slows everything: compare the shares)")
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(top)
        print(f"\ntop {top} by {order}:")
        print(out.getvalue().split("\n", 4)[-1].rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
