"""A worker process for the reliability tests, run as a subprocess and killed.

    python worker_process.py run --db URL --state DIR --participants N
        [--mode outbox|no-outbox] [--batch B]
    python worker_process.py end --db URL --state DIR [--chunk C]

`run` opens the store, builds an engine on a virtual clock, registers a handler
that appends each delivery's key to `DIR/keys-<pid>.txt` (see `harness.KeySink`),
finishes whatever a killed predecessor left (`Engine.recover`) and runs the
reference timeline (`harness.timeline`) until it is done, then exits 0. `end`
recovers and ends the reference flow. `--mode no-outbox` is the control: an
engine that sends after commit without the outbox (`harness.NoOutboxEngine`).

It prints `ready` once the store is open, so that a test times its kill from
the moment there is work under way rather than from the interpreter's start-up.
A crash point armed in the environment (`FLOWLANG_CRASH_AT`) exits with 86.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durable import harness  # noqa: E402  (after the path is set)
from flowlang.runtime.clock import VirtualClock  # noqa: E402
from flowlang.runtime.engine import Engine  # noqa: E402
from flowlang.runtime.stores import open_store  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "end"))
    parser.add_argument("--db", required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--participants", type=int, default=0)
    parser.add_argument("--mode", choices=("outbox", "no-outbox"), default="outbox")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=1_000)
    args = parser.parse_args(argv)

    store = open_store(args.db)
    kind = harness.NoOutboxEngine if args.mode == "no-outbox" else Engine
    engine = kind(store, VirtualClock(harness.START), batch=args.batch, chunk=args.chunk)
    engine.register("*", harness.KeySink(args.state / f"keys-{os.getpid()}.txt"))
    print("ready", flush=True)

    engine.recover()
    if args.command == "run":
        harness.timeline(engine, args.participants, args.state)
    elif engine.status(harness.FLOW) != "stopped":
        engine.end(harness.FLOW)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
