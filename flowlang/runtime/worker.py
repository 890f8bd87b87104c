"""A worker: the loop that keeps an engine moving on a durable store.

Each round claims and advances everyone whose time has come and delivers due
outbox rows (`Engine.tick`), a batch per transaction; when nothing is due it
waits until the next wake-up, a hint from another process (PostgreSQL's
LISTEN/NOTIFY), or the polling backstop, whichever comes first. A stop request
(Ctrl-C, SIGTERM) is honoured between batches, never inside one.
"""
from __future__ import annotations

import time
from typing import Callable

from flowlang.runtime.engine import Engine

#: how long an idle worker waits before it looks at its stop flag again
SLICE = 0.1


class Worker:
    def __init__(self, engine: Engine, *, poll: float = 1.0,
                 progress: Callable[[int, int], None] | None = None):
        self.engine = engine
        #: the longest wait between looks at the store, in seconds
        self.poll = poll
        #: called after each round with (participants moved, actions delivered)
        self.progress = progress
        self.stopping = StopFlag()
        self.moved = 0
        self.delivered = 0

    def stop(self) -> None:
        """Stop after the current batch. Safe in a signal handler: it only sets a
        flag (a threading.Event could deadlock there on its own lock)."""
        self.stopping.set()

    def round(self) -> tuple[int, int]:
        """One pass: advance everyone due now, deliver what is due."""
        engine = self.engine
        delivered_before = engine.delivered
        moved = engine.tick(stop=self.stopping)
        delivered = engine.delivered - delivered_before
        self.moved += moved
        self.delivered += delivered
        if self.progress is not None:
            self.progress(moved, delivered)
        return moved, delivered

    def run(self, until_idle: bool = True) -> None:
        """Work until nothing is due (`until_idle`) or until stopped."""
        self.engine.recover()
        while not self.stopping.is_set():
            moved, delivered = self.round()
            if moved or delivered:
                continue
            maintain = getattr(self.engine.store, "maintain", None)
            if maintain is not None:
                maintain()
            if until_idle:
                return
            self._wait()

    def _wait(self) -> None:
        """Until the next wake-up, a hint, the poll interval, or a stop request:
        in slices, so that a stop is seen within one."""
        wake = self.engine.next_wake()
        now = self.engine.clock.now()
        pause = self.poll if wake is None else max(0.0, min(self.poll, (wake - now).total_seconds()))
        listen = getattr(self.engine.store, "wait_for_hint", None)
        deadline = time.monotonic() + pause
        while not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if listen is not None:
                if listen(min(left, SLICE)):
                    return
            else:
                time.sleep(min(left, SLICE))


class StopFlag:
    """A stop request: the interface of threading.Event that the engine's batch
    loops look at, without a lock (so a signal handler can set it)."""

    __slots__ = ("_set",)

    def __init__(self):
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set
