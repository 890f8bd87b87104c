"""`flowlang simulate`: run a flow on a virtual clock over people and events given
as JSON lines, per the simulation contract of DESIGN §9, so that scenarios can be
written as data and kept as tests."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import attrs

from flowlang.literals import DURATION_UNITS
from flowlang.runtime.calendar import Calendar, zone
from flowlang.runtime.clock import VirtualClock
from flowlang.runtime.engine import CONTROLS, Engine, EngineError
from flowlang.runtime.interpreter import StepResult


class InputError(Exception):
    """A malformed input line: file and line in the message (exit status 2)."""


@attrs.define
class Simulation:
    flow: str
    timezone: str
    start: dt.datetime
    until: dt.datetime
    engine: Engine
    actions: list[dict] = attrs.field(factory=list)
    timeline: list[tuple[dt.datetime, str, str]] = attrs.field(factory=list)
    explain: dict[str, list[str]] = attrs.field(factory=dict)

    def local(self, when: dt.datetime) -> str:
        return when.astimezone(zone(self.timezone)).isoformat()

    def result(self) -> dict:
        """The §9 JSON object."""
        engine = self.engine
        participants = []
        runs = list(engine.store.finished_runs(self.flow)) + list(engine.store.participants(self.flow))
        for p in sorted(runs, key=lambda p: p.id):
            participants.append({"id": p.id, "status": p.status,
                                 "step": p.step if p.step else (p.path[-1] if p.path else None),
                                 "path": list(p.path)})
        return {"participants": participants, "actions": self.actions,
                "counts": engine.counts(self.flow)["steps"]}


_SPAN = re.compile(r"^\s*(\d+)\s*(m|h|d|w|minutes?|hours?|days?|weeks?)\s*$")


def parse_until(text: str, start: dt.datetime, timezone: str) -> dt.datetime:
    """`30d`, `12h`, `2w`, `30 days`, or a date / date-time (in the flow's zone)."""
    match = _SPAN.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        unit = {"m": "minute", "h": "hour", "d": "day", "w": "week"}.get(unit) or DURATION_UNITS[unit]
        return Calendar(timezone).add(start, [[amount, unit]])
    return parse_time(text, timezone, "--until")


def parse_time(text: str, timezone: str, what: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InputError(f"{what}: `{text}` is not a date or date-time (2026-01-05T09:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(timezone))
    return when.astimezone(dt.timezone.utc)


def default_start(timezone: str, today: dt.date) -> dt.datetime:
    """The first Monday of the current year, 09:00, in the flow's time zone."""
    day = dt.date(today.year, 1, 1)
    while day.weekday() != 0:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(9, 0), tzinfo=zone(timezone)).astimezone(dt.timezone.utc)


def read_jsonl(path: str) -> list[tuple[int, dict]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    return parse_jsonl(text, path)


def parse_jsonl(text: str, name: str) -> list[tuple[int, dict]]:
    """(line number, object) per non-blank line; `name` says where in errors."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{name}:{number}: not valid JSON: {e.msg}") from None
        if not isinstance(data, dict):
            raise InputError(f"{name}:{number}: each line must be a JSON object")
        rows.append((number, data))
    return rows


def simulate(machines: dict[str, dict], flow: str, people: list[tuple[int, dict]],
             events: list[tuple[int, dict]], *, start: dt.datetime | None, until: str,
             seed: int = 0, today: dt.date, explain: str | None = None,
             people_file: str = "people", events_file: str = "events") -> Simulation:
    if flow not in machines:
        known = ", ".join(sorted(machines))
        raise InputError(f"no flow or pipeline `{flow}` in the project (there are: {known})")
    timezone = machines[flow]["settings"].get("timezone", "UTC")
    start = start or default_start(timezone, today)
    end = parse_until(until, start, timezone)
    engine = Engine(clock=VirtualClock(start), seed=seed)
    sim = Simulation(flow, timezone, start, end, engine)
    for name, machine in machines.items():
        engine.deploy(machine)
        engine.start(name)

    def record(delivery) -> None:
        if delivery.flow == flow:
            sim.actions.append({"at": sim.local(delivery.at), "participant": delivery.participant,
                                "step": delivery.step, "action": delivery.action,
                                "settings": delivery.settings})

    engine.register("*", record)

    def listen(result: StepResult) -> None:
        p = result.participant
        if p.flow == flow and result.trace:
            sim.explain.setdefault(p.id, []).extend(
                f"{sim.local(engine.clock.now())}  {line}" for line in result.trace)

    if explain:
        engine.listeners.append(listen)
        engine.explain.add(explain)

    agenda: list[tuple[dt.datetime, int, str, dict]] = []
    for number, person in people:
        pid = person.get("id")
        if not isinstance(pid, str) or not pid:
            raise InputError(f"{people_file}:{number}: a person needs an \"id\" (a string)")
        data = person.get("data", {})
        if not isinstance(data, dict):
            raise InputError(f"{people_file}:{number}: \"data\" must be an object")
        at = person.get("enter_at", "")
        when = start if at == "" else None if at is None else parse_time(at, timezone, f"{people_file}:{number}")
        memberships = person.get("memberships") or {}
        if not isinstance(memberships, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in memberships.values()):
            raise InputError(f'{people_file}:{number}: "memberships" must be an object of lists of '
                             'names, like {"selection": ["Customers"]}')
        engine._person(pid, data, memberships)
        if when is not None:
            agenda.append((when, 0, "enter", {"id": pid, "line": number}))
    for number, event in events:
        if "at" not in event:
            raise InputError(f"{events_file}:{number}: an event needs \"at\"")
        when = parse_time(event["at"], timezone, f"{events_file}:{number}")
        if "control" in event:
            if event["control"] not in CONTROLS or not isinstance(event.get("flow"), str):
                raise InputError(f"{events_file}:{number}: a control needs \"flow\" and \"control\" "
                                 f"({', '.join(CONTROLS)})")
        agenda.append((when, 1, "event", {**event, "_line": number}))
    agenda.sort(key=lambda item: (item[0], item[1]))

    for when, _, kind, item in agenda:
        if when > end:
            break
        engine.run_until(when)
        if kind == "enter":
            admission = engine.enroll(flow, item["id"])
            sim.timeline.append((when, item["id"], "entered" if admission.admitted and
                                 admission.status == "active" else
                                 admission.status if admission.admitted else
                                 f"not admitted: {admission.reason}"))
        elif "control" in item:
            try:
                getattr(engine, item["control"])(item["flow"])
            except EngineError as e:
                raise InputError(f"{events_file}:{item['_line']}: {e}") from None
            sim.timeline.append((when, item["flow"], item["control"]))
        else:
            event = {k: v for k, v in item.items() if k not in ("at", "_line")}
            outcome = engine.ingest(event)
            sim.timeline.append((when, str(event.get("participant")), f"{event.get('type')}: {outcome}"))
    engine.run_until(end)
    return sim
