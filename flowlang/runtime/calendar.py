"""When a wait ends: durations on the flow's calendar.

Pure functions of (settings, start instant). Calendar days and weeks are added in
the flow's time zone, so `wait 1 day` from 09:00 local is 09:00 local the next day
across a DST change; minutes and hours are added as elapsed time. Workdays skip
the days that are not in the flow's `workdays` and the public holidays of its
`holidays` country (from the `holidays` package), keeping the time of day.
"""
from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UTC = dt.timezone.utc


@functools.lru_cache(maxsize=64)
def zone(name: str) -> dt.tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


@functools.lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> frozenset[dt.date]:
    import holidays
    return frozenset(holidays.country_holidays(country, years=[year]).keys())


class Calendar:
    """A flow's time zone, working days and public holidays."""

    __slots__ = ("tz", "workdays", "country")

    def __init__(self, timezone: str = "UTC", workdays=("mon", "tue", "wed", "thu", "fri"),
                 country: str | None = None):
        self.tz = zone(timezone)
        if isinstance(workdays, str):
            workdays = workdays.split()
        self.workdays = frozenset(_DAYS.index(d) for d in workdays)
        self.country = country.upper() if country else None

    @classmethod
    def of(cls, settings: dict) -> Calendar:
        return cls(settings.get("timezone", "UTC"),
                   settings.get("workdays", "mon tue wed thu fri"), settings.get("holidays"))

    def is_workday(self, day: dt.date) -> bool:
        if day.weekday() not in self.workdays:
            return False
        return not (self.country and day in _holidays(self.country, day.year))

    def add(self, start: dt.datetime, duration: list) -> dt.datetime:
        """`start` plus a duration (`[[1, "day"], [12, "hour"]]`), as an aware UTC instant."""
        local = start.astimezone(self.tz)
        elapsed = dt.timedelta()
        days = 0.0
        workdays = 0
        for amount, unit in duration:
            if unit == "minute":
                elapsed += dt.timedelta(minutes=amount)
            elif unit == "hour":
                elapsed += dt.timedelta(hours=amount)
            elif unit == "day":
                days += amount
            elif unit == "week":
                days += 7 * amount
            elif unit == "workday":
                workdays += int(amount)
        if days:
            whole = int(days)
            wall = local.replace(tzinfo=None) + dt.timedelta(days=whole)
            wall += dt.timedelta(days=days - whole)
            local = self.localize(wall)
        if workdays:
            day = local.date()
            left = workdays
            while left > 0:
                day += dt.timedelta(days=1)
                if self.is_workday(day):
                    left -= 1
            local = self.localize(dt.datetime.combine(day, local.time().replace(tzinfo=None)))
        return (local.astimezone(UTC) + elapsed)

    def localize(self, wall: dt.datetime) -> dt.datetime:
        """A wall-clock time in the flow's zone as an aware instant. A time that does
        not exist (skipped by a DST change) moves forward by the gap."""
        # fold=0 reads a wall time with the offset in force before a change: in a
        # spring gap (02:30 that never happens) that is the instant an hour after
        # the gap began, shown as 03:30; in an autumn overlap, the first 02:30
        return wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC).astimezone(self.tz)

    def at(self, date: str, time: str | None) -> dt.datetime:
        """`wait until DATE [TIME]` as a UTC instant (midnight when no time)."""
        day = dt.date.fromisoformat(date)
        clock = dt.time.fromisoformat(time) if time else dt.time(0, 0)
        return self.localize(dt.datetime.combine(day, clock)).astimezone(UTC)
