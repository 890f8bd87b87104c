"""Time comes from a clock object: the real one in production, a virtual one in
simulations and tests (no test sleeps)."""
from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc


class RealClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)


class VirtualClock:
    """A clock that only moves when told to; moving it backwards is allowed (the
    engine never un-does what it did, it just sees an earlier `now`)."""

    def __init__(self, start: dt.datetime):
        self._now = _aware(start)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = _aware(when)

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


def _aware(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("the clock needs an aware datetime (with a time zone)")
    return when.astimezone(UTC)
