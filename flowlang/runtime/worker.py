"""A worker: the loop that keeps an engine moving on a durable store.

Each round claims and advances everyone whose time has come and delivers due
outbox rows (`Engine.tick`), a batch per transaction; when nothing is due it
waits until the next wake-up, a hint from another process (PostgreSQL's
LISTEN/NOTIFY), or the polling backstop, whichever comes first. A stop request
(Ctrl-C, SIGTERM) is honoured between batches, never inside one.
"""
from __future__ import annotations

import threading
from typing import Callable

from flowlang.runtime.engine import Engine


class Worker:
    def __init__(self, engine: Engine, *, poll: float = 1.0,
                 progress: Callable[[int, int], None] | None = None):
        self.engine = engine
        #: the longest wait between looks at the store, in seconds
        self.poll = poll
        #: called after each round with (participants moved, actions delivered)
        self.progress = progress
        self.stopping = threading.Event()
        self.moved = 0
        self.delivered = 0

    def stop(self) -> None:
        """Stop after the current batch (safe to call from a signal handler)."""
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
        wake = self.engine.next_wake()
        now = self.engine.clock.now()
        pause = self.poll if wake is None else max(0.0, min(self.poll, (wake - now).total_seconds()))
        listen = getattr(self.engine.store, "wait_for_hint", None)
        if listen is not None:
            listen(pause)
        else:
            self.stopping.wait(pause)
