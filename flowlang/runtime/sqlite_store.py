"""The embedded default store: one SQLite file (stdlib `sqlite3`).

WAL with `synchronous=FULL` (a committed transaction survives a power cut), a
large page cache, a raised WAL auto-checkpoint (fewer stalls), and a busy
timeout so that a second process waits for the write lock instead of failing.
Every transaction takes the write lock at its start (`BEGIN IMMEDIATE`): one
writer at a time, so claims need no row locks, and a reader never sees a
half-made batch. Several processes may share the file; they take turns.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from flowlang.runtime.sqlstore import NotAStore, SqlStore

SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE versions (id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, ir TEXT NOT NULL);
CREATE TABLE flows (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL, status TEXT NOT NULL, version TEXT, paused_at INTEGER, migration TEXT);
CREATE TABLE participants (seq INTEGER PRIMARY KEY, flow INTEGER NOT NULL, pid TEXT NOT NULL,
  run INTEGER NOT NULL, current INTEGER NOT NULL, status INTEGER NOT NULL, place TEXT NOT NULL,
  wake INTEGER, state TEXT NOT NULL);
CREATE UNIQUE INDEX participants_run ON participants(flow, pid, run);
CREATE INDEX participants_due ON participants(wake) WHERE wake IS NOT NULL;
CREATE TABLE transitions (flow INTEGER NOT NULL, pid TEXT NOT NULL, run INTEGER NOT NULL,
  position INTEGER NOT NULL, moved_to INTEGER NOT NULL, at INTEGER,
  PRIMARY KEY (flow, pid, run, position)) WITHOUT ROWID;
CREATE TABLE action_defs (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, flow TEXT NOT NULL,
  participant TEXT NOT NULL, step TEXT NOT NULL, action TEXT NOT NULL, def INTEGER NOT NULL,
  at INTEGER, data TEXT, participant_type TEXT NOT NULL, attempts INTEGER NOT NULL,
  next_attempt INTEGER, status TEXT NOT NULL, error TEXT);
CREATE INDEX outbox_due ON outbox(next_attempt) WHERE status IN ('pending', 'sending');
CREATE INDEX outbox_pending ON outbox(flow) WHERE status = 'pending';
CREATE TABLE people (pid TEXT PRIMARY KEY, data TEXT NOT NULL, memberships TEXT) WITHOUT ROWID;
CREATE TABLE held (seq INTEGER PRIMARY KEY, flow TEXT NOT NULL, event TEXT NOT NULL);
CREATE INDEX held_flow ON held(flow, seq);
CREATE TABLE dead (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, event TEXT NOT NULL,
  reason TEXT NOT NULL, at INTEGER)
"""

#: v2: participants are looked up by person first (an event, an enrolment, the
#: person's other runs), so the unique index leads with the person; led by the
#: flow, finding one person's run scanned the flow's part of the index
SCHEMA_V2 = """
DROP INDEX participants_run;
CREATE UNIQUE INDEX participants_run ON participants(pid, flow, run)
"""

#: v3: no index of the pending outbox rows by flow: every action paid for it
#: twice (its row written, then deleted when delivered), and only `end` used it,
#: to cancel a flow's rows, which it does as well from the due index
SCHEMA_V3 = """
DROP INDEX outbox_pending
"""

PRAGMAS = (
    # must come first: it only takes on a new file (delivered outbox rows are
    # deleted; `maintain` gives their pages back to the file system)
    "PRAGMA auto_vacuum = INCREMENTAL",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA cache_size = -262144",  # 256 MiB
    "PRAGMA wal_autocheckpoint = 10000",  # pages: a checkpoint every ~40 MB of WAL
    "PRAGMA temp_store = MEMORY",
    "PRAGMA foreign_keys = OFF",
)


#: v4: a participant's place (its step, else the last step passed) is a number
#: into a table of place names: the name was repeated in every row, and was
#: about an eighth of a waiting participant's bytes. SQLite cannot change a
#: column's type, so the table is rebuilt (place moves to the end, as on
#: PostgreSQL, whose migration adds the new column there). The CHECK keeps a
#: worker of an older flowlang, still running, from writing a name into it (SQLite
#: would store the text as it is): its transaction fails instead, as it does on
#: PostgreSQL, where the column is an integer
SCHEMA_V4 = """
CREATE TABLE places (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
INSERT INTO places(name) SELECT DISTINCT place FROM participants ORDER BY place;
CREATE TABLE participants_v4 (seq INTEGER PRIMARY KEY, flow INTEGER NOT NULL, pid TEXT NOT NULL,
  run INTEGER NOT NULL, current INTEGER NOT NULL, status INTEGER NOT NULL, wake INTEGER,
  state TEXT NOT NULL, place INTEGER NOT NULL CHECK (typeof(place) = 'integer'));
INSERT INTO participants_v4(seq, flow, pid, run, current, status, wake, state, place)
  SELECT seq, flow, pid, run, current, status, wake, state, places.id
  FROM participants JOIN places ON places.name = participants.place;
DROP TABLE participants;
ALTER TABLE participants_v4 RENAME TO participants;
CREATE UNIQUE INDEX participants_run ON participants(pid, flow, run);
CREATE INDEX participants_due ON participants(wake) WHERE wake IS NOT NULL
"""

class SqliteStore(SqlStore):
    migrations = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4)
    retry_errors = (sqlite3.IntegrityError, sqlite3.OperationalError)

    def __init__(self, path: str | Path, busy_timeout: float = 60.0, create: bool = True):
        self.path = str(path)
        if not create and not Path(self.path).is_file():
            raise NotAStore(f"no store at {self.path}")
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout,
                                     check_same_thread=False)
        for pragma in PRAGMAS:
            connection.execute(pragma)
        super().__init__(connection)
        try:
            self.migrate(create)
        except BaseException:
            connection.close()
            raise

    @classmethod
    def from_url(cls, url: str, create: bool = True) -> SqliteStore:
        """`sqlite:///relative/file.db`, `sqlite:////absolute/file.db`."""
        return cls(url.removeprefix("sqlite:///"), create=create)

    def _is_retry(self, error: BaseException) -> bool:
        if isinstance(error, sqlite3.IntegrityError):
            return True
        return isinstance(error, sqlite3.OperationalError) and (
            "locked" in str(error) or "busy" in str(error))

    def _begin(self) -> None:
        self.db.execute("BEGIN" if self._reading else "BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.db.execute("COMMIT")

    def _rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def _cursor(self):
        return self.db

    def _schema_version(self) -> int:
        if self._one("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'") is None:
            return 0
        row = self._one("SELECT value FROM meta WHERE key = 'schema'")
        return int(row[0]) if row else 0

    def checkpoint(self) -> None:
        """Fold the write-ahead log back into the file (for backups and sizes)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def maintain(self) -> None:
        """Housekeeping for an idle moment: when more than a quarter of the file is
        free pages (delivered outbox rows are deleted), give them back, then fold
        the write-ahead log into the file."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        if pages and free * 4 > pages:
            # through executescript: a plain execute steps the pragma once, one page
            self.db.executescript("PRAGMA incremental_vacuum;")
        self.checkpoint()
