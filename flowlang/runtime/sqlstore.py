"""The durable stores' shared half: one schema and one implementation of the
`Store` protocol over a DB-API connection, with the differences between SQLite
and PostgreSQL (DDL, placeholders, row locks, error classes) left to a dialect
subclass (`sqlite_store.SqliteStore`, `postgres_store.PostgresStore`).

How it stays fast and safe:
- every engine operation is one transaction (`transaction()`); participants and
  people saved in it are kept in memory and written together at commit with
  `executemany`, so a claimed batch of a thousand participants costs a handful of
  statements, and its states, transition records and outbox rows commit together
  or not at all;
- a participant row holds what the queries need as columns (flow, person, run,
  status, where it counts, wake-up time) and the rest as compact JSON; step ids
  in its path are small integers (their index in the version's states);
- the due-time index is a partial index on the wake-up time; rows are numbered in
  enrolment order, so participants who wait together are claimed together;
- a transition record per move, keyed by (flow, person, run, position in the
  path): a second worker advancing the same participant from the same place
  violates the key, and its transaction is retried (`Retry`), never committed;
- delivered outbox rows are deleted (a counter keeps how many), so the file
  holds only what is still to do, went wrong, or was cancelled.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import uuid
from collections import Counter
from types import MappingProxyType
from typing import Iterable, Iterator

import orjson

from flowlang.runtime.interpreter import Action
from flowlang.runtime.state import EMPTY, STATUSES, Participant
from flowlang.runtime.store import DeadLetter, FlowRecord, OutboxRow

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = dt.timedelta(microseconds=1)
SECOND = dt.timedelta(seconds=1)
#: how many rows a statement asks for by key (`prefetch`'s people and runs,
#: outbox rows read again)
PREFETCH = 500
#: at most this many outbox rows this process wrote are kept in memory until
#: they are delivered (about 100 MB)
UNSENT_CACHE = 250_000
#: a row still in that cache this many transactions after it was written was
#: most likely delivered by another worker: it is forgotten when the cache is full
UNSENT_STALE_AFTER = 1_000
STATUS_CODE = {name: i for i, name in enumerate(STATUSES)}
ACTIVE = STATUS_CODE["active"]
QUEUED = STATUS_CODE["queued"]


def _plain(value):
    """What JSON needs instead of the read-only and set values participants hold."""
    if isinstance(value, (MappingProxyType, dict)):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored: {value!r}")


_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain).encode
#: datetimes and dataclasses go to `_plain` (refused, as the json module does)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: a number orjson might not read exactly (more digits than a 64-bit integer has)
_LONG_NUMBER = re.compile(r"\d{19}")


def _dumps(value) -> str:
    """JSON text of a stored value: orjson (several times faster than the json
    module, which every participant, person and outbox row goes through), with
    the json module's text wherever the two would differ: integers beyond 64
    bits (orjson refuses them) and NaN or infinity (orjson writes null)."""
    try:
        text = orjson.dumps(value, default=_plain, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return _json_dumps(value)
    if b"null" in text:  # a None, or a NaN orjson turned into one
        return _json_dumps(value)
    return text.decode()


def _loads(text: str):
    """The value of a stored JSON text: orjson, unless the text holds what only
    the json module reads exactly (a long number, which orjson would turn into a
    float; NaN or infinity, which it refuses)."""
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def to_micros(t: dt.datetime | None) -> int | None:
    return None if t is None else (t - EPOCH) // MICROSECOND


def from_micros(n: int | None) -> dt.datetime | None:
    return None if n is None else EPOCH + dt.timedelta(microseconds=n)


def _time(t: dt.datetime):
    """A time in a participant's JSON: whole seconds as an int, else the
    microseconds as a string (rare: times come from calendars and clocks that
    mostly tick in seconds)."""
    if t.microsecond == 0:
        return (t - EPOCH) // SECOND
    return str(to_micros(t))


def _from_time(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return from_micros(int(value))
    return EPOCH + dt.timedelta(seconds=value)


class NotAStore(Exception):
    """The database is not (or not yet) a flowlang store this version can use."""


class SqlStore:
    """A `Store` over SQL. Subclasses give `dialect` attributes and `_connect`."""

    #: a transition record per advance: a second worker's advance of the same
    #: position is refused (no participant advanced twice)
    keeps_transitions = True

    #: the placeholder style of the driver ("?" or "%s")
    placeholder = "?"
    #: appended to claiming SELECTs, `{table}` being the table claimed from
    #: (PostgreSQL: FOR UPDATE OF {table} SKIP LOCKED)
    claim_suffix = ""
    #: appended to SELECTs of rows the transaction may change (PostgreSQL: FOR
    #: UPDATE OF {table}, so that two workers never change one participant or
    #: person from the same stale read; SQLite has one writer at a time)
    lock_suffix = ""
    #: appended to SELECTs of flow records in a transaction that may write
    #: (PostgreSQL: FOR SHARE, so that a pause, resume or end waits for work
    #: that saw the flow's old status to commit, and work that starts after it
    #: sees the new one; SQLite has one writer at a time)
    share_suffix = ""
    #: the DDL of each schema version, in order (the migrations)
    migrations: tuple[str, ...] = ()
    #: the driver's exceptions that mean "lost a race: do it again"
    retry_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, connection):
        self.db = connection
        self._depth = 0
        #: this store object's row of the delivered counter
        self._sent_key = f"sent:{uuid.uuid4().hex[:16]}"
        self._reading = False
        self._failed = False
        self._machines: dict[str, dict] = {}  # by content hash
        self._forget_ids()
        #: outbox rows this process wrote, by key, until delivered: a batch being
        #: delivered needs only their ids and states from the database (a cache:
        #: a row is taken from it only when both say it was never tried)
        self._unsent: dict[str, tuple[int, OutboxRow]] = {}  # key -> (transaction, row)
        self._unsent_now: list[str] = []
        self._transactions = 0
        self._reset_buffers()

    def _forget_ids(self) -> None:
        """(Re)start the caches of database ids. A committed id never changes its
        meaning; one added by a transaction that is then rolled back is taken back
        and may be given to another name, so a rollback forgets them all (they are
        read again, a few statements)."""
        self._flow_ids: dict[str, int] = {}
        self._flow_names: dict[int, str] = {}
        self._version_ids: dict[str, int] = {}
        self._version_hashes: dict[int, str] = {}
        self._step_codes: dict[int, dict[str, int]] = {}
        self._step_ids: dict[int, list[str]] = {}
        self._defs: dict[int, tuple[dict, int]] = {}  # id(do) -> (do, action_defs id)
        self._def_bodies: dict[int, dict] = {}
        self._place_ids: dict[str, int] = {}
        self._place_names: dict[int, str] = {}

    # ------------------------------------------------------------------ SQL helpers
    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _execute(self, text: str, args=()):
        return self._cursor().execute(self.sql(text), args)

    def _executemany(self, text: str, rows) -> None:
        if rows:
            self._cursor().executemany(self.sql(text), rows)

    def _cursor(self):
        return self.db.cursor()

    def _rows(self, text: str, args=()) -> list:
        return self._execute(text, args).fetchall()

    def _one(self, text: str, args=()):
        return self._execute(text, args).fetchone()

    def migrate(self, create: bool = True) -> None:
        """Bring the schema to the latest version (each migration in order).
        `create=False`: refuse a database that holds no flowlang store yet (for
        commands that only read, like `flowlang status`)."""
        with self.transaction():
            self._lock_schema()
            current = self._schema_version()
            if not current and not create:
                raise NotAStore("this database holds no flowlang store (nothing was ever run on it)")
            if current > len(self.migrations):
                raise NotAStore(f"this store has schema version {current}, newer than this "
                                f"flowlang knows ({len(self.migrations)}): upgrade flowlang")
            for number, ddl in enumerate(self.migrations, 1):
                if number <= current:
                    continue
                for statement in ddl.split(";"):
                    if statement.strip():
                        self._execute(statement)
                self._execute("INSERT INTO meta(key, value) VALUES ('schema', ?) ON CONFLICT(key) "
                              "DO UPDATE SET value = excluded.value", (str(number),))

    def _lock_schema(self) -> None:
        """Keep two processes from migrating at once (PostgreSQL takes a lock)."""

    def _schema_version(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ transactions
    def in_transaction(self) -> bool:
        return self._depth > 0

    def transaction(self) -> SqlStore:
        """One transaction: reentrant (inner blocks join the outer), committed with
        everything buffered at the end of the outermost block, rolled back on any
        error; a lost race surfaces as `Retry`. (The store is its own context
        manager: entering a nested block costs a counter, not a generator.)"""
        return self

    def reading(self) -> SqlStore:
        """A transaction that only reads: on SQLite it does not take the write lock
        (a `status` does not wait behind a worker's batch)."""
        if not self._depth:
            self._reading = True
        return self

    def __enter__(self) -> SqlStore:
        if not self._depth:
            self._begin()
        self._depth += 1
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        self._depth -= 1
        if self._depth:
            return False
        if error is None:
            try:
                self._flush()
                self._commit()
            except BaseException as e:
                self._abort()
                if self._is_retry(e):
                    raise self._translate(e) from e
                raise
            self._reset_buffers()
            self._reading = False
            return False
        self._abort()
        if self._is_retry(error):
            raise self._translate(error) from error
        return False

    def _abort(self) -> None:
        for key in self._unsent_now:
            self._unsent.pop(key, None)
        self._forget_ids()
        self._depth = 0
        self._reading = False
        self._rollback()
        self._reset_buffers()

    def _is_retry(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_errors)

    def _translate(self, error: BaseException) -> BaseException:
        from flowlang.runtime.store import Retry
        return Retry(f"{type(error).__name__}: {error}")

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        self.db.commit()

    def _rollback(self) -> None:
        self.db.rollback()

    def _delete_outbox(self, ids: list[int]) -> None:
        """Delete delivered outbox rows by their numbers."""
        self._executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def _forget_stale_unsent(self) -> None:
        """Forget the cached rows written long ago (in insertion order: the oldest
        first): with several workers, those were delivered by another."""
        unsent = self._unsent
        before = self._transactions - UNSENT_STALE_AFTER
        for key in list(itertools.takewhile(lambda key: unsent[key][0] < before, unsent)):
            del unsent[key]

    def _reset_buffers(self) -> None:
        self._unsent_now = []
        self._transactions += 1
        #: participants saved in this transaction: (flow, pid) -> participant
        self._saved: dict[tuple[str, str], Participant] = {}
        #: (flow, pid) -> (run, row number) of the participants read in it
        self._seqs: dict[tuple[str, str], tuple[int, int]] = {}
        #: outbox key -> row number of the rows read in it
        self._outbox_ids: dict[str, int] = {}
        #: current runs read ahead by `prefetch` ((flow, pid) -> run or None: none)
        self._read: dict[tuple[str, str], Participant | None] = {}
        #: people `prefetch` found not to exist
        self._no_person: set[str] = set()
        self._moves: list[tuple] = []
        self._new_rows: list[OutboxRow] = []
        self._row_updates: dict[str, OutboxRow] = {}
        self._sent = 0
        self._people: dict[str, dict] = {}
        self._people_dirty: set[str] = set()
        self._flows_now: dict[str, FlowRecord | None] | None = None
        self._flows_all = False

    def _flush(self) -> None:
        """Write what the transaction buffered, in dependency order."""
        if self._saved:
            # rows read in this transaction are updated by their number; new ones inserted
            known, new = [], []
            seqs = self._seqs
            for key, p in self._saved.items():
                row = self._participant_row(p)
                found = seqs.get(key)
                if found is not None and found[0] == p.run:
                    known.append((row[3], row[4], row[5], row[6], found[1]))
                else:
                    new.append(row)
            self._saved = {}
            self._executemany("UPDATE participants SET status = ?, place = ?, wake = ?, state = ? "
                              "WHERE seq = ?", known)
            self._executemany(
                "INSERT INTO participants(flow, pid, run, current, status, place, wake, state) "
                "VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT(flow, pid, run) DO UPDATE SET "
                "status = excluded.status, place = excluded.place, wake = excluded.wake, "
                "state = excluded.state", new)
        if self._moves:
            moves, self._moves = self._moves, []
            self._executemany("INSERT INTO transitions(flow, pid, run, position, moved_to, at) "
                              "VALUES (?, ?, ?, ?, ?, ?)", moves)
        if self._new_rows:
            new_rows = self._new_rows
            rows = [self._outbox_row(r) for r in new_rows]
            self._new_rows = []
            self._executemany(
                "INSERT INTO outbox(key, flow, participant, step, action, def, at, data, "
                "participant_type, attempts, next_attempt, status, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            unsent = self._unsent
            if len(unsent) + len(new_rows) > UNSENT_CACHE:
                self._forget_stale_unsent()
            now = self._transactions
            for r in new_rows[:max(0, UNSENT_CACHE - len(unsent))]:  # the oldest go first: keep those
                unsent[r.key] = (now, r)
                self._unsent_now.append(r.key)
        if self._row_updates:
            updates, self._row_updates = list(self._row_updates.values()), {}
            ids = self._outbox_ids
            sent = [ids[r.key] for r in updates if r.status == "sent" and r.key in ids]
            sent_by_key = [(r.key,) for r in updates if r.status == "sent" and r.key not in ids]
            kept = [(r.attempts, to_micros(r.next_attempt), r.status, r.error, r.key)
                    for r in updates if r.status != "sent"]
            self._delete_outbox(sent)
            for r in updates:
                if r.status == "sent":
                    self._unsent.pop(r.key, None)
            self._executemany("DELETE FROM outbox WHERE key = ?", sent_by_key)
            self._executemany("UPDATE outbox SET attempts = ?, next_attempt = ?, status = ?, "
                              "error = ? WHERE key = ?", kept)
        if self._sent:
            # a counter row per store object: workers never wait on each other's count
            self._execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                          "SET value = CAST(CAST(meta.value AS BIGINT) + CAST(excluded.value AS "
                          "BIGINT) AS TEXT)", (self._sent_key, str(self._sent)))
            self._sent = 0
        if self._people_dirty:
            # in a stable order, so that two workers lock people rows alike (no deadlock)
            rows = []
            for pid in sorted(self._people_dirty):
                record = self._people[pid]
                memberships = record.get("memberships")
                rows.append((pid, _dumps(record["data"]), _dumps(memberships) if memberships else None))
            self._people_dirty = set()
            self._executemany("INSERT INTO people(pid, data, memberships) VALUES (?, ?, ?) "
                              "ON CONFLICT(pid) DO UPDATE SET data = excluded.data, "
                              "memberships = excluded.memberships", rows)

    # ------------------------------------------------------------------ encoding
    def _flow_id(self, name: str) -> int | None:
        return self._number_of("flows", "name", name, self._flow_ids, self._flow_names)

    def _flow_name(self, flow_id: int) -> str:
        return self._name_of("flows", "name", flow_id, self._flow_names, self._flow_ids)

    def _number_of(self, table: str, column: str, name: str, numbers: dict,
                   names: dict) -> int | None:
        """The id of the row of `table` that `name` names (None if none does), by
        way of the cache `numbers` (name -> number), kept together with its
        inverse `names`."""
        found = numbers.get(name)
        if found is None:
            row = self._one(f"SELECT id FROM {table} WHERE {column} = ?", (name,))
            if row is None:
                return None
            found = numbers[name] = row[0]
            names[found] = name
        return found

    def _name_of(self, table: str, column: str, number: int, names: dict, numbers: dict) -> str:
        """What the row `number` of `table` names (a flow, a version, a place): the
        inverse of `_number_of`."""
        found = names.get(number)
        if found is None:
            found = self._one(f"SELECT {column} FROM {table} WHERE id = ?", (number,))[0]
            names[number] = found
            numbers[found] = number
        return found

    def _version_id(self, version: str) -> int:
        found = self._number_of("versions", "hash", version, self._version_ids,
                                self._version_hashes)
        if found is None:
            raise KeyError(version)
        return found

    def _version_hash(self, version_id: int) -> str:
        return self._name_of("versions", "hash", version_id, self._version_hashes,
                             self._version_ids)

    def _steps(self, version_id: int) -> tuple[dict[str, int], list[str]]:
        codes = self._step_codes.get(version_id)
        if codes is None:
            machine = self.version(self._version_hash(version_id))
            ids = [s["id"] for s in machine.get("states") or machine.get("stages") or ()]
            codes = self._step_codes[version_id] = {s: i for i, s in enumerate(ids)}
            self._step_ids[version_id] = ids
        return codes, self._step_ids[version_id]

    def _participant_row(self, p: Participant) -> tuple:
        """The row of a participant. Its data is left out while it equals the
        person's (read back from the people table, see `put_person`); times are
        whole seconds when they have no fraction."""
        version_id = self._version_id(p.version) if p.version else 0
        codes = self._steps(version_id)[0] if version_id else {}
        state: dict = {"v": version_id}
        if p.step is None:
            state["s"] = 0  # its place column is then the last step passed
        if p.entered_at is not None:
            state["e"] = _time(p.entered_at)
        if p.arrived_at is not None and p.arrived_at != p.entered_at:
            state["a"] = _time(p.arrived_at)
        person = self._people.get(p.id)
        if person is None or (p.data is not person["data"] and p.data != person["data"]):
            state["d"] = p.data
        if p.memberships:
            state["m"] = {k: sorted(v) for k, v in p.memberships.items() if v}
        if p.history:
            state["h"] = p.history
        if p.visits:
            state["i"] = {(str(codes[k]) if k in codes else "~" + k): n for k, n in p.visits.items()}
        if p.path:
            state["p"] = [codes.get(s, s) for s in p.path]
        if p.error is not None:
            state["x"] = p.error
        if not p.auto_moves:
            state["o"] = 0
        active = p.status == "active"
        if p.wake_at is not None and not active:
            state["w"] = _time(p.wake_at)
        return (self._flow_id(p.flow), p.id, p.run, STATUS_CODE[p.status], self._place_id(p.place),
                to_micros(p.wake_at) if active else None, _dumps(state))

    def _participant(self, flow: str, pid: str, run: int, status: int, place_id: int, wake,
                     state_text, person: dict | None) -> Participant:
        state = _loads(state_text)
        version_id = state["v"]
        ids = self._steps(version_id)[1] if version_id else []
        data = state["d"] if "d" in state else person["data"] if person is not None else EMPTY
        p = Participant(pid, flow, self._version_hash(version_id) if version_id else "", data or EMPTY,
                        {k: frozenset(v) for k, v in state["m"].items()} if "m" in state else EMPTY)
        p.status = STATUSES[status]
        p.run = run
        p.step = None if "s" in state else self._place_name(place_id)
        p.entered_at = _from_time(state.get("e"))
        p.arrived_at = _from_time(state["a"]) if "a" in state else p.entered_at
        p.wake_at = from_micros(wake) if wake is not None else _from_time(state.get("w"))
        if "h" in state:
            p.history = tuple((h[0], h[1]) for h in state["h"])
        if "i" in state:
            p.visits = {(k[1:] if k[0] == "~" else ids[int(k)]): n for k, n in state["i"].items()}
        if "p" in state:
            p.path = tuple(ids[s] if isinstance(s, int) else s for s in state["p"])
        p.error = state.get("x")
        p.auto_moves = "o" not in state
        return p

    def _interned(self, table: str, column: str, value: str) -> int:
        """The id of the row of `table` whose `column` holds `value`, the row added
        on first use (another worker may add the same value at the same moment:
        then its row is the one)."""
        select = f"SELECT id FROM {table} WHERE {column} = ?"
        row = self._one(select, (value,))
        if row is None:
            row = (self._one(f"INSERT INTO {table}({column}) VALUES (?) ON CONFLICT DO NOTHING "
                             "RETURNING id", (value,))
                   or self._one(select, (value,)))
        return row[0]

    def _place_id(self, name: str) -> int:
        """The number of a place name, added to the table on first use."""
        found = self._place_ids.get(name)
        if found is None:
            found = self._place_ids[name] = self._interned("places", "name", name)
            self._place_names[found] = name
        return found

    def _place_name(self, place_id: int) -> str:
        return self._name_of("places", "name", place_id, self._place_names, self._place_ids)

    def _def_id(self, do: dict) -> int:
        cached = self._defs.get(id(do))
        if cached is not None and cached[0] is do:
            return cached[1]
        found = self._interned("action_defs", "body",
                               json.dumps(do, sort_keys=True, separators=(",", ":")))
        self._defs[id(do)] = (do, found)
        self._def_bodies.setdefault(found, do)
        return found

    def _def(self, def_id: int) -> dict:
        found = self._def_bodies.get(def_id)
        if found is None:
            found = _loads(self._one("SELECT body FROM action_defs WHERE id = ?", (def_id,))[0])
            self._def_bodies[def_id] = found
        return found

    def _outbox_row(self, r: OutboxRow) -> tuple:
        return (r.key, r.flow, r.participant, r.step, r.action, self._def_id(r.do), to_micros(r.at),
                _dumps(r.data) if r.status in ("pending", "sending") else None, r.participant_type,
                r.attempts, to_micros(r.next_attempt), r.status, r.error)

    _OUTBOX_COLUMNS = ("id, key, flow, participant, step, action, def, at, data, participant_type, "
                       "attempts, next_attempt, status, error")

    def _action(self, row) -> OutboxRow:
        (row_id, key, flow, participant, step, action, def_id, at, data, ptype, attempts,
         next_attempt, status, error) = row
        self._outbox_ids[key] = row_id
        return Action(key, flow, participant, step, action, self._def(def_id), from_micros(at),
                      _loads(data) if data else {}, ptype, attempts, from_micros(next_attempt),
                      status, error)

    # ------------------------------------------------------------------ versions and flows
    def put_version(self, machine: dict) -> None:
        with self.transaction():
            self._execute("INSERT INTO versions(hash, ir) VALUES (?, ?) ON CONFLICT(hash) DO NOTHING",
                          (machine["hash"], json.dumps(machine, separators=(",", ":"))))
            self._machines[machine["hash"]] = machine

    def version(self, version: str) -> dict:
        found = self._machines.get(version)
        if found is None:
            with self.transaction():
                row = self._one("SELECT ir FROM versions WHERE hash = ?", (version,))
            if row is None:
                raise KeyError(version)
            found = self._machines[version] = _loads(row[0])
        return found

    def _flow_record(self, row) -> FlowRecord:
        name, kind, status, version, paused_at, migration = row
        return FlowRecord(name, status, version, from_micros(paused_at), kind,
                          _loads(migration) if migration else {})

    def flow(self, name: str) -> FlowRecord | None:
        with self.transaction():
            if self._flows_now is None:
                self._flows_now = {}
            if name not in self._flows_now:
                row = self._one("SELECT name, kind, status, version, paused_at, migration FROM flows "
                                "WHERE name = ?" + ("" if self._reading else self.share_suffix),
                                (name,))
                self._flows_now[name] = self._flow_record(row) if row else None
            record = self._flows_now[name]
            return None if record is None else _copy_record(record)

    def put_flow(self, record: FlowRecord) -> None:
        with self.transaction():
            self._execute(
                "INSERT INTO flows(name, kind, status, version, paused_at, migration) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, "
                "status = excluded.status, version = excluded.version, "
                "paused_at = excluded.paused_at, migration = excluded.migration",
                (record.name, record.kind, record.status, record.version,
                 to_micros(record.paused_at), _dumps(record.migration) if record.migration else None))
            if self._flows_now is not None:
                self._flows_now[record.name] = _copy_record(record)
            self._flow_id(record.name)
            self._notify()

    def delete_flow(self, name: str) -> None:
        with self.transaction():
            self._flush()
            flow_id = self._flow_id(name)
            if flow_id is None:
                return
            for table in ("participants", "transitions"):
                self._execute(f"DELETE FROM {table} WHERE flow = ?", (flow_id,))
            self._execute("DELETE FROM held WHERE flow = ?", (name,))
            self._execute("DELETE FROM flows WHERE id = ?", (flow_id,))
            self._flow_ids.pop(name, None)
            self._flow_names.pop(flow_id, None)
            self._flows_now = None
            self._read = {}

    def flows(self) -> list[FlowRecord]:
        with self.transaction():
            if self._flows_all and self._flows_now is not None:
                return [_copy_record(r) for r in self._flows_now.values() if r is not None]
            self._flows_all = True
            rows = self._rows("SELECT name, kind, status, version, paused_at, migration FROM flows "
                              "ORDER BY id" + ("" if self._reading else self.share_suffix))
            records = [self._flow_record(row) for row in rows]
            self._flows_now = {r.name: _copy_record(r) for r in records}
            return records

    # ------------------------------------------------------------------ participants
    #: a participant's columns with its person's, for `_decode`
    _COLUMNS = ("participants.seq, participants.flow, participants.pid, participants.run, "
                "participants.status, "
                "participants.place, participants.wake, participants.state, people.data, "
                "people.memberships FROM participants LEFT JOIN people ON people.pid = participants.pid")

    def _decode(self, row) -> Participant:
        seq, flow_id, pid, run, status, where, wake, state, data, memberships = row
        flow = self._flow_name(flow_id)
        self._seqs[flow, pid] = (run, seq)
        person = self._people.get(pid)
        if person is None and data is not None:
            person = self._people[pid] = {"data": _loads(data),
                                          "memberships": _loads(memberships) if memberships else EMPTY}
        return self._participant(flow, pid, run, status, where, wake, state, person)

    def participant(self, flow: str, pid: str) -> Participant | None:
        saved = self._saved.get((flow, pid))
        if saved is not None:
            return saved
        if (flow, pid) in self._read:
            return self._read[flow, pid]
        with self.transaction():
            flow_id = self._flow_id(flow)
            if flow_id is None:
                return None
            row = self._one(f"SELECT {self._COLUMNS} WHERE participants.flow = ? AND "
                            "participants.pid = ? AND current = 1"
                            + self.lock_suffix.format(table="participants"), (flow_id, pid))
            return self._decode(row) if row else None

    def prefetch(self, flow: str, pids: list[str]) -> None:
        """Read (and on PostgreSQL lock) the current runs and the people of many
        persons in a few statements, for `enroll_many`: enrolling a chunk then
        costs no query per person."""
        with self.transaction():
            flow_id = self._flow_id(flow)
            pids = list(dict.fromkeys(pids))
            people = [pid for pid in pids if pid not in self._people and pid not in self._no_person]
            for start in range(0, len(people), PREFETCH):
                part = people[start:start + PREFETCH]
                marks = ", ".join("?" * len(part))
                found = set()
                for pid, data, memberships in self._rows(
                        f"SELECT pid, data, memberships FROM people WHERE pid IN ({marks})"
                        + self.lock_suffix.format(table="people"), part):
                    found.add(pid)
                    self._people[pid] = {"data": _loads(data),
                                         "memberships": _loads(memberships) if memberships else EMPTY}
                self._no_person.update(pid for pid in part if pid not in found)
            if flow_id is None:
                return
            runs = [pid for pid in pids if (flow, pid) not in self._read
                    and (flow, pid) not in self._saved]
            for start in range(0, len(runs), PREFETCH):
                part = runs[start:start + PREFETCH]
                marks = ", ".join("?" * len(part))
                for pid in part:
                    self._read[flow, pid] = None
                for row in self._rows(f"SELECT {self._COLUMNS} WHERE participants.flow = ? AND "
                                      f"participants.pid IN ({marks}) AND current = 1"
                                      + self.lock_suffix.format(table="participants"),
                                      (flow_id, *part)):
                    p = self._decode(row)
                    self._read[flow, p.id] = p

    def participants(self, flow: str) -> Iterator[Participant]:
        return iter(self._participants_where(flow, "current = 1"))

    def finished_runs(self, flow: str) -> Iterator[Participant]:
        return iter(self._participants_where(flow, "current = 0"))

    def _participants_where(self, flow: str, condition: str, args=(), limit: str = "") -> list:
        with self.transaction():
            self._flush()
            flow_id = self._flow_id(flow)
            if flow_id is None:
                return []
            rows = self._rows(f"SELECT {self._COLUMNS} WHERE participants.flow = ? AND "
                              f"{condition} ORDER BY seq{limit}", (flow_id, *args))
            return [self._decode(row) for row in rows]

    def unfinished(self, flow: str, limit: int) -> list[Participant]:
        """A chunk of a flow's active and queued participants, locked: `end` writes
        them back as dropouts, and must not write over a step a worker commits
        between its read and its write."""
        return self._participants_where(flow, "current = 1 AND status IN (?, ?)", (ACTIVE, QUEUED),
                                        f" LIMIT {int(limit)}"
                                        + self.lock_suffix.format(table="participants"))

    def save_many(self, saves) -> None:
        """`save` for each (participant, outbox rows, moved) in turn (the writes
        are batched at commit anyway)."""
        with self.transaction():
            for participant, outbox, moved in saves:
                self.save(participant, outbox, moved)

    def save(self, participant: Participant, outbox: Iterable[OutboxRow] = (),
             moved: tuple[int, int] | None = None) -> None:
        with self.transaction():
            self._saved[participant.flow, participant.id] = participant
            if moved is not None and moved[0] > 0:
                self._moves.append((self._flow_id(participant.flow), participant.id, participant.run,
                                    moved[0], moved[1], to_micros(participant.arrived_at)))
            if outbox:
                self._new_rows.extend(outbox)

    def save_outbox(self, row: OutboxRow) -> None:
        with self.transaction():
            self._new_rows.append(row)

    def schedule(self, participant: Participant) -> None:
        """The wake-up time is a column of the participant's row: saving it is
        scheduling it."""

    def archive(self, participant: Participant) -> None:
        with self.transaction():
            self._flush()
            self._execute("UPDATE participants SET current = 0 WHERE flow = ? AND pid = ? AND run = ?",
                          (self._flow_id(participant.flow), participant.id, participant.run))
            self._read.pop((participant.flow, participant.id), None)

    def tally(self, flow: str) -> Counter:
        with self.transaction():
            self._flush()
            flow_id = self._flow_id(flow)
            counted: Counter = Counter()
            if flow_id is None:
                return counted
            for place_id, status, number in self._rows(
                    "SELECT place, status, COUNT(*) FROM participants WHERE flow = ? "
                    "GROUP BY place, status", (flow_id,)):
                counted[self._place_name(place_id), STATUSES[status]] += number
            return counted

    def due(self, now: dt.datetime, limit: int) -> list[Participant]:
        """Claim up to `limit` participants of running flows whose time has come,
        earliest first, in enrolment order among equals."""
        with self.transaction():
            self._flush()
            rows = self._rows(
                f"SELECT {self._COLUMNS} WHERE wake <= ? AND participants.flow IN "
                "(SELECT id FROM flows WHERE status = 'running') ORDER BY wake, seq LIMIT ?"
                + self.claim_suffix.format(table="participants"), (to_micros(now), limit))
            return [self._decode(row) for row in rows]

    def next_due(self) -> dt.datetime | None:
        with self.transaction():
            row = self._one("SELECT MIN(wake) FROM participants WHERE wake IS NOT NULL AND flow IN "
                            "(SELECT id FROM flows WHERE status = 'running')")
            return from_micros(row[0]) if row else None

    # ------------------------------------------------------------------ events
    def hold_event(self, flow: str, event: dict) -> None:
        with self.transaction():
            self._execute("INSERT INTO held(flow, event) VALUES (?, ?)", (flow, _dumps(event)))

    def held_events(self, flow: str) -> list[dict]:
        with self.transaction():
            rows = self._rows("SELECT seq, event FROM held WHERE flow = ? ORDER BY seq", (flow,))
            if rows:
                self._execute("DELETE FROM held WHERE flow = ? AND seq <= ?", (flow, rows[-1][0]))
            return [_loads(event) for _, event in rows]

    # ------------------------------------------------------------------ outbox
    def outbox_due(self, now: dt.datetime, limit: int) -> list[OutboxRow]:
        with self.transaction():
            self._flush()
            rows = self._rows(
                "SELECT id, key, attempts, status FROM outbox WHERE status IN ('pending', 'sending') "
                "AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?"
                + self.claim_suffix.format(table="outbox"),
                (to_micros(now), limit))
            out: list = []  # the rows, and at first the numbers of those to read
            missing = []  # where those are in `out`
            ids = self._outbox_ids
            unsent = self._unsent
            for row_id, key, attempts, status in rows:
                entry = unsent.get(key) if not attempts and status == "pending" else None
                # untried in the database and in the cache: as it was written (every
                # change the engine makes to a row counts an attempt or sets a status,
                # so a row changed in a transaction that rolled back is read again)
                if entry is not None and not entry[1].attempts and entry[1].status == "pending":
                    ids[key] = row_id
                    out.append(entry[1])
                else:
                    missing.append(len(out))
                    out.append(row_id)
            for start in range(0, len(missing), PREFETCH):
                places = missing[start:start + PREFETCH]
                read = {row[0]: self._action(row) for row in self._rows(
                    f"SELECT {self._OUTBOX_COLUMNS} FROM outbox WHERE id IN "
                    f"({', '.join('?' * len(places))})", [out[i] for i in places])}
                for i in places:
                    out[i] = read[out[i]]
            return out

    def next_outbox(self) -> dt.datetime | None:
        with self.transaction():
            row = self._one("SELECT MIN(next_attempt) FROM outbox WHERE status IN ('pending', 'sending')")
            return from_micros(row[0]) if row else None

    def update_outbox(self, row: OutboxRow) -> None:
        with self.transaction():
            if row.status == "sent":
                self._sent += 1
            self._row_updates[row.key] = row

    def outbox(self) -> list[OutboxRow]:
        with self.transaction():
            self._flush()
            return [self._action(row) for row in
                    self._rows(f"SELECT {self._OUTBOX_COLUMNS} FROM outbox ORDER BY id")]

    def release_outbox(self, rows: list[OutboxRow]) -> None:
        """Claimed rows a batch did not get to stay as they are: due, and claimed
        again by the next batch once this transaction ends."""

    def cancel_outbox(self, flow: str, limit: int) -> int:
        with self.transaction():
            self._flush()
            cursor = self._execute(
                # (the first condition is the due index's: it finds the rows to do)
                "UPDATE outbox SET status = 'cancelled', data = NULL WHERE id IN (SELECT id FROM "
                "outbox WHERE status IN ('pending', 'sending') AND status = 'pending' AND flow = ? "
                "LIMIT ?)", (flow, limit))
            return cursor.rowcount

    @property
    def sent(self) -> int:
        """How many outbox rows were delivered (their rows are not kept)."""
        with self.transaction():
            row = self._one("SELECT SUM(CAST(value AS BIGINT)) FROM meta WHERE key LIKE 'sent%'")
            return int(row[0] or 0) + self._sent

    def outbox_counts(self) -> Counter:
        """(flow, status) -> outbox rows, delivered ones included as `sent`
        (under the flow `*`: their rows are gone)."""
        with self.transaction():
            self._flush()
            counted: Counter = Counter()
            for flow, status, number in self._rows(
                    "SELECT flow, status, COUNT(*) FROM outbox GROUP BY flow, status"):
                counted[flow, status] = number
            counted["*", "sent"] = self.sent
            return counted

    def dead_letter_count(self) -> int:
        with self.transaction():
            return self._one("SELECT COUNT(*) FROM dead")[0]

    # ------------------------------------------------------------------ people
    def person(self, pid: str) -> dict | None:
        found = self._people.get(pid)
        if found is not None:
            return found
        if pid in self._no_person:
            return None
        with self.transaction():
            row = self._one("SELECT data, memberships FROM people WHERE pid = ?"
                            + self.lock_suffix.format(table="people"), (pid,))
            if row is None:
                return None
            found = self._people[pid] = {"data": _loads(row[0]),
                                         "memberships": _loads(row[1]) if row[1] else EMPTY}
            return found

    def put_person(self, pid: str, record: dict) -> None:
        """A person's new record. Participants whose rows share the person's data
        (they have none of their own) get the old data written into their rows
        first: a person's change reaches a run only through its own steps, as in
        memory."""
        with self.transaction():
            before = self.person(pid)
            if before is not None and before["data"] is not record["data"] \
                    and before["data"] != record["data"]:
                self._keep_own_data(pid, before["data"])
            self._people[pid] = record
            self._no_person.discard(pid)
            self._people_dirty.add(pid)

    def _keep_own_data(self, pid: str, data: dict) -> None:
        flow_ids = []
        for record in self.flows():
            key = (record.name, pid)
            if key in self._saved:
                continue  # its buffered state is written at commit, data compared then
            if key in self._read:  # read ahead: no need to ask the database
                p = self._read[key]
                if p is not None and (p.data is data or p.data == data):
                    self.save(p)  # written at commit with the old data as its own
                continue
            flow_ids.append(self._flow_id(record.name))
        if not flow_ids:
            return
        marks = ", ".join("?" * len(flow_ids))
        rows = self._rows(f"SELECT flow, run, state FROM participants WHERE flow IN ({marks}) AND "
                          f"pid = ? AND current = 1" + self.lock_suffix.format(table="participants"),
                          (*flow_ids, pid))
        updates = []
        for flow_id, run, text in rows:
            if (self._flow_name(flow_id), pid) in self._saved:
                continue  # its buffered state is written at commit, data compared then
            state = _loads(text)
            if "d" not in state:
                state["d"] = data
                updates.append((_dumps(state), flow_id, pid, run))
        self._executemany("UPDATE participants SET state = ? WHERE flow = ? AND pid = ? AND run = ?",
                          updates)

    # ------------------------------------------------------------------ dead letters
    def dead_letter(self, letter: DeadLetter) -> None:
        with self.transaction():
            self._execute("INSERT INTO dead(kind, event, reason, at) VALUES (?, ?, ?, ?)",
                          (letter.kind, json.dumps(letter.event, default=repr), letter.reason,
                           to_micros(letter.at)))

    def dead_letters(self) -> list[DeadLetter]:
        with self.transaction():
            return [DeadLetter(_loads(event), reason, from_micros(at), kind) for kind, event, reason, at
                    in self._rows("SELECT kind, event, reason, at FROM dead ORDER BY seq")]

    # ------------------------------------------------------------------ figures and hints
    def transitions(self) -> int:
        """How many transition records there are (one per move of a participant)."""
        with self.transaction():
            return self._one("SELECT COUNT(*) FROM transitions")[0]

    def _notify(self) -> None:
        """Tell other workers that something changed (PostgreSQL: NOTIFY)."""

    def close(self) -> None:
        self.db.close()


def _copy_record(record: FlowRecord) -> FlowRecord:
    return FlowRecord(record.name, record.status, record.version, record.paused_at, record.kind,
                      dict(record.migration))
