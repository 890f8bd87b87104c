"""Literal values of the language and how their text becomes a value.

Parsing a literal never raises: it returns the value, or a `LiteralError` whose
message the parser turns into an FL101 diagnostic.
"""
from __future__ import annotations

import calendar
import datetime as _dt
import difflib
import re
import textwrap

import attrs

Number = int | float

#: Duration units, by every spelling the language accepts, to their canonical name.
DURATION_UNITS = {
    "minute": "minute", "minutes": "minute",
    "hour": "hour", "hours": "hour",
    "day": "day", "days": "day",
    "workday": "workday", "workdays": "workday",
    "week": "week", "weeks": "week",
}
#: Size units for attachments, to bytes.
SIZE_UNITS = {"kB": 1000, "KB": 1000, "MB": 1000 * 1000}

_MINUTES = {"minute": 1, "hour": 60, "day": 24 * 60, "week": 7 * 24 * 60}


class LiteralError(ValueError):
    """The text of a literal does not denote a value; the message says why."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


@attrs.frozen
class Duration:
    """A duration with its units kept (`1 day 12 hours`), because a workday is not
    a fixed number of minutes: it depends on the flow's calendar."""

    parts: tuple[tuple[Number, str], ...]  # (amount, canonical unit)

    @property
    def workdays(self) -> Number:
        return sum(n for n, unit in self.parts if unit == "workday")

    @property
    def minutes(self) -> Number:
        """Calendar minutes, not counting workdays."""
        return sum(n * _MINUTES[unit] for n, unit in self.parts if unit != "workday")

    @property
    def is_positive(self) -> bool:
        return all(n >= 0 for n, _ in self.parts) and (self.minutes > 0 or self.workdays > 0)

    def __str__(self) -> str:
        return " ".join(f"{format_number(n)} {unit_text(unit, n)}" for n, unit in self.parts)


@attrs.frozen
class Size:
    """A file size (`3 MB`), kept with its unit."""

    amount: Number
    unit: str

    @property
    def bytes(self) -> Number:
        return self.amount * SIZE_UNITS[self.unit]

    def __str__(self) -> str:
        return f"{format_number(self.amount)} {self.unit}"


def unit_text(unit: str, amount: Number) -> str:
    return unit if amount == 1 else unit + "s"


def format_number(value: Number) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def parse_number(text: str) -> Number:
    return float(text) if "." in text else int(text)


def parse_quantity(amounts: list[tuple[Number, str | None]]) -> Duration | Size:
    """`[(1, "day"), (12, "hours")]` -> Duration; `[(3, "MB")]` -> Size."""
    parts = []
    for number, unit in amounts:
        if unit is None:
            text = format_number(number)
            raise LiteralError(f"`{text}` needs a unit here, like `{text} days`")
        parts.append((number, unit))
    units = [u for _, u in parts]
    if all(u in SIZE_UNITS for u in units):
        if len(parts) > 1:
            raise LiteralError("a size takes one amount and one unit, like `3 MB`")
        return Size(*parts[0])
    for unit in units:
        if unit not in DURATION_UNITS and unit not in SIZE_UNITS:
            close = difflib.get_close_matches(unit, [*DURATION_UNITS, *SIZE_UNITS], n=1)
            raise LiteralError(
                f"unknown unit `{unit}`",
                f"did you mean `{close[0]}`?" if close else
                "durations use minutes, hours, days, workdays or weeks; sizes use kB or MB")
    if any(u in SIZE_UNITS for u in units):
        raise LiteralError("a quantity cannot mix a size with a duration")
    for number, unit in parts:
        if DURATION_UNITS[unit] == "workday" and number != int(number):
            raise LiteralError(f"`{format_number(number)} {unit}`: workdays count whole days",
                               "write a whole number of workdays, or use hours")
    return Duration(tuple((n, DURATION_UNITS[u]) for n, u in parts))


def parse_date(text: str) -> _dt.date:
    year, month, day = (int(x) for x in text.split("-"))
    if year < 1:
        raise LiteralError(f"`{text}` is not a date: years start at 0001")
    if not 1 <= month <= 12:
        raise LiteralError(f"`{text}` is not a date: there is no month {month}")
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        name = calendar.month_name[month]
        raise LiteralError(f"`{text}` is not a date: {name} {year} has {last} days")
    return _dt.date(year, month, day)


def parse_time(text: str) -> _dt.time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours > 23:
        raise LiteralError(f"`{text}` is not a time of day: hours go from 00 to 23")
    if minutes > 59:
        raise LiteralError(f"`{text}` is not a time of day: minutes go from 00 to 59")
    return _dt.time(hours, minutes)


def parse_percent(text: str) -> Number:
    value = parse_number(text[:-1])
    if not 0 <= value <= 100:
        raise LiteralError(f"`{text}` is not a percentage: it must lie between 0% and 100%")
    return value


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)", re.S)


def unescape(raw: str) -> str:
    """Resolve `\\"`, `\\\\`, `\\n` and `\\t`; any other escape is an error."""
    if "\\" not in raw:
        return raw

    def replace(match: re.Match) -> str:
        char = match.group(1)
        if char not in _ESCAPES:
            raise LiteralError(f"unknown escape `\\{char}` in a string",
                               'strings know \\" \\\\ \\n and \\t; write \\\\ for a backslash')
        return _ESCAPES[char]

    return _ESCAPE.sub(replace, raw)


def escape(value: str) -> str:
    """The inverse of `unescape` for a one-line string literal's content."""
    return (value.replace("\\", "\\\\").replace('"', '\\"')
            .replace("\n", "\\n").replace("\t", "\\t"))


def parse_string(token: str) -> tuple[str, bool, int]:
    """The value of a string literal, whether it is a `\"\"\"` string, and how many
    lines its value starts below the opening quotes (for positions in templates).

    A `\"\"\"` string is dedented: a blank first line and a blank last line (where
    the delimiters sit) are dropped, and the common indentation removed."""
    if not token.startswith('"""'):
        return unescape(token[1:-1]), False, 0
    lines = token[3:-3].split("\n")
    skipped = 0
    if len(lines) > 1 and not lines[0].strip():
        lines.pop(0)
        skipped = 1
    if len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    text = textwrap.dedent("\n".join(line.rstrip() for line in lines))
    return unescape(text), True, skipped
