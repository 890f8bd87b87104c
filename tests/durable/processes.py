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
        self.url, self.state = url, state

    def __call__(self) -> float:
        store = open_store(self.url)
        try:
            done = sum(harness.query(store, f"SELECT COUNT(*) FROM {table}")[0][0]
                       for table in ("participants", "transitions"))
        finally:
            store.close()
        return min(1.0, (done + len(harness.read_keys(self.state))) / self.total)


#: the shortest life a killed worker gets after saying `ready` (seconds), at
#: first: doubled after each life that committed nothing
MIN_LIFE = 0.15


def kill_loop(url: str, state: Path, args: tuple, n: int, *, kills: int, seed: int,
              first_crash: str | None = None) -> list[float]:
    """Run the worker until it finishes, SIGKILLing it `kills` times, each a seeded
    random delay after it said `ready`; the first life may instead be armed with
    a crash point. Returns how far the run had got at each kill.

    The delays are seeded random fractions of the time the run still needs, as
    estimated from its progress so far, so that the kills spread over the whole
    run (enrolment, dispatch, the waves of steps, the clicks) whether the store
    does 20,000 participants in 5 seconds or in 30 (a loaded CI machine)."""
    rng = random.Random(seed)
    deadline = time.monotonic() + BUDGET
    progress = Progress(url, state, n)
    at_kills: list[float] = []
    alive = 0.0  # seconds the workers ran after saying `ready`
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
        if done < 0.01:
            delay = rng.uniform(1.0, 3.0) * floor
        else:
            remaining = alive * (1 - done) / done
            # a share of the time left, less than an even share, so that an
            # estimate a little long still leaves room for the last kills
            delay = max(floor, rng.uniform(0.2, 1.0) * remaining / (kills - len(at_kills) + 1))
        started = time.monotonic()
        try:
            code = worker.proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            worker.kill()
            alive += time.monotonic() - started
            at_kills.append(round(progress(), 3))
            if at_kills[-1] <= done:
                # a life too short to commit anything: kills that fast would only
                # show that a worker killed at once does nothing, so give the next more
                floor *= 2
            continue
        worker.proc.stdout.close()
        assert code == 0, f"worker exited {code}:\n{worker.stderr()}"
        return at_kills
