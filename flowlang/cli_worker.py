"""`flowlang run` and `flowlang status`: the operator's tools over a durable store.

`run` does, in one process and in this order, what an operator needs to get work
through a store: compile the project, pause, deploy, end, start and resume flows,
enrol people, feed events, then keep a worker going until nothing is due (or for
ever). Its own handler writes every delivered action as one JSON line; a host that
performs real actions embeds the `Engine` and registers its handlers
(docs/embedding.md). `status` reads a store: flows, counts, outbox, dead letters.

Signals: the first SIGINT or SIGTERM asks the worker to stop after the batch it is
in; a second one interrupts at once (the open transaction rolls back).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import attrs

from flowlang.project import ProjectError
from flowlang.runtime.clock import RealClock
from flowlang.runtime.state import STATUSES

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: the exit status after a stop asked for by each signal: Ctrl-C is an
#: interruption, SIGTERM the ordinary way to stop a service
EXIT_AFTER = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_OK}
#: how often the live display recounts participants per flow (a GROUP BY each)
RECOUNT_SECONDS = 2.0


# ---------------------------------------------------------------------- the store
def describe_url(url: str) -> str:
    """A store URL fit to print: a password is never shown."""
    parts = urllib.parse.urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        netloc = netloc.replace(":" + parts.password + "@", ":***@", 1)
    if "password=" in query:
        query = "&".join("password=***" if item.startswith("password=") else item
                         for item in query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # unchanged (and `sqlite:///x.db` would not survive a round trip)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def is_database_error(error: BaseException) -> bool:
    """An error of the database driver (or a conflict the engine gave up retrying)."""
    from flowlang.runtime.store import Retry

    if isinstance(error, Retry):
        return True
    return any(cls.__module__.split(".")[0] in ("sqlite3", "psycopg", "_sqlite3")
               for cls in type(error).__mro__)


def _raise_database_error(error: Exception, url: str):
    """Re-raise `error`: a driver's error as one ProjectError line, others as they are."""
    if not isinstance(error, ProjectError) and is_database_error(error):
        raise ProjectError(f"database error ({describe_url(url)}): {_one_line(error)}") from None
    raise error


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def open_db(url: str, must_exist: bool = False):
    """Open the store of `--db`, or raise ProjectError with one line saying why."""
    from flowlang.runtime.sqlstore import NotAStore
    from flowlang.runtime.stores import StoreURLError, open_store

    shown = describe_url(url)
    if must_exist and url.startswith("sqlite:///"):
        _existing_sqlite(Path(url.removeprefix("sqlite:///")), shown)
    try:
        return open_store(url, create=not must_exist)
    except StoreURLError as e:
        raise ProjectError(str(e)) from None
    except NotAStore as e:
        raise ProjectError(f"{_one_line(e)} (--db {shown})") from None
    except ImportError as e:
        raise ProjectError(f"cannot open {shown}: {_one_line(e)}") from None
    except Exception as e:  # the driver's errors: unreachable server, not a database, …
        raise ProjectError(f"cannot open the database {shown}: {_one_line(e)}") from None


def _existing_sqlite(path: Path, shown: str) -> None:
    """A reader (`status`) must not create a database, nor add tables to a file
    that is not a flowlang store (opening a store migrates its schema)."""
    import sqlite3

    if not path.is_file():
        raise ProjectError(f"no database at {path} (--db {shown})")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as e:
        if "no such table" in str(e):
            found = None
        else:
            raise ProjectError(f"cannot open the database {shown}: {_one_line(e)}") from None
    if found is None:
        raise ProjectError(f"{path} is not a flowlang store (--db {shown})")


def _close(store) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a broken connection: nothing more to lose
            pass


# ---------------------------------------------------------------------- inputs
@attrs.frozen
class Person:
    line: int
    id: str
    data: dict
    memberships: dict
    #: False for `"enter_at": null`: known to the engine, not offered to the flow
    offer: bool


def read_people(path: str) -> list[Person]:
    """`people.jsonl` in the format of `flowlang simulate` (DESIGN §9)."""
    from flowlang.simulate import parse_time, read_jsonl

    people = []
    for number, person in read_jsonl(path):
        pid = person.get("id")
        if not isinstance(pid, str) or not pid:
            raise ProjectError(f'{path}:{number}: a person needs an "id" (a string)')
        data = person.get("data", {})
        if not isinstance(data, dict):
            raise ProjectError(f'{path}:{number}: "data" must be an object')
        memberships = person.get("memberships") or {}
        if not isinstance(memberships, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in memberships.values()):
            raise ProjectError(f'{path}:{number}: "memberships" must be an object of lists of '
                               'names, like {"selection": ["Customers"]}')
        at = person.get("enter_at", "")
        if at not in ("", None):
            if not isinstance(at, str):
                raise ProjectError(f'{path}:{number}: "enter_at" must be a date-time or null')
            parse_time(at, "UTC", f"{path}:{number}")  # checked; `run` offers everyone now
        people.append(Person(number, pid, data, memberships, at is not None))
    return people


def read_events(path: str) -> tuple[str, list[tuple[int, dict]]]:
    """Events and lifecycle controls, in file order, from a file or `-` (stdin).
    An event's `at` is a simulation's time: the engine takes events now."""
    from flowlang.runtime.engine import CONTROLS
    from flowlang.simulate import parse_jsonl, read_jsonl

    if path == "-":
        name, rows = "<stdin>", parse_jsonl(sys.stdin.read(), "<stdin>")
    else:
        name, rows = path, read_jsonl(path)
    out = []
    for number, event in rows:
        if "control" in event and (event["control"] not in CONTROLS
                                   or not isinstance(event.get("flow"), str)):
            raise ProjectError(f'{name}:{number}: a control needs "flow" and "control" '
                               f"({', '.join(CONTROLS)})")
        out.append((number, {k: v for k, v in event.items() if k != "at"}))
    return name, out


def _flow_and_file(text: str) -> tuple[str, str]:
    flow, sep, path = text.partition("=")
    if not sep or not flow or not path:
        raise argparse.ArgumentTypeError(f"`{text}` is not FLOW=people.jsonl")
    return flow, path


def _removed_rule(text: str) -> tuple[str | None, str, str | None]:
    """`[FLOW:]OLD=NEW` (move there) or `[FLOW:]OLD=` (drop out)."""
    left, sep, new = text.partition("=")
    flow, colon, old = left.rpartition(":")
    if not sep or not old:
        raise argparse.ArgumentTypeError(f"`{text}` is not OLD=NEW or OLD= (optionally FLOW:OLD=…)")
    return (flow if colon else None), old, (new or None)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"`{text}` is not a positive number")
        return value
    return parse


# ---------------------------------------------------------------------- the handler
class OutputClosed(BaseException):
    """The actions output cannot be written (a closed pipe, a full disk). A
    BaseException on purpose: it is not a handler's failure to be retried, it
    stops the worker, and the batch's transaction rolls back (its rows stay
    pending and are delivered by the next run)."""


class JsonLines:
    """The operator's handler: each delivery as one JSON line, flushed before the
    engine marks its row sent (so a line is never lost to a crash; a redelivery
    after a crash repeats a line, with the same `key`)."""

    def __init__(self, stream=None):
        self.stream = stream  # None: sys.stdout as it is at each call (the live display wraps it)
        self.lines = 0

    def __call__(self, delivery) -> None:
        record = {"key": delivery.key, "flow": delivery.flow, "participant": delivery.participant,
                  "step": delivery.step, "action": delivery.action, "args": delivery.args,
                  "settings": delivery.settings, "operations": delivery.operations,
                  "at": delivery.at.isoformat() if delivery.at else None}
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        stream = self.stream if self.stream is not None else sys.stdout
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError) as e:  # ValueError: a closed file
            raise OutputClosed(_one_line(e)) from None
        self.lines += 1


# ---------------------------------------------------------------------- reporting
class JsonLog:
    """Structured logs for a service manager: one JSON object a line on stderr."""

    live = False

    def __init__(self, stream):
        self.stream = stream
        self.clock = RealClock()

    def note(self, event: str, text: str, **fields) -> None:
        line = json.dumps({"ts": self.clock.now().isoformat(timespec="milliseconds"),
                           "event": event, **fields}, ensure_ascii=False, default=str)
        self.stream.write(line + "\n")
        self.stream.flush()

    def phase(self, text: str) -> None:
        pass

    def round(self, engine, moved: int, delivered: int, total: tuple[int, int]) -> None:
        if moved or delivered:
            self.note("round", "", moved=moved, delivered=delivered,
                      moved_total=total[0], delivered_total=total[1])

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class LiveView:
    """A live display on a terminal: what the run is doing, participants moved and
    actions delivered, and the counts of each flow. Rich refreshes it from its own
    thread, from numbers the main thread keeps: the display never reads the store."""

    live = True

    def __init__(self, stream, actions_on_terminal: bool):
        from rich.console import Console

        self.console = Console(file=stream, highlight=False)
        self.actions_on_terminal = actions_on_terminal
        self.text = "starting"
        self.steps = 0  # step results (enrolments, events and timers), counted as they happen
        self.delivered = 0
        self.flows: dict[str, tuple[str, dict]] = {}
        self.started = time.monotonic()
        self.counted = 0.0
        self._live = None

    def start(self) -> None:
        from rich.live import Live

        # actions written to a terminal stdout go above the display; to a pipe or a
        # file they are left alone
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=False,
                          redirect_stdout=self.actions_on_terminal, redirect_stderr=False)
        self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def note(self, event: str, text: str, **fields) -> None:
        if text:
            self.console.print(text)

    def phase(self, text: str) -> None:
        self.text = text

    def listen(self, result) -> None:
        self.steps += 1

    def round(self, engine, moved: int, delivered: int, total: tuple[int, int]) -> None:
        self.delivered = engine.delivered
        now = time.monotonic()
        if moved or delivered or now - self.counted > RECOUNT_SECONDS * 5:
            if now - self.counted >= RECOUNT_SECONDS:
                self.recount(engine)

    def recount(self, engine) -> None:
        self.counted = time.monotonic()
        self.flows = {r.name: (r.status, engine.counts(r.name)["statuses"])
                      for r in engine.store.flows()}

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        head = Text.assemble((f"{self.text}", "bold"), "  ·  ",
                             f"{self.steps:,} steps  ·  {self.delivered:,} delivered"
                             f"  ·  {elapsed:,.0f} s")
        if not self.flows:
            return head
        table = Table(box=None, pad_edge=False)
        table.add_column("flow", no_wrap=True)
        table.add_column("status")
        for status in STATUSES:
            table.add_column(HEADINGS.get(status, status), justify="right")
        for name, (status, counts) in self.flows.items():
            table.add_row(name, status, *[f"{counts.get(s, 0):,}" for s in STATUSES])
        return Group(head, table)


class Stopper:
    """SIGINT and SIGTERM while `run` works: the first asks the worker to stop after
    its batch; a second interrupts at once (KeyboardInterrupt: the open
    transaction rolls back)."""

    def __init__(self, worker):
        self.worker = worker
        self.signal: str | None = None
        self._saved: dict = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may handle signals (an embedding caller's choice)
        for number in (signal.SIGINT, signal.SIGTERM):
            self._saved[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        for number, handler in self._saved.items():
            signal.signal(number, handler)
        self._saved = {}

    def _handle(self, number, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number).name
        self.worker.stop()  # sets a flag: no lock, safe here


# ---------------------------------------------------------------------- run
@attrs.define
class Summary:
    deployed: list = attrs.field(factory=list)
    controls: list = attrs.field(factory=list)
    enrolled: list = attrs.field(factory=list)
    events: dict = attrs.field(factory=dict)
    moved: int = 0
    delivered: int = 0
    stopped: str = "idle"
    flows: dict = attrs.field(factory=dict)
    dead_letters: int = 0

    def to_json(self) -> dict:
        return {"event": "summary", "deployed": self.deployed, "controls": self.controls,
                "enrolled": self.enrolled, "events": self.events, "moved": self.moved,
                "delivered": self.delivered, "stopped": self.stopped, "flows": self.flows,
                "dead_letters": self.dead_letters}

    def text(self) -> str:
        lines = []
        for d in self.deployed:
            lines.append(f"deployed {d['flow']} {d['version'][7:19]} ({d['change']})")
        for c in self.controls:
            lines.append(f"{c['control']} {c['flow']}")
        for e in self.enrolled:
            lines.append(f"enrolled into {e['flow']} from {e['file']}: "
                         + _tally(e["outcome"]) + ("" if e["done"] == e["people"]
                                                   else f" (stopped after {e['done']} of {e['people']})"))
        if self.events:
            lines.append(f"events from {self.events['file']}: " + _tally(self.events["outcome"])
                         + ("" if self.events["done"] == self.events["lines"]
                            else f" (stopped after {self.events['done']} of {self.events['lines']})"))
        how = {"idle": "nothing left due", "SIGINT": "stopped by Ctrl-C after the current batch",
               "SIGTERM": "stopped by SIGTERM after the current batch"}.get(self.stopped, self.stopped)
        lines.append(f"worker: {self.moved} participant steps, {self.delivered} actions delivered; {how}")
        for name, flow in self.flows.items():
            counts = ", ".join(f"{n} {s}" for s, n in flow["statuses"].items() if n)
            lines.append(f"  {name} ({flow['status']}): {counts or 'no participants'}")
        if self.dead_letters:
            lines.append(f"{self.dead_letters} dead letter(s): see `flowlang status --dead-letters`")
        return "\n".join(lines) + "\n"


def _tally(counter: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in counter.items()) or "nothing"


def _in_one_transaction(store, function):
    """`function()` in one store transaction, done again when a durable store
    reports a lost race (everything it did was rolled back)."""
    from flowlang.runtime.engine import ATTEMPTS
    from flowlang.runtime.store import Retry

    for attempt in range(1, ATTEMPTS + 1):
        try:
            with store.transaction():
                return function()
        except Retry:
            if attempt == ATTEMPTS:
                raise


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Run:
    """One `flowlang run`: the steps in order, each stoppable between batches."""

    def __init__(self, args, engine, compiled, report, stopper, summary: Summary):
        self.args = args
        self.engine = engine
        self.store = engine.store
        self.machines = compiled.machines if compiled is not None else {}
        self.report = report
        self.stopper = stopper
        self.summary = summary

    # ---------------------------------------------------------------- checks first
    def check_names(self) -> None:
        """Every flow named on the command line exists (deployed, or about to be)."""
        deployed = {r.name for r in self.store.flows()}
        known = deployed | (set(self.machines) if self.args.deploy else set())
        named = [*self.args.start, *self.args.pause, *self.args.resume, *self.args.end,
                 *(flow for flow, _ in self.args.enroll)]
        for name in named:
            if name not in known:
                hint = (" (it is in the project: add --deploy)" if name in self.machines
                        else f" (deployed: {', '.join(sorted(deployed)) or 'none'})")
                raise ProjectError(f"no flow `{name}` is deployed in {describe_url(self.args.db)}{hint}")
        if not self.args.deploy:
            for name, machine in self.machines.items():
                record = self.store.flow(name)
                if record is None or record.version != machine["hash"]:
                    state = "not deployed" if record is None else "deployed in another version"
                    self.report.note("not_deployed", f"note: `{name}` is {state}; --deploy deploys "
                                     "the project", flow=name, state=state)

    def removed_rules(self) -> dict[str, dict[str, str | None]]:
        """`--removed` rules per flow whose deployed version changes."""
        changed = {}
        for name, machine in self.machines.items():
            record = self.store.flow(name)
            if machine["kind"] == "flow" and record is not None and record.version != machine["hash"]:
                changed[name] = {s["id"] for s in self.store.version(record.version)["states"]}
        rules: dict[str, dict[str, str | None]] = {}
        for flow, old, new in self.args.removed:
            targets = [flow] if flow is not None else [f for f, steps in changed.items() if old in steps]
            if not targets or (flow is not None and flow not in changed):
                raise ProjectError(f"--removed {old}: no flow deployed in another version "
                                   f"{'named `' + flow + '` ' if flow else ''}has a step `{old}`"
                                   f" (flows changed by this deploy: {', '.join(changed) or 'none'})")
            for target in targets:
                rules.setdefault(target, {})[old] = new
        return rules

    # ---------------------------------------------------------------- lifecycle
    def pause_and_deploy(self) -> None:
        """Pauses and the deploy in one transaction: a deploy that is refused leaves
        nothing paused and nothing deployed."""
        from flowlang.runtime.engine import EngineError

        rules = self.removed_rules() if self.args.deploy else {}
        done: list[dict] = []

        def work():
            done.clear()
            for name in self.args.pause:
                self.engine.pause(name)
            if not self.args.deploy:
                return
            for name, machine in self.machines.items():
                record = self.store.flow(name)
                change = ("new" if record is None else "unchanged" if record.version == machine["hash"]
                          else "updated")
                if change == "updated" and record.status == "running" and machine["kind"] == "flow":
                    raise EngineError(
                        f"flow `{name}` is running and the project has a new version of it: it "
                        f"must be paused first (add --pause {name}; --resume {name} resumes it "
                        "after the deploy)")
                self.engine.deploy(machine, rules.get(name))
                done.append({"flow": name, "kind": machine["kind"], "version": machine["hash"],
                             "change": change})

        self.report.phase("deploying")
        try:
            _in_one_transaction(self.store, work)
        except EngineError as e:
            raise ProjectError(f"cannot deploy: {e}" if self.args.deploy else str(e)) from None
        for name in self.args.pause:
            self._control_done(name, "pause")
        for d in done:
            self.summary.deployed.append(d)
            self.report.note("deployed", f"deployed {d['flow']} {d['version'][7:19]} ({d['change']})",
                             **d)

    def controls(self, which: str, names: list[str]) -> None:
        from flowlang.runtime.engine import EngineError

        for name in names:
            if self.stopper.requested:
                return
            self.report.phase(f"{which} {name}")
            try:
                getattr(self.engine, which)(name)
            except EngineError as e:
                raise ProjectError(f"cannot {which} `{name}`: {e}") from None
            self._control_done(name, which)

    def _control_done(self, name: str, which: str, source: str | None = None) -> None:
        entry = {"flow": name, "control": which, **({"source": source} if source else {})}
        self.summary.controls.append(entry)
        self.report.note("control", f"{which} {name}" + (f" ({source})" if source else ""), **entry)

    # ---------------------------------------------------------------- people and events
    def enroll(self, flow: str, path: str, people: list[Person]) -> None:
        engine = self.engine
        outcome: Counter = Counter()
        entry = {"flow": flow, "file": path, "people": len(people), "done": 0, "outcome": outcome}
        self.summary.enrolled.append(entry)
        for chunk in _chunks(people, engine.batch):
            if self.stopper.requested:
                break
            self.report.phase(f"enrolling into {flow}: {entry['done']:,} of {len(people):,}")

            def chunk_work(chunk=chunk) -> Counter:
                counted: Counter = Counter()
                for p in chunk:  # in file order, one transaction a chunk
                    if p.offer:
                        counted[engine.enroll(flow, p.id, p.data, p.memberships).status] += 1
                    else:
                        # known, not offered (`"enter_at": null`): what `simulate` does too
                        engine.remember(p.id, p.data, p.memberships)
                        counted["known"] += 1
                return counted

            outcome.update(_in_one_transaction(self.store, chunk_work))
            entry["done"] += len(chunk)
            self.report.note("enrolling", "", flow=flow, file=path, done=entry["done"],
                             of=len(people), **outcome)
        entry["outcome"] = dict(outcome)
        self.report.note("enrolled", f"enrolled into {flow} from {path}: {_tally(outcome)}",
                         flow=flow, file=path, done=entry["done"], of=len(people), **outcome)

    def ingest(self, name: str, events: list[tuple[int, dict]]) -> None:
        from flowlang.runtime.engine import EngineError

        engine = self.engine
        outcome: Counter = Counter()
        entry = self.summary.events = {"file": name, "lines": len(events), "done": 0, "outcome": outcome}
        pending: list[tuple[int, dict]] = []

        def flush() -> None:
            for chunk in _chunks(pending, engine.batch):
                if self.stopper.requested:
                    return
                outcome.update(engine.ingest_many([event for _, event in chunk]))
                entry["done"] += len(chunk)
                self.report.phase(f"events: {entry['done']:,} of {len(events):,}")
            pending.clear()

        for number, event in events:
            if "control" not in event:
                pending.append((number, event))
                continue
            flush()
            if self.stopper.requested:
                break
            try:
                getattr(engine, event["control"])(event["flow"])
            except EngineError as e:
                raise ProjectError(f"{name}:{number}: {e}") from None
            entry["done"] += 1
            outcome["control"] += 1
            self._control_done(event["flow"], event["control"], f"{name}:{number}")
        if not self.stopper.requested:
            flush()
        entry["outcome"] = dict(outcome)
        self.report.note("ingested", f"events from {name}: {_tally(outcome)}", file=name,
                         done=entry["done"], of=len(events), **outcome)


def cmd_run(args: argparse.Namespace) -> int:
    from flowlang.cli_runtime import _compiled
    from flowlang.runtime.engine import Engine
    from flowlang.runtime.worker import Worker
    from flowlang.simulate import InputError

    if args.deploy and not args.paths:
        raise ProjectError("--deploy needs the project: give its files or folders (PATH…)")
    if args.removed and not args.deploy:
        raise ProjectError("--removed is a rule for a deploy: add --deploy")
    compiled = None
    if args.paths:
        _, compiled = _compiled(args.paths)
        if compiled is None:
            return EXIT_FINDINGS
    # every input is read and checked before the store changes
    try:
        enrolments = [(flow, path, read_people(path)) for flow, path in args.enroll]
        events = read_events(args.events) if args.events else None
    except InputError as e:
        raise ProjectError(str(e)) from None

    actions = None
    if args.actions not in (None, "-"):
        try:
            actions = open(args.actions, "a", encoding="utf-8")
        except OSError as e:
            raise ProjectError(f"cannot write {args.actions}: {e.strerror or e}") from None
    handler = JsonLines(actions)
    store = None
    report = (LiveView(sys.stderr, actions is None and sys.stdout.isatty()) if sys.stderr.isatty()
              else JsonLog(sys.stderr))
    summary = Summary()
    stopper = None
    try:
        store = open_db(args.db)
        engine = Engine(store, handler_timeout=args.handler_timeout, batch=args.batch,
                        max_attempts=args.max_attempts,
                        backoff=dt.timedelta(seconds=args.backoff))
        engine.register("*", handler)

        def progress(moved: int, delivered: int) -> None:
            report.round(engine, moved, delivered, (worker.moved, worker.delivered))

        worker = Worker(engine, poll=args.poll, progress=progress)
        stopper = Stopper(worker)
        stopper.install()
        if report.live:
            engine.listeners.append(report.listen)
        report.start()
        run = Run(args, engine, compiled, report, stopper, summary)
        try:
            _work(run, args, engine, worker, stopper, enrolments, events, report)
        except OutputClosed as e:
            raise ProjectError(f"cannot write the actions ({args.actions or 'stdout'}): {e}; "
                               "stopped, the undelivered actions stay in the outbox") from None
        summary.moved, summary.delivered = worker.moved, worker.delivered
        summary.stopped = stopper.signal or ("idle" if not args.forever else "stopped")
        for record in store.flows():
            summary.flows[record.name] = {"status": record.status, "kind": record.kind,
                                          "statuses": engine.counts(record.name)["statuses"]}
        summary.dead_letters = store.dead_letter_count()
    except Exception as e:
        _raise_database_error(e, args.db)
    finally:
        if stopper is not None:
            stopper.restore()
        report.close()
        if actions is not None:
            actions.close()
        if store is not None:
            _close(store)
    if args.format == "json":
        sys.stderr.write(json.dumps(summary.to_json(), ensure_ascii=False, default=str) + "\n")
    elif report.live:
        report.console.print(summary.text(), end="")
    else:
        sys.stderr.write(summary.text())
    return EXIT_AFTER.get(stopper.signal, EXIT_OK)


def _work(run: Run, args, engine, worker, stopper: Stopper, enrolments, events, report) -> None:
    """The steps of `run`, in order; a stop request skips what is left."""
    run.check_names()
    report.phase("recovering")
    engine.recover()  # an `end` a crashed worker left half-done is finished first
    run.pause_and_deploy()
    run.controls("end", args.end)
    run.controls("start", args.start)
    run.controls("resume", args.resume)
    for flow, path, people in enrolments:
        if stopper.requested:
            break
        run.enroll(flow, path, people)
    if events is not None and not stopper.requested:
        run.ingest(*events)
    if stopper.requested:
        return
    report.phase("working" if not args.forever else "working (Ctrl-C stops after the current batch)")
    report.note("worker", "", mode="forever" if args.forever else "until idle", batch=args.batch,
                poll=args.poll)
    if report.live:
        report.recount(engine)
    worker.run(until_idle=not args.forever)
    if stopper.requested:
        report.note("stopped", "", signal=stopper.signal)
    if report.live:
        report.recount(engine)


# ---------------------------------------------------------------------- status
def status_report(store, engine, flows: list[str], with_letters: bool) -> dict:
    records = {r.name: r for r in store.flows()}
    for name in flows:
        if name not in records:
            raise ProjectError(f"no flow `{name}` is deployed (deployed: "
                               f"{', '.join(sorted(records)) or 'none'})")
    chosen = [records[n] for n in flows] if flows else list(records.values())
    outbox: dict[str, Counter] = {}
    counted = store.outbox_counts()
    delivered = counted.pop(("*", "sent"), 0)
    for (flow, status), number in counted.items():
        outbox.setdefault(flow, Counter())[status] += number
    out = []
    for record in chosen:
        counts = engine.counts(record.name)
        order = []
        if record.version is not None:
            machine = store.version(record.version)
            order = [s["id"] for s in machine.get("states") or machine.get("stages") or ()]
        rank = {step: i for i, step in enumerate(order)}
        steps = dict(sorted(counts["steps"].items(), key=lambda kv: (rank.get(kv[0], -1), kv[0])))
        rows = outbox.get(record.name, Counter())
        out.append({"name": record.name, "kind": record.kind, "status": record.status,
                    "version": record.version,
                    "paused_at": record.paused_at.isoformat() if record.paused_at else None,
                    "participants": sum(counts["statuses"].values()),
                    "statuses": counts["statuses"], "steps": steps,
                    "outbox": {s: rows.get(s, 0) for s in ("pending", "sending", "failed", "cancelled")}})
    totals = Counter()
    for rows in outbox.values():
        totals.update(rows)
    result = {"flows": out,
              "outbox": {**{s: totals.get(s, 0) for s in ("pending", "sending", "failed", "cancelled")},
                         "delivered": delivered},
              "dead_letters": {"count": store.dead_letter_count()}}
    if with_letters:
        result["dead_letters"]["items"] = [
            {"kind": d.kind, "at": d.at.isoformat() if d.at else None, "reason": d.reason,
             "event": d.event} for d in store.dead_letters()]
    return result


#: short column headings for the statuses in tables (JSON keeps the names)
HEADINGS = {"completed_success": "success"}


def print_status(result: dict, url: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)

    def table(title: str) -> Table:
        return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)

    if not result["flows"]:
        console.print(f"no flows are deployed in {describe_url(url)}")
    else:
        flows = table("flows")
        for column in ("flow", "kind", "status", "version"):
            flows.add_column(column, no_wrap=True)
        for column in ("participants", "active", "to send", "send failed"):
            flows.add_column(column, justify="right")
        for flow in result["flows"]:
            flows.add_row(flow["name"], flow["kind"], flow["status"], (flow["version"] or "")[7:19],
                          _n(flow["participants"]), _n(flow["statuses"].get("active", 0)),
                          _n(flow["outbox"]["pending"] + flow["outbox"]["sending"]),
                          _n(flow["outbox"]["failed"]))
        console.print(flows)
        for flow in result["flows"]:
            if not flow["steps"]:
                continue
            steps = table(f"{flow['name']}: participants by step and status")
            steps.show_footer = True
            steps.add_column("step", "total", overflow="fold")
            for status in STATUSES:
                steps.add_column(HEADINGS.get(status, status), _n(flow["statuses"].get(status, 0)),
                                 justify="right")
            for step, counts in flow["steps"].items():
                steps.add_row(step, *[_n(counts.get(s, 0)) for s in STATUSES])
            console.print(steps)
    box_ = result["outbox"]
    delivered = "" if box_["delivered"] is None else f"; {box_['delivered']:,} delivered"
    console.print(f"outbox: {box_['pending'] + box_['sending']:,} to send, {box_['failed']:,} failed, "
                  f"{box_['cancelled']:,} cancelled{delivered}")
    letters = result["dead_letters"]
    items = letters.get("items")
    hint = "" if items is not None or not letters["count"] else " (--dead-letters lists them)"
    console.print(f"dead letters: {letters['count']:,}{hint}")
    if items:
        dead = table("dead letters")
        for column in ("at", "kind", "what", "reason"):
            dead.add_column(column, overflow="fold")
        for d in items:
            event = d["event"]
            if d["kind"] == "action":
                what = f"{event.get('action')} {event.get('key')}"
            else:
                what = json.dumps(event, ensure_ascii=False, default=str)
            dead.add_row(d["at"] or "", d["kind"], what, d["reason"])
        console.print(dead)


def _n(number: int) -> str:
    return f"{number:,}" if number else ""


def cmd_status(args: argparse.Namespace) -> int:
    from flowlang.runtime.engine import Engine

    store = open_db(args.db, must_exist=True)
    try:
        engine = Engine(store)
        with store.reading():  # one consistent snapshot, and no write lock on SQLite
            result = status_report(store, engine, args.flows, args.dead_letters)
    except Exception as e:
        _raise_database_error(e, args.db)
    finally:
        _close(store)
    if args.format == "json":
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        print_status(result, args.db)
    return EXIT_OK


# ---------------------------------------------------------------------- the parser
def register(sub) -> None:
    run = sub.add_parser(
        "run", help="run flows durably over a SQLite file or a PostgreSQL database",
        description="Compile the project, deploy and control flows, enrol people, feed events, "
                    "then work until idle (or for ever). Each delivered action is written as a "
                    "JSON line; a host performing real actions embeds the engine instead.")
    run.add_argument("paths", nargs="*", metavar="PATH",
                     help="the project's files and folders (needed for --deploy)")
    run.add_argument("--db", required=True, metavar="URL",
                     help="sqlite:///file.db, sqlite:////abs/file.db or postgresql://user@host/db")
    run.add_argument("--deploy", action="store_true",
                     help="deploy every flow and pipeline of the project (new versions of running "
                          "flows need --pause)")
    run.add_argument("--removed", action="append", default=[], type=_removed_rule,
                     metavar="[FLOW:]OLD=NEW|OLD=",
                     help="participants at step OLD, which the new version removes, move to NEW "
                          "(or drop out with OLD=)")
    for control, what in (("pause", "pause this flow (before the deploy)"),
                          ("end", "end this flow: its participants drop out"),
                          ("start", "start this flow"),
                          ("resume", "resume this paused flow (after the deploy)")):
        run.add_argument(f"--{control}", action="append", default=[], metavar="FLOW", help=what)
    run.add_argument("--enroll", action="append", default=[], type=_flow_and_file,
                     metavar="FLOW=people.jsonl", help="offer these people to FLOW (repeatable)")
    run.add_argument("--events", metavar="events.jsonl|-",
                     help="events and lifecycle controls, one JSON object a line (- reads stdin)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--until-idle", action="store_true",
                      help="stop when nothing is due (the default)")
    mode.add_argument("--forever", action="store_true",
                      help="keep working, waiting for timers and other processes")
    run.add_argument("--batch", type=_positive(int), default=1000, metavar="N",
                     help="participants or outbox rows per transaction (default 1000)")
    run.add_argument("--handler-timeout", type=_positive(float), metavar="S",
                     help="a delivery taking longer than S seconds fails (default: no limit)")
    run.add_argument("--max-attempts", type=_positive(int), default=5, metavar="N",
                     help="deliveries of a failing action before its participant fails (default 5)")
    run.add_argument("--backoff", type=_positive(float), default=60.0, metavar="S",
                     help="wait before the first retry, doubling after each (default 60)")
    run.add_argument("--poll", type=_positive(float), default=1.0, metavar="S",
                     help="longest wait between looks at the store when idle (default 1)")
    run.add_argument("--actions", metavar="FILE",
                     help="append delivered actions here as JSON lines (default: stdout)")
    run.add_argument("--format", choices=["text", "json"], default="text",
                     help="the closing summary on stderr: text or one JSON object")
    run.set_defaults(run=cmd_run)

    status = sub.add_parser("status", help="flows, counts, outbox and dead letters of a store")
    status.add_argument("flows", nargs="*", metavar="FLOW", help="only these flows")
    status.add_argument("--db", required=True, metavar="URL",
                        help="sqlite:///file.db or postgresql://user@host/db (never created)")
    status.add_argument("--format", choices=["table", "json"], default="table")
    status.add_argument("--dead-letters", action="store_true", help="list the dead letters")
    status.set_defaults(run=cmd_status)
