"""Named places where a worker can be made to stop hard, for the reliability
tests: `FLOWLANG_CRASH_AT=after_send:3` makes the process exit (as by `kill -9`:
no cleanup, no commit) the third time it passes `after_send`.

The points are: `after_commit` (a batch of steps and their outbox rows is
committed, nothing delivered yet), `after_send` (a handler returned, its row is
not marked sent), `before_ack` (a batch was delivered, its commit not made) and
`mid_end` (between the chunks of an `end`). Unset, a crash point costs one
comparison.
"""
from __future__ import annotations

import os

ENVIRONMENT = "FLOWLANG_CRASH_AT"
POINTS = frozenset({"after_commit", "after_send", "before_ack", "mid_end"})
#: the exit status of a deliberate crash, for tests to tell it from a failure
EXIT_STATUS = 86


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get(ENVIRONMENT)
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENVIRONMENT}: unknown crash point `{name}` (one of {', '.join(sorted(POINTS))})")
    return name, int(count or 1)


_target = _armed()
_passes = 0


def crashpoint(name: str) -> None:
    global _passes
    if _target is None or _target[0] != name:
        return
    _passes += 1
    if _passes >= _target[1]:
        os._exit(EXIT_STATUS)
