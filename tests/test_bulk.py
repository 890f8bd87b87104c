"""Bulk advancement (DESIGN §8) changes nothing but speed.

- `bulk.step_many` / `enter_many` give, participant by participant, what
  `interpreter.step` / `enter` give, over every scenario flow;
- an engine that advances and enrols in bulk, with the memory store handing a
  tick's new outbox rows straight to delivery, ends in the same state and
  delivers the same actions in the same order as one that goes one participant
  at a time through the store protocol (a listener turns the bulk paths off);
- templates of text and `{{ record.field }}`, rendered without Jinja, give
  Jinja's text and Jinja's errors.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import zlib
from pathlib import Path
from types import MappingProxyType

import pytest

from flowlang import Engine, EngineError, VirtualClock, compile_project, project_from_texts
from flowlang.runtime import bulk, render
from flowlang.runtime.interpreter import Program, enter, step
from flowlang.runtime.state import Participant
from flowlang.runtime.store import MemoryStore

START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def _projects() -> dict[str, dict]:
    found = {}
    for folder in sorted(p for p in SCENARIOS.iterdir() if p.is_dir()):
        texts = {f.name: f.read_text(encoding="utf-8") for f in sorted(folder.glob("*.flow"))}
        if texts:
            found[folder.name] = compile_project(project_from_texts(texts)).machines
    return found


PROJECTS = _projects()
FLOWS = [(project, name) for project, machines in PROJECTS.items()
         for name, machine in machines.items() if machine["kind"] == "flow"]
FIRST_NAMES = ("Ann", "Bob", "Eve")


def person_data(rng: random.Random) -> dict:
    data = {}
    if rng.random() < 0.8:
        data["first_name"] = rng.choice(FIRST_NAMES)
    for name, values in (("score", range(0, 120)), ("mobile", ["+47 1234"]),
                         ("country", ["NO", "SE", "US"]), ("language", ["nb", "sv", "en"]),
                         ("reminders", range(4))):
        if rng.random() < 0.6:
            data[name] = rng.choice(values)
    if rng.random() < 0.2:
        data["company"] = {"name": "ACME"}
    return data


EVENTS = [{"type": "email.opened", "email": "Welcome"}, {"type": "email.opened", "email": "Reminder"},
          {"type": "email.bounced", "email": "Welcome"}, {"type": "link.clicked", "link": "offer"},
          {"type": "selection.added", "selection": "Customers"}, {"type": "task.done"},
          {"type": "data.changed", "set": {"score": 150}}, {"type": "form.submitted", "form": "signup"}]


def seen(result) -> str:
    """Everything a step result says, as text."""
    return json.dumps([said(result.participant, result.actions), result.wake_at,
                       list(result.trace)], default=str)


def said(participant, actions) -> str:
    """A participant and its actions (with their outbox state), as text."""
    return json.dumps([participant.to_json(),
                       [[a.key, a.flow, a.participant, a.step, a.action, a.do.get("id"), a.at,
                         a.data, a.participant_type, a.attempts, a.next_attempt, a.status, a.error]
                        for a in actions]], sort_keys=True, default=str)


# ----------------------------------------------------------------------------- the interpreter

@pytest.mark.parametrize("project, flow", FLOWS, ids=[f"{p}-{f}" for p, f in FLOWS])
def test_bulk_steps_give_what_single_steps_give(project, flow):
    rng = random.Random(zlib.crc32(f"{project}:{flow}".encode()))
    program = Program(PROJECTS[project][flow], seed=rng.randrange(3))
    people = [Participant(f"p{i}", flow, program.version, person_data(rng),
                          {"selection": frozenset({"Customers"})} if rng.random() < 0.1 else None)
              for i in range(30)]
    explain = {"p1", "p7"}
    singles = [enter(program, p, START, p.id in explain) for p in people]
    assert [seen(r) for r in bulk.enter_many(program, people, START, explain)] == \
        [seen(r) for r in singles]
    assert [said(*outcome) for outcome in bulk.enter_outcomes(program, people, START)] == \
        [said(r.participant, r.actions) for r in singles]
    assert [said(*outcome) for outcome in bulk.enter_outcomes(
        program, [p.copy() for p in people], START, own=True)] == \
        [said(r.participant, r.actions) for r in singles]
    current = [r.participant for r in singles]
    now = START
    for _ in range(25):
        wakes = [p.wake_at for p in current if p.status == "active" and p.wake_at is not None]
        if not wakes:
            break
        now = max(now, min(wakes)) + dt.timedelta(minutes=rng.choice([0, 0, 1, 60]))
        singles = [step(program, p, now, None, p.id in explain) for p in current]
        assert [seen(r) for r in bulk.step_many(program, current, now, explain)] == \
            [seen(r) for r in singles]
        assert [said(*outcome) for outcome in bulk.step_outcomes(program, current, now)] == \
            [said(r.participant, r.actions) for r in singles]
        current = [r.participant for r in singles]
        # some events now and then, so that histories and data differ
        for index, p in enumerate(current):
            if p.status == "active" and rng.random() < 0.2:
                event = {**rng.choice(EVENTS), "participant": p.id}
                current[index] = step(program, p, now, event).participant


def test_bulk_steps_leave_the_given_participants_unchanged():
    machine = PROJECTS["goto_loop"]["reminders"]
    program = Program(machine)
    people = [Participant(f"p{i}", "reminders", program.version, {"first_name": "Ann"})
              for i in range(5)]
    before = [json.dumps(p.to_json(), default=str) for p in people]
    entered = [r.participant for r in bulk.enter_many(program, people, START)]
    assert [json.dumps(p.to_json(), default=str) for p in people] == before
    before = [json.dumps(p.to_json(), default=str) for p in entered]
    bulk.step_many(program, entered, START + dt.timedelta(days=10))
    assert [json.dumps(p.to_json(), default=str) for p in entered] == before


def test_those_who_travel_together_share_their_path():
    program = Program(PROJECTS["goto_loop"]["reminders"])
    people = [Participant(f"p{i}", "reminders", program.version, {"first_name": "Ann"})
              for i in range(3)]
    entered = [r.participant for r in bulk.enter_many(program, people, START)]
    assert len({id(p.path) for p in entered}) == 1
    assert entered[0].path == enter(program, people[0], START).participant.path


# ----------------------------------------------------------------------------- the engine

def drive(seed: int, *, one_at_a_time: bool, store: MemoryStore) -> list:
    """Random enrolments (one and many), events, clock moves, ticks and
    lifecycle calls on one scenario project; a handler that fails now and then
    and sometimes enrols someone itself. Returns everything that happened."""
    rng = random.Random(seed)
    project = sorted(PROJECTS)[seed % len(PROJECTS)]
    machines = PROJECTS[project]
    flows = sorted(machines)
    clock = VirtualClock(START)
    engine = Engine(store, clock, seed=seed % 3, max_attempts=rng.choice([1, 2, 3]),
                    backoff=dt.timedelta(minutes=rng.choice([1, 30])),
                    batch=rng.choice([1, 3, 10_000]))
    log: list = []
    failing = rng.choice([0, 10, 40])
    reentrant = rng.random() < 0.3

    def handler(d) -> None:
        try:
            shown = [d.settings, d.args]
        except Exception as e:  # noqa: BLE001 - a template error is part of what happened
            shown = str(e)
        log.append(["deliver", d.key, d.participant, d.step, d.action, d.at, d.attempt, shown])
        if failing and zlib.crc32(f"{d.key}:{d.attempt}".encode()) % 100 < failing:
            raise ConnectionError("down")
        if reentrant and zlib.crc32(d.key.encode()) % 7 == 0:
            flow = flows[zlib.crc32(d.key.encode()) % len(flows)]
            log.append(["enrolled", engine.enroll(flow, "h" + d.participant, {"first_name": "H"})])

    engine.register("*", handler)
    if one_at_a_time:
        engine.listeners.append(lambda result: None)
    for name, machine in machines.items():
        engine.deploy(machine)
        if rng.random() < 0.9:
            engine.start(name)
    people = [f"p{i}" for i in range(rng.choice([3, 8, 30]))]
    for _ in range(rng.choice([20, 60])):
        r = rng.random()
        flow = rng.choice(flows)
        try:
            if r < 0.35:
                offers = [(rng.choice(people), person_data(rng))
                          + (({"selection": ["Stop"]} if rng.random() < 0.1 else {},)
                             if rng.random() < 0.5 else ())
                          for _ in range(rng.randrange(0, 12))]
                if one_at_a_time:
                    outcome: dict = {}
                    for offer in offers:
                        status = engine.enroll(flow, *offer).status
                        outcome[status] = outcome.get(status, 0) + 1
                else:
                    outcome = dict(engine.enroll_many(flow, offers))
                log.append(["enrol", flow, list(outcome.items())])
            elif r < 0.4:
                event = {**rng.choice(EVENTS), "participant": rng.choice(people + ["ghost"])}
                log.append(["ingest", engine.ingest(event)])
            elif r < 0.5:
                events = [{**rng.choice(EVENTS), "participant": rng.choice(people + ["ghost"])}
                          for _ in range(rng.randrange(0, 12))]
                if rng.random() < 0.1:
                    events.append({"type": "email.opened"})  # malformed: a dead letter
                if one_at_a_time:
                    outcome = {}
                    for event in events:
                        kind = engine.ingest(event).split(":")[0]
                        outcome[kind] = outcome.get(kind, 0) + 1
                else:
                    outcome = dict(engine.ingest_many(events))
                log.append(["ingest many", list(outcome.items())])
            elif r < 0.75:
                minutes = rng.choice([0, 1, 30, 60 * 24, 60 * 24 * 3, rng.randrange(0, 60 * 24 * 8)])
                engine.run_until(clock.now() + dt.timedelta(minutes=minutes))
            elif r < 0.8:
                # the clock jumps: timers and retries fall due together at the next tick
                clock.advance(dt.timedelta(minutes=rng.choice([1, 60, 60 * 30])))
            elif r < 0.9:
                log.append(["tick", engine.tick()])
            else:
                control = rng.choice(["start", "pause", "resume", "end"])
                getattr(engine, control)(flow)
                log.append([control, flow])
        except EngineError as e:
            log.append(["refused", str(e)])
        log.append(["state", sorted(json.dumps(p.to_json(), sort_keys=True, default=str)
                                    for flow in flows for p in store.participants(flow)),
                    [engine.counts(flow) for flow in flows],
                    sorted((row.key, row.status, row.attempts, row.next_attempt, row.error)
                           for row in store.outbox()),
                    [(d.event, d.reason) for d in store.dead_letters()],
                    engine.next_wake()])
    return json.loads(json.dumps(log, default=str))


@pytest.mark.parametrize("seed", range(40))
def test_bulk_engine_does_what_one_at_a_time_does(seed):
    expected = drive(seed, one_at_a_time=True, store=MemoryStore())
    assert drive(seed, one_at_a_time=False, store=MemoryStore()) == expected


@pytest.mark.parametrize("seed", range(12))
def test_a_bulk_enrolment_that_fails_is_done_again_one_at_a_time(seed, monkeypatch):
    """The engine's candidates enter in bulk without copies, so a walk that
    fails half-way has changed them: the one-at-a-time route must start again
    from the people, not from what the walk left."""
    expected = drive(seed, one_at_a_time=True, store=MemoryStore())
    real = bulk.enter_outcomes

    def walk_then_fail(program, participants, now, own=False):
        real(program, participants, now, own=own)
        raise RuntimeError("a bug in the bulk walk")
    monkeypatch.setattr(bulk, "enter_outcomes", walk_then_fail)
    assert drive(seed, one_at_a_time=False, store=MemoryStore()) == expected


def test_enroll_many_takes_enroll_arguments_and_keeps_first_come_first_served():
    clock = VirtualClock(START)
    engine = Engine(clock=clock, batch=4)
    for machine in PROJECTS["once_per_person"].values():
        engine.deploy(machine)
        engine.start(machine["name"])
    flow = next(iter(PROJECTS["once_per_person"]))
    offers = [("a", {"first_name": "Ann"}), ("b", {"first_name": "Bob"}, {"selection": ["X"]}),
              ("a", {"first_name": "Ann"}), ("c", None, None, None)]
    outcome = engine.enroll_many(flow, offers)
    assert outcome == {"active": 3, "refused": 1}
    assert engine.store.person("b")["memberships"] == {"selection": ["X"]}
    with pytest.raises(TypeError):
        engine.enroll_many(flow, [("d", {}, None, None, "one too many")])


# ----------------------------------------------------------------------------- templates

class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text")


TEMPLATES = [
    "Welcome, {{ person.first_name }}", "{{ person.first_name }}", "{{ person.first_name }}!",
    "Hi {{ person.first_name }}, see our offer.", "{{ person.first_name }}{{ person.score }}\n",
    "{{ person.company.name }} x", "{{ company.name }}", "{{ person.items }}", "{{ person.keys }}",
    "{{ person._private }}", "{{ person.__class__ }}", "a {{- person.first_name -}} b", "{{ person }}",
    "{{ person['first_name'] }}", "{% raw %}{{{% endraw %}{{ person.first_name }}",
    "{{ person.first_name }", "{# note #}{{ person.first_name }}", "{{ person.tags }}",
    "{{ person.unprintable }}", "{{ person.none }}", "no template at all",
]
DATA = [
    {"first_name": "Ann", "score": 3, "company": {"name": "ACME"}, "tags": ["a", "b"], "none": None,
     "_private": 1, "items": 5, "unprintable": Unprintable()},
    {}, MappingProxyType({}), MappingProxyType({"first_name": "Ann"}), {"company": "a text"},
    {"company": None}, {"first_name": 1.5, "score": True, "company": {"name": {"a": 1}}},
]


def _outcome(function, *args):
    try:
        return "text", function(*args)
    except render.RenderError as e:
        return "error", str(e)


@pytest.mark.parametrize("template", TEMPLATES)
def test_plain_templates_render_as_jinja_does(template):
    for data in DATA:
        for record in ("person", "company"):
            expected = ("text", template) if "{" not in template else \
                _outcome(render._render_jinja, template, record, data)
            assert _outcome(render.render_text, template, record, data) == expected, (data, record)


RETRIED = """
flow twice {
  settings { email from "a@acme.example"; email reply_to "a@acme.example" }
  send email "A" { subject "A for {{ person.first_name }}" }
  wait 1 day
  send email "B" { subject "B for {{ person.first_name }}" }
  complete
}
"""


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_rows_already_due_are_delivered_before_those_a_tick_makes(kind, tmp_path):
    from flowlang.runtime.sqlite_store import SqliteStore
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "s.db")
    clock = VirtualClock(START)
    engine = Engine(store, clock, backoff=dt.timedelta(minutes=30))
    delivered = []

    def handler(d) -> None:
        if d.participant == "x" and d.step.startswith("send-email-a") and d.attempt == 1:
            raise ConnectionError("down")
        delivered.append((d.participant, d.step[:12], d.attempt))

    engine.register("*", handler)
    machine = compile_project(project_from_texts({"f.flow": RETRIED})).machines["twice"]
    engine.deploy(machine)
    engine.start("twice")
    engine.enroll_many("twice", [("x", {"first_name": "X"}), ("y", {"first_name": "Y"})])
    engine.tick()
    assert delivered == [("y", "send-email-a", 1)]
    clock.advance(dt.timedelta(days=2))  # the retry and both timers are due at this tick
    engine.tick()
    assert delivered[1:] == [("x", "send-email-a", 2), ("x", "send-email-b", 1),
                             ("y", "send-email-b", 1)]


HAND_OVER_IN_ONE_BATCH = {"flows.flow": '''
flow first "First" {
  wait 1 day
  add to flow second
  complete
}

flow second "Second" {
  wait 1 day
  add to selection "Done"
  complete
}
'''}


@pytest.mark.parametrize("one_at_a_time", [True, False])
def test_a_hand_over_sees_the_saves_before_it_and_not_those_after(one_at_a_time):
    """One tick wakes a person's runs in two flows; the first hands the person
    over to the second, whose run is still active when that happens (it is
    saved after): the hand-over is refused, in bulk as one at a time."""
    machines = compile_project(project_from_texts(HAND_OVER_IN_ONE_BATCH)).machines
    engine = Engine(MemoryStore(), VirtualClock(START))
    if one_at_a_time:
        engine.listeners.append(lambda result: None)
    for name in ("first", "second"):
        engine.deploy(machines[name])
        engine.start(name)
    engine.enroll("first", "p1", {"first_name": "Ann"})
    engine.enroll("second", "p1")
    engine.run_until(START + dt.timedelta(days=2))
    (second,) = engine.store.participants("second")
    assert (second.run, second.status) == (1, "completed")
    assert engine.store.person("p1")["memberships"] == {"selection": ["Done"]}


def test_people_given_the_same_memberships_share_them():
    """A membership change worked out once for everyone who had the same
    memberships (a million people added to one selection: one new record each)."""
    machines = compile_project(project_from_texts(HAND_OVER_IN_ONE_BATCH)).machines
    engine = Engine(MemoryStore(), VirtualClock(START))
    engine.deploy(machines["second"])
    engine.start("second")
    engine.enroll_many("second", [(f"p{i}", {"first_name": "Ann"}) for i in range(5)])
    engine.run_until(START + dt.timedelta(days=2))
    records = [engine.store.person(f"p{i}")["memberships"] for i in range(5)]
    assert records[0] == {"selection": ["Done"]}
    assert all(record is records[0] for record in records)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_tick_delivers_each_batch_before_it_advances_the_next(kind, tmp_path):
    """When many timers fire together, the first batch's actions reach the host
    before the next batch is advanced (not after the whole backlog)."""
    from flowlang.runtime.sqlite_store import SqliteStore
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "s.db")
    clock = VirtualClock(START)
    engine = Engine(store, clock, batch=2)
    seen = []

    def handler(d) -> None:
        if d.step.startswith("send-email-b"):
            with store.reading():
                waiting = sum(p.step == "wait-1-day" for p in store.participants("twice"))
            seen.append((d.participant, waiting))

    engine.register("*", handler)
    machine = compile_project(project_from_texts({"f.flow": RETRIED})).machines["twice"]
    engine.deploy(machine)
    engine.start("twice")
    engine.enroll_many("twice", [(f"p{i}", {"first_name": "X"}) for i in range(6)])
    engine.tick()
    clock.advance(dt.timedelta(days=2))
    engine.tick()
    assert seen == [("p0", 4), ("p1", 4), ("p2", 2), ("p3", 2), ("p4", 0), ("p5", 0)]
