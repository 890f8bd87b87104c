"""A participant's run through one flow: the value the interpreter steps.

Participants are copied, never changed in place, by the interpreter: `copy()` is
shallow, and every change replaces a container instead of mutating it (copy on
write), so a step is pure and cheap, and an action can keep a reference to the
data it was emitted with.
"""
from __future__ import annotations

import datetime as dt
from types import MappingProxyType

_new = object.__new__

#: The one empty mapping participants and people share until they have data of
#: their own (nothing is ever changed in place, so sharing is safe; read-only to
#: make sure).
EMPTY = MappingProxyType({})

STATUSES = ("queued", "active", "completed", "completed_success", "dropout", "failed")
FINISHED = frozenset({"completed", "completed_success", "dropout", "failed"})
_NO_NAMES: frozenset = frozenset()


class Participant:
    __slots__ = ("id", "flow", "version", "status", "step", "entered_at", "arrived_at", "wake_at",
                 "data", "memberships", "history", "visits", "path", "error", "auto_moves", "run")

    def __init__(self, id: str, flow: str, version: str = "", data: dict | None = None,
                 memberships: dict | None = None):
        self.id = id
        self.flow = flow
        self.version = version
        self.status = "queued"
        self.step: str | None = None
        self.entered_at: dt.datetime | None = None
        self.arrived_at: dt.datetime | None = None
        self.wake_at: dt.datetime | None = None
        self.data: dict = data if data is not None else EMPTY
        #: selection / project / interest -> frozenset of names
        self.memberships: dict[str, frozenset] = memberships if memberships is not None else EMPTY
        #: (event type, payload) since the participant entered the flow
        self.history: tuple = ()
        self.visits: dict[str, int] = EMPTY
        self.path: tuple = ()
        self.error: str | None = None
        self.auto_moves = True  # pipelines: off after a manual move backwards
        self.run = 1  # which run of this flow it is for the person (part of action keys)

    def copy(self) -> Participant:
        other = _new(Participant)
        other.id = self.id
        other.flow = self.flow
        other.version = self.version
        other.status = self.status
        other.step = self.step
        other.entered_at = self.entered_at
        other.arrived_at = self.arrived_at
        other.wake_at = self.wake_at
        other.data = self.data
        other.memberships = self.memberships
        other.history = self.history
        other.visits = self.visits
        other.path = self.path
        other.error = self.error
        other.auto_moves = self.auto_moves
        other.run = self.run
        return other

    def member_of(self, kind: str) -> frozenset:
        return self.memberships.get(kind, _NO_NAMES)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def place(self) -> str:
        """Where the participant counts: its step, else the last step it passed."""
        if self.step:
            return self.step
        if self.path:
            return self.path[-1]
        return "(queued)" if self.status == "queued" else "(start)"

    def to_json(self) -> dict:
        def iso(t):
            return t.isoformat() if t is not None else None
        return {"id": self.id, "flow": self.flow, "version": self.version, "status": self.status,
                "step": self.step, "entered_at": iso(self.entered_at),
                "arrived_at": iso(self.arrived_at), "wake_at": iso(self.wake_at),
                "data": self.data, "memberships": {k: sorted(v) for k, v in self.memberships.items()},
                "history": [list(h) for h in self.history], "visits": self.visits,
                "path": list(self.path), "error": self.error, "auto_moves": self.auto_moves,
                "run": self.run}

    @classmethod
    def from_json(cls, data: dict) -> Participant:
        def parse(t):
            return dt.datetime.fromisoformat(t) if t else None
        p = cls(data["id"], data["flow"], data.get("version", ""), data.get("data") or {},
                {k: frozenset(v) for k, v in (data.get("memberships") or {}).items()})
        p.status = data["status"]
        p.step = data.get("step")
        p.entered_at = parse(data.get("entered_at"))
        p.arrived_at = parse(data.get("arrived_at"))
        p.wake_at = parse(data.get("wake_at"))
        p.history = tuple((h[0], h[1]) for h in data.get("history") or ())
        p.visits = dict(data.get("visits") or {})
        p.path = tuple(data.get("path") or ())
        p.error = data.get("error")
        p.auto_moves = data.get("auto_moves", True)
        p.run = data.get("run", 1)
        return p

    def __repr__(self) -> str:
        return f"<Participant {self.id} {self.flow} {self.status} at {self.step}>"
