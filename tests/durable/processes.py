"""Worker processes for the reliability tests: start `worker_process.py`, wait
for it with a bounded wait, kill it with SIGKILL, and the kill loop that does
that at seeded random moments spread over a whole run."""
from __future__ import annotations

import itertools
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from durable import harness
from flowlang.runtime.crashpoints import EXIT_STATUS
from flowlang.runtime.stores import open_store

WORKER = Path(__file__).parent / "worker_process.py"
#: the longest a test waits for its workers (a hung worker fails the test
#: instead of hanging CI)
BUDGET = 150.0

_lives = itertools.count(1)


class WorkerProcess:
    """One run of `durable/worker_process.py`."""

    def __init__(self, url: str, state: Path, *args: str, crash_at: str | None = None):
        env = {k: v for k, v in os.environ.items() if k != "FLOWLANG_CRASH_AT"}
        if crash_at:
            env["FLOWLANG_CRASH_AT"] = crash_at
        self.stderr_path = state / f"stderr-{next(_lives)}.txt"
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), *args, "--db", url, "--state", str(state)],
                stdout=subprocess.PIPE, stderr=stderr, env=env)

    def ready(self, deadline: float) -> bool:
        """Wait for its `ready` line; False if it exited first."""
        out = self.proc.stdout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            line = out.readline()
            if line.strip() == b"ready":
                return True
            if not line:
                return False
        self.kill()
        raise AssertionError(f"worker not ready in time:\n{self.stderr()}")

    def wait(self, deadline: float) -> int:
        try:
            return self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"worker did not finish in time:\n{self.stderr()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def expect(self, status: int, deadline: float) -> None:
        code = self.wait(deadline)
        self.proc.stdout.close()
        assert code == status, f"worker exited {code}, expected {status}:\n{self.stderr()}"


def run_args(n: int, batch: int = 500, mode: str = "outbox") -> tuple[str, ...]:
    return ("run", "--participants", str(n), "--batch", str(batch), "--mode", mode)


class Progress:
    """How far a run of the reference timeline got, 0..1, read from the store
    and the sinks between a worker's lives: participants enrolled, transition
    records written, distinct keys delivered, against the oracle's totals."""

    def __init__(self, url: str, state: Path, n: int):
        want = harness.expected(n)
        self.total = n + sum(len(m) for m in want.moves.values()) + len(want.keys)
        self.state = state
        # opened (and the schema made) before any worker runs; read while one
        # runs, in read-only transactions (on SQLite those never wait for the
        # worker's write lock)
        self.store = open_store(url)

    def __call__(self) -> float:
        with self.store.reading():
            done = sum(self.store._rows(f"SELECT COUNT(*) FROM {table}")[0][0]
                       for table in ("participants", "transitions"))
        return min(1.0, (done + len(harness.read_keys(self.state))) / self.total)

    def close(self) -> None:
        self.store.close()


#: the shortest life a killed worker gets after saying `ready` (seconds), at
#: first: doubled after each life that committed nothing
MIN_LIFE = 0.05
#: how often the kill loop looks at a living worker's progress (seconds)
POLL = 0.02
#: the kill points are drawn from progress 0 to this (the run ends at 1): a
#: kill lands a little past its point (the poll), and a restarted worker makes
#: some progress before the next, so the last points need room before the end
LAST_KILL = 0.9


def kill_loop(url: str, state: Path, args: tuple, n: int, *, kills: int, seed: int,
              first_crash: str | None = None) -> list[float]:
    """Run the worker until it finishes, SIGKILLing it `kills` times, each when
    the run has got past a seeded random point of its progress; the first life
    may instead be armed with a crash point. Returns how far the run had got at
    each kill.

    The kill points are drawn over the whole run (enrolment, dispatch, the waves
    of steps, the clicks) as fractions of its progress, not of time, so that
    every planned kill happens whether the store does 20,000 participants in 5
    seconds or in 30 (a loaded CI machine), and whichever of its phases are the
    quick ones. A life lasts at least `floor` seconds after `ready`."""
    progress = Progress(url, state, n)
    try:
        return _kill_loop(url, state, args, progress, kills=kills, seed=seed,
                          first_crash=first_crash)
    finally:
        progress.close()


def _kill_loop(url: str, state: Path, args: tuple, progress: Progress, *, kills: int, seed: int,
               first_crash: str | None) -> list[float]:
    rng = random.Random(seed)
    deadline = time.monotonic() + BUDGET
    points = sorted(rng.uniform(0.0, LAST_KILL) for _ in range(kills))
    at_kills: list[float] = []
    floor = MIN_LIFE
    crash = first_crash
    while True:
        worker = WorkerProcess(url, state, *args, crash_at=crash)
        if crash is not None:
            crash = None
            worker.expect(EXIT_STATUS, deadline)
            continue
        if len(at_kills) >= kills or not worker.ready(deadline):
            worker.expect(0, deadline)
            return at_kills
        done = at_kills[-1] if at_kills else 0.0
        point = points[len(at_kills)]
        started = time.monotonic()
        code = None
        while code is None:
            try:
                code = worker.proc.wait(timeout=POLL)
            except subprocess.TimeoutExpired:
                if time.monotonic() - started >= floor and progress() >= point:
                    break
                if time.monotonic() > deadline:
                    worker.kill()
                    raise AssertionError(f"worker did not finish in time:\n{worker.stderr()}") from None
        if code is None:
            worker.kill()
            at_kills.append(round(progress(), 3))
            if at_kills[-1] <= done:
                # a life too short to commit anything: kills that fast would only
                # show that a worker killed at once does nothing, so give the next more
                floor *= 2
            continue
        worker.proc.stdout.close()
        assert code == 0, f"worker exited {code} after {len(at_kills)} kills:\n{worker.stderr()}"
        return at_kills
