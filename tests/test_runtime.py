"""The runtime (DESIGN §7, §8): the pure interpreter, the calendar, expressions,
and the engine's lifecycle, outbox, retries, dead letters, counts and deploys.

Flaws found while writing these are pinned as `xfail(strict=True)` tests whose
reason says what is wrong: when one is fixed its test passes, strict xfail
turns that into a failure, and the marker comes off.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from flowlang import Engine, EngineError, VirtualClock, compile_project, project_from_texts
from flowlang.runtime.calendar import Calendar
from flowlang.runtime.expr import compile_expression, evaluate
from flowlang.runtime.interpreter import Program, admits, enter, step
from flowlang.runtime.state import STATUSES, Participant

UTC = dt.timezone.utc
OSLO = Calendar("Europe/Oslo").tz
START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday

SENDER = 'email from "news@acme.example"; email reply_to "support@acme.example"'


# ----------------------------------------------------------------------------- helpers

def machines(text: str, **more: str) -> dict[str, dict]:
    texts = {"main.flow": text, **{f"{k}.flow": v for k, v in more.items()}}
    return compile_project(project_from_texts(texts)).machines


def program(text: str, name: str | None = None, seed: int = 0) -> Program:
    found = machines(text)
    flows = [m for m in found.values() if m["kind"] == "flow"]
    machine = found[name] if name else flows[0]
    return Program(machine, seed)


class Host:
    """An engine on a virtual clock with every flow of a project deployed and
    started, and a catch-all handler that records what it receives."""

    def __init__(self, text: str, start: dt.datetime = START, *, start_flows: bool = True,
                 handler=None, **engine_options):
        self.machines = machines(text)
        self.clock = VirtualClock(start)
        self.engine = Engine(clock=self.clock, **engine_options)
        self.deliveries: list = []
        self.engine.register("*", handler or self.record)
        for name, machine in self.machines.items():
            self.engine.deploy(machine)
            if start_flows:
                self.engine.start(name)

    def record(self, delivery) -> None:
        self.deliveries.append({"key": delivery.key, "flow": delivery.flow, "step": delivery.step,
                                "action": delivery.action, "participant": delivery.participant,
                                "settings": delivery.settings, "args": delivery.args,
                                "at": delivery.at, "delivered": self.clock.now(),
                                "attempt": delivery.attempt})

    def run(self, **delta) -> None:
        self.engine.run_until(self.clock.now() + dt.timedelta(**delta))

    def p(self, flow: str, pid: str) -> Participant:
        return self.engine.store.participant(flow, pid)

    def steps(self, pid: str | None = None) -> list[str]:
        return [d["step"] for d in self.deliveries if pid is None or d["participant"] == pid]


def snapshot(p: Participant) -> str:
    return json.dumps(p.to_json(), sort_keys=True, default=str)


def statuses_of(engine: Engine, flow: str) -> Counter:
    runs = list(engine.store.participants(flow)) + list(engine.store.finished_runs(flow))
    return Counter(p.status for p in runs)


def assert_counts_match(engine: Engine, flow: str) -> None:
    counts = engine.counts(flow)
    expected = statuses_of(engine, flow)
    assert {s: n for s, n in counts["statuses"].items() if n} == dict(expected)
    assert set(counts["statuses"]) == set(STATUSES)
    per_step = Counter()
    for by_status in counts["steps"].values():
        per_step.update(by_status)
    assert per_step == expected


FLOW = f"""
link pricing "https://acme.example/pricing" {{ on click {{ add interest "Pricing" }} }}
flow journey {{
  settings {{ {SENDER}; timezone "Europe/Oslo" }}
  success when person in selection "Customers"
  send email "Hello" {{ subject "Hello {{{{ person.first_name }}}}" }}
  wait 2 days
  wait for clicked link pricing within 3 days else exit {{ add to selection "Cold" }}
  split "AB" random {{
    branch "A" 50% {{ add to selection "A" }}
    branch "B" 50% {{ add to selection "B" }}
  }}
  again: wait 1 day
  update person {{ increase score by 1 }}
  split "Enough" {{
    branch "yes" when person.score >= 3 {{ complete }}
    otherwise {{ goto again }}
  }}
}}
"""


# ----------------------------------------------------------------------------- purity

def test_enter_and_step_leave_the_given_participant_unchanged():
    prog = program(FLOW)
    p = Participant("p1", "journey", data={"first_name": "Ann", "score": 0},
                    memberships={"selection": frozenset({"Newsletter"})})
    before = snapshot(p)
    entered = enter(prog, p, START)
    assert snapshot(p) == before
    assert entered.participant is not p and entered.participant.step == "wait-2-days"

    resting = entered.participant
    before = snapshot(resting)
    event = {"type": "link.clicked", "participant": "p1", "link": "pricing"}
    frozen_event = json.dumps(event, sort_keys=True)
    after_event = step(prog, resting, START + dt.timedelta(hours=1), event)
    assert snapshot(resting) == before
    assert json.dumps(event, sort_keys=True) == frozen_event
    assert after_event.participant.history and not resting.history

    woken = step(prog, after_event.participant, START + dt.timedelta(days=2))
    assert woken.participant.step != after_event.participant.step
    assert after_event.participant.step == "wait-2-days"


def test_the_step_function_is_deterministic():
    prog = program(FLOW, seed=3)

    def run() -> list:
        out = []
        p = Participant("p1", "journey", data={"first_name": "Ann", "score": 0})
        result = enter(prog, p, START)
        out.append((snapshot(result.participant), [a.key for a in result.actions], result.wake_at))
        now = START
        for _ in range(8):
            now = result.wake_at or now + dt.timedelta(hours=1)
            event = {"type": "link.clicked", "participant": "p1", "link": "pricing"} if len(out) == 2 else None
            result = step(prog, result.participant, now, event)
            out.append((snapshot(result.participant), [(a.key, a.action) for a in result.actions],
                        result.wake_at))
        return out

    assert run() == run()


def test_step_on_a_finished_participant_does_nothing():
    prog = program(FLOW)
    p = Participant("p1", "journey")
    p.status = "completed"
    result = step(prog, p, START, {"type": "link.clicked", "participant": "p1", "link": "pricing"})
    assert result.actions == () and result.wake_at is None
    assert result.participant.status == "completed"


def test_random_split_depends_only_on_seed_participant_and_split():
    text = f"""
    flow ab {{
      settings {{ {SENDER} }}
      split "T" random {{
        branch "A" 20% {{ add to selection "A" }}
        branch "B" 30% {{ add to selection "B" }}
        branch "C" 50% {{ add to selection "C" }}
      }}
    }}"""

    def branches(seed: int) -> dict[str, str]:
        prog = program(text, seed=seed)
        return {pid: enter(prog, Participant(pid, "ab"), START).participant.path[1]
                for pid in (f"p{i}" for i in range(3000))}

    first = branches(11)
    assert branches(11) == first
    assert branches(12) != first
    share = Counter(path.split("/")[1] for path in first.values())
    assert abs(share["a"] / 3000 - 0.2) < 0.03
    assert abs(share["b"] / 3000 - 0.3) < 0.03
    assert abs(share["c"] / 3000 - 0.5) < 0.03


def test_admits_checks_exclusion_filter_and_the_trigger_event():
    prog = program(f"""
    form signup {{ on submit {{ add interest "X" }} }}
    flow f {{
      settings {{ {SENDER} }}
      trigger {{
        on form signup submitted
        filter person.country == "NO"
        exclude selection "Stop"
      }}
      wait 1 day
    }}""")
    ok = Participant("a", "f", data={"country": "NO"})
    signup = {"type": "form.submitted", "participant": "a", "form": "signup"}
    assert admits(prog, ok) and admits(prog, ok, signup)
    assert not admits(prog, ok, {**signup, "form": "other"})
    assert not admits(prog, ok, {"type": "email.opened", "participant": "a", "email": "x"})
    assert not admits(prog, Participant("b", "f", data={"country": "SE"}), signup)
    assert not admits(prog, Participant("c", "f", data={"country": "NO"},
                                        memberships={"selection": frozenset({"Stop"})}), signup)


# ----------------------------------------------------------------------------- calendar

def local(instant: dt.datetime) -> str:
    return instant.astimezone(OSLO).isoformat()


@pytest.mark.parametrize("start, duration, expected", [
    # spring forward (29 March 2026): calendar days keep the wall clock, hours do not
    ("2026-03-28T09:00+01:00", [[1, "day"]], "2026-03-29T09:00:00+02:00"),
    ("2026-03-28T09:00+01:00", [[24, "hour"]], "2026-03-29T10:00:00+02:00"),
    ("2026-03-28T09:00+01:00", [[1440, "minute"]], "2026-03-29T10:00:00+02:00"),
    ("2026-03-25T09:00+01:00", [[1, "week"]], "2026-04-01T09:00:00+02:00"),
    ("2026-03-28T09:00+01:00", [[1, "day"], [12, "hour"]], "2026-03-29T21:00:00+02:00"),
    # fall back (25 October 2026)
    ("2026-10-24T09:00+02:00", [[1, "day"]], "2026-10-25T09:00:00+01:00"),
    ("2026-10-24T09:00+02:00", [[24, "hour"]], "2026-10-25T08:00:00+01:00"),
    ("2026-10-20T09:00+02:00", [[2, "week"]], "2026-11-03T09:00:00+01:00"),
])
def test_durations_across_dst_in_oslo(start, duration, expected):
    cal = Calendar("Europe/Oslo")
    assert local(cal.add(dt.datetime.fromisoformat(start), duration)) == expected


@pytest.mark.parametrize("start, workdays, expected", [
    ("2026-03-27T09:00+01:00", 2, "2026-03-31T09:00:00+02:00"),  # Friday -> Tuesday (and DST)
    ("2026-04-01T09:00+02:00", 2, "2026-04-08T09:00:00+02:00"),  # over Easter (Thu, Fri, Mon off)
    ("2026-04-03T11:00+02:00", 1, "2026-04-07T11:00:00+02:00"),  # from Good Friday
    ("2026-05-13T09:00+02:00", 1, "2026-05-15T09:00:00+02:00"),  # Ascension Day skipped
    ("2026-04-30T16:00+02:00", 1, "2026-05-04T16:00:00+02:00"),  # 1 May is a Friday holiday
    ("2026-12-23T10:00+01:00", 2, "2026-12-28T10:00:00+01:00"),  # Christmas Day, 2nd day
])
def test_workdays_skip_weekends_and_norwegian_holidays(start, workdays, expected):
    cal = Calendar("Europe/Oslo", "mon tue wed thu fri", "NO")
    assert local(cal.add(dt.datetime.fromisoformat(start), [[workdays, "workday"]])) == expected


def test_workdays_without_holidays_and_with_other_working_days():
    plain = Calendar("Europe/Oslo")
    assert local(plain.add(dt.datetime.fromisoformat("2026-04-01T09:00+02:00"), [[2, "workday"]])) \
        == "2026-04-03T09:00:00+02:00"  # no holidays: Thursday and Friday count
    weekend_shop = Calendar("Europe/Oslo", "tue wed thu fri sat")
    assert local(weekend_shop.add(dt.datetime.fromisoformat("2026-01-09T09:00+01:00"), [[2, "workday"]])) \
        == "2026-01-13T09:00:00+01:00"  # Friday -> Saturday (1), Tuesday (2)


def test_flow_settings_choose_the_calendar():
    prog = program(f"""
    flow f {{
      settings {{ timezone "Europe/Oslo"; workdays mon tue wed thu fri; holidays "NO" }}
      wait 2 workdays
      complete
    }}""")
    result = enter(prog, Participant("a", "f"), dt.datetime.fromisoformat("2026-04-01T09:00+02:00"))
    assert local(result.wake_at) == "2026-04-08T09:00:00+02:00"


def test_wait_until_is_in_the_flows_time_zone_and_a_past_date_goes_on():
    prog = program("""
    flow f {
      settings { timezone "Europe/Oslo" }
      wait until 2026-02-02 08:30
      wait until 2026-07-01
      complete
    }""")
    first = enter(prog, Participant("a", "f"), START)
    assert first.wake_at == dt.datetime(2026, 2, 2, 7, 30, tzinfo=UTC)
    second = step(prog, first.participant, first.wake_at)
    assert second.wake_at == dt.datetime(2026, 6, 30, 22, 0, tzinfo=UTC)  # midnight, summer time
    late = enter(prog, Participant("b", "f"), dt.datetime(2026, 8, 1, tzinfo=UTC))
    assert late.participant.status == "completed" and late.wake_at is None


def test_an_ambiguous_local_time_takes_its_first_occurrence():
    cal = Calendar("Europe/Oslo")
    assert cal.at("2026-10-25", "02:30") == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_a_wall_time_in_the_spring_gap_moves_forward():
    cal = Calendar("Europe/Oslo")
    assert local(cal.add(dt.datetime.fromisoformat("2026-03-28T02:30+01:00"), [[1, "day"]])) \
        == "2026-03-29T03:30:00+02:00"
    assert cal.at("2026-03-29", "02:30") == dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


# ----------------------------------------------------------------------------- expressions

def P(data=None, **memberships) -> Participant:
    return Participant("x", "f", data=data or {},
                       memberships={k: frozenset(v) for k, v in memberships.items()})


def F(*path):
    return {"field": list(path)}


def C(value, type_=None):
    return {"const": value, **({"type": type_} if type_ else {})}


EXPRESSIONS = [
    ({"op": ">=", "args": [F("score"), C(50)]}, P({"score": 50}), True),
    ({"op": ">=", "args": [F("score"), C(50)]}, P({}), False),  # unset: comparisons are false
    ({"op": "<", "args": [F("score"), C(50)]}, P({}), False),
    ({"op": "==", "args": [F("score"), C(None)]}, P({}), True),
    ({"op": "!=", "args": [F("country"), C("NO")]}, P({}), True),
    ({"op": ">", "args": [F("country"), C(5)]}, P({"country": "NO"}), False),  # mixed types: false
    ({"op": ">", "args": [F("score"), C(2.5)]}, P({"score": 3}), True),  # against a number
    ({"op": "<", "args": [F("score"), C(2)]}, P({"score": 1.5}), True),
    ({"op": "<=", "args": [F("flag"), C(1)]}, P({"flag": True}), True),
    ({"op": ">=", "args": [F("score"), C(5)]}, P({"score": "7"}), False),
    ({"op": "is set", "args": [F("mobile")]}, P({"mobile": ""}), False),
    ({"op": "is set", "args": [F("tags")]}, P({"tags": []}), False),
    ({"op": "is set", "args": [F("tags")]}, P({"tags": ["a"]}), True),
    ({"op": "in", "args": [F("country"), {"list": ["NO", "SE"]}]}, P({"country": "SE"}), True),
    ({"op": "in", "args": [F("country"), {"list": ["NO", "SE"]}]}, P({}), False),
    ({"op": "not in", "args": [F("country"), {"list": ["NO"]}]}, P({"country": "DK"}), True),
    ({"op": "in", "args": [C("vip"), F("tags")]}, P({"tags": ["vip"]}), True),
    ({"op": "in", "args": [C("vip"), F("tags")]}, P({}), False),
    ({"op": "==", "args": [F("company", "name"), C("Acme")]}, P({"company": {"name": "Acme"}}), True),
    ({"op": "==", "args": [F("company", "name"), C("Acme")]}, P({"company": "Acme"}), False),
    ({"op": "<", "args": [F("renewal"), C("2026-03-01", "date")]}, P({"renewal": "2026-02-10"}), True),
    ({"op": "<", "args": [F("renewal"), C("2026-03-01", "date")]}, P({"renewal": "soon"}), False),
    ({"member": "selection", "name": "VIP"}, P(selection={"VIP"}), True),
    ({"member": "project", "name": "VIP"}, P(selection={"VIP"}), False),
    ({"op": "and", "args": [{"member": "interest", "name": "X"}, {"op": "not", "args": [C(False)]}]},
     P(interest={"X"}), True),
    ({"op": "or", "args": [C(0), {"op": "is set", "args": [F("a")]}]}, P({"a": 1}), True),
]


@pytest.mark.parametrize("node, participant, expected", EXPRESSIONS)
def test_expressions_evaluate_and_compile_alike(node, participant, expected):
    assert bool(evaluate(node, participant)) is expected
    assert bool(compile_expression(node)(participant)) is expected


def test_behaviour_conditions_see_only_the_history_since_entry():
    node = {"happened": "email.opened", "match": {"email": "Welcome"}}
    p = P()
    p.history = (("email.opened", {"email": "Other"}), ("email.clicked", {"email": "Welcome"}))
    assert not evaluate(node, p)
    p.history += (("email.opened", {"email": "Welcome"}),)
    assert evaluate(node, p) and compile_expression(node)(p)
    prog = program(f"""
    flow f {{
      settings {{ {SENDER} }}
      send email "Welcome" {{ subject "Hi" }}
      wait for opened email "Welcome" within 1 day
      complete
    }}""")
    again = enter(prog, p, START).participant  # a new run forgets the old history
    assert again.history == () and again.step == "wait-for-opened-email-welcome"


@settings(max_examples=200, deadline=None)
@given(score=st.one_of(st.none(), st.integers(-5, 200), st.floats(allow_nan=False), st.text(max_size=3)),
       country=st.one_of(st.none(), st.sampled_from(["NO", "SE", "", "US"])),
       threshold=st.integers(-5, 200))
def test_compiled_expressions_match_the_tree_walk(score, country, threshold):
    node = {"op": "or", "args": [
        {"op": "and", "args": [{"op": ">=", "args": [F("score"), C(threshold)]},
                               {"op": "in", "args": [F("country"), {"list": ["NO", "SE"]}]}]},
        {"op": "not", "args": [{"op": "is set", "args": [F("country")]}]}]}
    p = P({k: v for k, v in {"score": score, "country": country}.items() if v is not None})
    assert bool(evaluate(node, p)) == bool(compile_expression(node)(p))


# ----------------------------------------------------------------------------- keys

LOOP = f"""
flow loop {{
  settings {{ {SENDER} }}
  again: send email "Reminder" {{ subject "Reminder" }}
  wait 1 day
  update person {{ increase score by 1 }}
  split "Done" {{
    branch "yes" when person.score >= 3 {{ exit {{ add to selection "Done"; add to selection "Looped" }} }}
    otherwise {{ goto again }}
  }}
}}
"""


def test_idempotency_keys_are_unique_per_version_participant_step_and_visit():
    host = Host(LOOP)
    for pid in ("a", "b"):
        host.engine.enroll("loop", pid, {"score": 0})
    host.run(days=10)
    keys = [d["key"] for d in host.deliveries]
    assert len(keys) == len(set(keys)) == 2 * (3 + 3 + 2)
    version = host.machines["loop"]["hash"]
    for d in host.deliveries:
        # the key names the version, the participant (and its run), the step and the visit
        prefix, participant, *_ = d["key"].split(":")
        step_id, visit = d["key"].rsplit(":", 2)[1:]
        assert prefix in version
        assert participant == d["participant"] and step_id == d["step"] and int(visit) >= 1
    visits = sorted(int(d["key"].rsplit(":", 1)[1]) for d in host.deliveries
                    if d["participant"] == "a" and d["step"] == "again")
    assert visits == [1, 2, 3]


def test_keys_are_the_same_when_the_same_run_is_replayed():
    def keys():
        host = Host(LOOP)
        host.engine.enroll("loop", "a", {"score": 0})
        host.run(days=10)
        return [d["key"] for d in host.deliveries]

    assert keys() == keys()


def test_a_new_version_gives_new_keys():
    v1 = Host(LOOP)
    v1.engine.enroll("loop", "a", {"score": 2})
    v1.run(days=2)
    v2 = Host(LOOP.replace('subject "Reminder"', 'subject "Reminder!"'))
    v2.engine.enroll("loop", "a", {"score": 2})
    v2.run(days=2)
    assert v1.steps() == v2.steps()
    assert not {d["key"] for d in v1.deliveries} & {d["key"] for d in v2.deliveries}


def test_a_second_run_of_the_same_person_gets_new_keys():
    host = Host(f"""
    form signup {{ on submit {{ add interest "X" }} }}
    flow again {{
      settings {{ {SENDER} }}
      trigger {{ on form signup submitted }}
      send email "Hello" {{ subject "Hello" }}
      complete
    }}""")
    host.engine.enroll("again", "a", {})
    host.run(hours=1)
    host.engine.ingest({"type": "form.submitted", "participant": "a", "form": "signup"})
    host.run(hours=1)
    keys = [d["key"] for d in host.deliveries]
    assert len(keys) == 2
    assert len(set(keys)) == 2


def test_two_runs_started_in_the_same_second_get_different_keys():
    host = Host(f"""
    form signup {{ on submit {{ add interest "X" }} }}
    flow again {{
      settings {{ {SENDER} }}
      trigger {{ on form signup submitted }}
      send email "Hello" {{ subject "Hello" }}
      complete
    }}""")
    host.engine._person("a", {}, None)
    signup = {"type": "form.submitted", "participant": "a", "form": "signup"}
    host.engine.ingest(signup)
    host.engine.ingest(signup)
    host.run(hours=1)
    assert host.engine.counts("again")["statuses"]["completed"] == 2
    keys = [d["key"] for d in host.deliveries]
    assert len(keys) == len(set(keys)) == 2


# ----------------------------------------------------------------------------- delivery

SIMPLE = f"""
flow simple {{
  settings {{ {SENDER} }}
  send email "Hello" {{ subject "Hello {{{{ person.first_name }}}}" }}
  wait 1 day
  complete
}}
"""


def test_a_failing_handler_is_retried_with_backoff_then_the_participant_fails():
    attempts = []

    def smtp_down(delivery):
        attempts.append((host.clock.now(), delivery.attempt, delivery.key))
        raise ConnectionError("smtp down")

    host = Host(SIMPLE, handler=smtp_down, max_attempts=4, backoff=dt.timedelta(minutes=5))
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    host.run(days=3)
    assert [a[1] for a in attempts] == [1, 2, 3, 4]
    assert len({a[2] for a in attempts}) == 1
    assert [a[0] - START for a in attempts] == [dt.timedelta(minutes=m) for m in (0, 5, 15, 35)]
    p = host.p("simple", "a")
    assert p.status == "failed"
    assert "smtp down" in p.error and "send email" in p.error and "ConnectionError" in p.error
    (row,) = host.engine.store.outbox()
    assert row.status == "failed" and row.attempts == 4 and "smtp down" in row.error
    assert host.engine.counts("simple")["statuses"]["failed"] == 1
    assert_counts_match(host.engine, "simple")


def test_a_handler_that_recovers_is_not_a_failure():
    calls = []

    def flaky(delivery):
        calls.append(delivery.attempt)
        if delivery.attempt < 3:
            raise TimeoutError("try again")

    host = Host(SIMPLE, handler=flaky, max_attempts=5)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    host.run(days=2)
    assert calls == [1, 2, 3]
    assert host.p("simple", "a").status == "completed"
    assert host.p("simple", "a").error is None
    assert host.engine.store.outbox() == []  # delivered rows are not kept


def test_a_template_error_fails_at_once_without_retries():
    calls = []

    def handler(delivery):
        calls.append(delivery.attempt)
        return delivery.settings

    host = Host(SIMPLE, handler=handler, max_attempts=5)
    host.engine.enroll("simple", "a", {})  # no first_name: strict undefined
    host.run(days=2)
    assert calls == []  # rendered before the handler: it never sees the action
    p = host.p("simple", "a")
    assert p.status == "failed" and "first_name" in p.error
    (row,) = host.engine.store.outbox()
    assert row.status == "failed" and row.attempts == 1


def test_end_cancels_actions_still_being_retried():
    host = Host(SIMPLE, handler=lambda d: (_ for _ in ()).throw(RuntimeError("down")), max_attempts=9)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    host.run(minutes=2)
    host.engine.end("simple")
    host.run(days=5)
    (row,) = host.engine.store.outbox()
    assert row.status == "cancelled"
    assert host.p("simple", "a").status == "dropout"


# ----------------------------------------------------------------------------- dead letters

@pytest.mark.parametrize("event, reason", [
    ({"type": "email.opened", "participant": "stranger", "email": "Hello"}, "no flow"),
    ({"type": "email.teleported", "participant": "a"}, "unknown event type"),
    ({"participant": "a", "email": "Hello"}, "no `type`"),
    ({"type": "email.opened", "email": "Hello"}, "no `participant`"),
    ({"type": "email.opened", "participant": 7, "email": "Hello"}, "no `participant`"),
    ({"type": "data.changed", "participant": "a"}, "`set`"),
    ({"type": "data.changed", "participant": "a", "set": ["score", 1]}, "`set`"),
    ({"type": "selection.added", "participant": "a", "selection": None}, "`selection` must be a string"),
    ({"type": "form.submitted", "participant": "a", "form": {"name": "x"}}, "`form` must be a string"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_events_go_to_the_dead_letters_with_the_reason(event, reason):
    host = Host(SIMPLE)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    before = snapshot(host.p("simple", "a"))
    outcome = host.engine.ingest(event)
    assert outcome.startswith("dead letter")
    (letter,) = host.engine.dead_letters()
    assert letter.event == event and reason in letter.reason and letter.at == START
    assert snapshot(host.p("simple", "a")) == before


HANDOVER_ON_OPEN = f"""
flow main {{
  settings {{ {SENDER} }}
  send email "Hello" {{ subject "Hello" }}
  wait for opened email "Hello" within 2 days else continue
  split "Opened" {{
    branch "Yes" when opened email "Hello" {{
      exit {{ add to flow follow }}
    }}
  }}
  complete
}}
flow follow {{
  settings {{ {SENDER} }}
  send email "Next" {{ subject "Next" }}
  wait 1 day
  complete
}}
"""


@pytest.mark.parametrize("follow_paused", [True, False])
def test_an_event_is_not_applied_to_the_run_its_own_hand_over_began(follow_paused):
    # found by the engine state machine: the event moved the participant from
    # `main` to `follow`, and was then held for (or applied to) the new run too
    host = Host(HANDOVER_ON_OPEN)
    if follow_paused:
        host.engine.pause("follow")
    host.engine.enroll("main", "a", {})
    host.run(hours=1)
    assert host.engine.ingest({"type": "email.opened", "participant": "a", "email": "Hello"}) \
        == "applied"
    assert host.p("main", "a").status == "dropout"
    follow = host.p("follow", "a")
    assert follow.status == ("queued" if follow_paused else "active")
    assert follow.history == ()
    assert host.engine.store.held_events("follow") == []


def test_good_events_are_not_dead_letters():
    host = Host(SIMPLE)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    assert host.engine.ingest({"type": "email.opened", "participant": "a", "email": "Hello"}) == "applied"
    assert host.engine.dead_letters() == []
    assert host.p("simple", "a").history[-1] == ("email.opened", {"email": "Hello"})


def test_an_event_that_sets_fields_and_changes_a_membership_does_both():
    """On the participant and in the directory of people alike (each used to keep
    only one of the two)."""
    host = Host(SIMPLE)
    host.engine.enroll("simple", "a", {"first_name": "Ann", "score": 1})
    assert host.engine.ingest({"type": "selection.added", "participant": "a", "selection": "VIP",
                               "set": {"score": 7}}) == "applied"
    p = host.p("simple", "a")
    assert p.data["score"] == 7 and p.member_of("selection") == {"VIP"}
    person = host.engine.store.person("a")
    assert person["data"] == {"first_name": "Ann", "score": 7}
    assert person["memberships"] == {"selection": ["VIP"]}
    host.engine.ingest({"type": "email.opened", "participant": "a", "email": "Hello"})
    assert host.engine.store.person("a") == person  # an event that changes nothing in it


def test_a_membership_event_without_its_name_is_a_dead_letter():
    host = Host(SIMPLE)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    outcome = host.engine.ingest({"type": "selection.added", "participant": "a"})
    assert outcome.startswith("dead letter")
    assert len(host.engine.dead_letters()) == 1


def test_an_event_without_its_declared_payload_is_a_dead_letter():
    host = Host(SIMPLE)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    for event in ({"type": "email.opened", "participant": "a"},
                  {"type": "link.clicked", "participant": "a"},
                  {"type": "form.submitted", "participant": "a"}):
        assert host.engine.ingest(event).startswith("dead letter"), event
    assert len(host.engine.dead_letters()) == 3


# ----------------------------------------------------------------------------- counts

def test_counts_always_equal_the_participants_statuses():
    text = f"""
    form signup {{ on submit {{ add interest "X" }} }}
    flow mix {{
      settings {{ {SENDER} }}
      trigger {{ on form signup submitted; exclude selection "Stop" }}
      success when person in selection "Customers"
      send email "Hello" {{ subject "Hello {{{{ person.first_name }}}}" }}
      wait for opened email "Hello" within 2 days else exit
      wait 1 day
      complete
    }}"""
    host = Host(text)
    e = host.engine
    e.enroll("mix", "completes", {"first_name": "A"})
    e.enroll("mix", "drops", {"first_name": "B"})
    e.enroll("mix", "fails", {})
    e.enroll("mix", "succeeds", {"first_name": "C"})
    e.enroll("mix", "excluded_later", {"first_name": "D"})
    assert_counts_match(e, "mix")
    e.ingest({"type": "email.opened", "participant": "completes", "email": "Hello"})
    e.ingest({"type": "selection.added", "participant": "succeeds", "selection": "Customers"})
    e.ingest({"type": "selection.added", "participant": "excluded_later", "selection": "Stop"})
    host.run(hours=1)
    assert_counts_match(e, "mix")
    e.pause("mix")
    e.enroll("mix", "queued", {"first_name": "E"})
    host.run(days=5)
    assert_counts_match(e, "mix")
    e.resume("mix")
    host.run(days=5)
    e.ingest({"type": "form.submitted", "participant": "completes", "form": "signup"})  # a 2nd run
    assert_counts_match(e, "mix")
    got = {p.id: p.status for p in e.store.participants("mix")}
    assert got == {"completes": "active", "drops": "dropout", "fails": "failed",
                   "succeeds": "completed_success", "excluded_later": "dropout", "queued": "dropout"}
    assert [p.status for p in e.store.finished_runs("mix")] == ["completed"]
    e.end("mix")
    assert_counts_match(e, "mix")


# ----------------------------------------------------------------------------- lifecycle

def test_lifecycle_rules():
    host = Host(SIMPLE, start_flows=False)
    e = host.engine
    assert e.status("simple") == "stopped"
    assert not e.enroll("simple", "a", {"first_name": "A"}).admitted
    with pytest.raises(EngineError):
        e.pause("simple")
    with pytest.raises(EngineError):
        e.resume("simple")
    e.start("simple")
    with pytest.raises(EngineError, match="running"):
        e.delete("simple")
    with pytest.raises(EngineError):
        e.resume("simple")
    e.pause("simple")
    with pytest.raises(EngineError, match="paused"):
        e.start("simple")
    e.resume("simple")
    e.end("simple")
    assert e.status("simple") == "stopped"
    e.delete("simple")
    with pytest.raises(EngineError):
        e.status("simple")


def test_a_paused_flow_can_be_deleted():
    host = Host(SIMPLE)
    host.engine.enroll("simple", "a", {"first_name": "A"})
    host.engine.pause("simple")
    host.engine.delete("simple")
    assert list(host.engine.store.participants("simple")) == []


def test_events_held_during_a_pause_apply_in_order_on_resume():
    host = Host(f"""
    flow f {{
      settings {{ {SENDER} }}
      wait for person.score >= 10 within 10 days
      split "Which" {{
        branch "twenty" when person.score == 20 {{ run script "twenty" }}
        otherwise {{ run script "other" }}
      }}
      complete
    }}""")
    e = host.engine
    e.enroll("f", "a", {"score": 0})
    e.pause("f")
    e.enroll("f", "q", {"score": 0})  # queued: its event waits for it
    for pid in ("a", "q"):
        e.ingest({"type": "data.changed", "participant": pid, "set": {"score": 5}})
        e.ingest({"type": "data.changed", "participant": pid, "set": {"score": 20}})
    host.run(days=1)
    assert host.p("f", "a").step.startswith("wait-for-") and host.p("f", "a").history == ()
    assert host.p("f", "q").status == "queued"
    assert host.deliveries == []
    e.resume("f")
    host.run(hours=1)
    assert host.steps() == ["split-which/twenty/run-script-twenty"] * 2
    assert host.p("f", "a").data["score"] == 20 and host.p("f", "q").data["score"] == 20


def test_a_paused_flow_freezes_its_timers_and_queues_newcomers():
    host = Host(SIMPLE)
    e = host.engine
    e.enroll("simple", "a", {"first_name": "A"})
    host.run(hours=6)
    e.pause("simple")
    assert e.enroll("simple", "b", {"first_name": "B"}).status == "queued"
    before = snapshot(host.p("simple", "a"))
    host.run(days=4)
    assert snapshot(host.p("simple", "a")) == before
    e.resume("simple")  # 4 days later: a's remaining 18 hours start now
    host.run(hours=17)
    assert host.p("simple", "a").status == "active"
    host.run(hours=2)
    assert host.p("simple", "a").status == "completed"
    assert host.p("simple", "b").step == "wait-1-day"


def test_a_paused_flow_does_not_delay_other_flows():
    host = Host("""
    flow f { wait 1 day; run script "f"; complete }
    flow g { wait 2 days; run script "g"; complete }
    """)
    host.engine.enroll("f", "a")
    host.engine.enroll("g", "b")
    host.engine.pause("f")
    host.engine.run_until(dt.datetime(2026, 1, 20, tzinfo=UTC))
    (g,) = host.deliveries
    assert g["flow"] == "g" and g["at"] == START + dt.timedelta(days=2)


def test_wait_until_keeps_its_date_across_a_pause():
    host = Host("""
    flow f {
      settings { timezone "Europe/Oslo" }
      wait until 2026-01-10 10:00
      run script "after"
      complete
    }""")
    host.engine.enroll("f", "a")
    host.engine.run_until(dt.datetime(2026, 1, 9, 8, tzinfo=UTC))
    host.engine.pause("f")
    host.engine.run_until(dt.datetime(2026, 1, 12, 8, tzinfo=UTC))
    host.engine.resume("f")
    host.run(hours=1)
    assert [d["step"] for d in host.deliveries] == ["run-script-after"]


def test_a_queued_participant_who_joins_the_exclusion_never_gets_an_action():
    host = Host(f"""
    flow f {{
      settings {{ {SENDER} }}
      trigger {{ exclude selection "Do not contact" }}
      success when person in selection "Customers"
      send email "Hello" {{ subject "Hello" }}
      wait 1 day
      complete
    }}""")
    e = host.engine
    e.pause("f")
    assert e.enroll("f", "excluded", {}).status == "queued"
    assert e.enroll("f", "customer", {}).status == "queued"
    e.ingest({"type": "selection.added", "participant": "excluded", "selection": "Do not contact"})
    e.ingest({"type": "selection.added", "participant": "customer", "selection": "Customers"})
    e.resume("f")
    host.run(hours=1)
    assert host.deliveries == []
    assert host.p("f", "excluded").status == "dropout"
    assert host.p("f", "customer").status == "completed_success"


def test_a_hand_over_cycle_without_a_wait_does_not_crash_the_engine():
    import signal

    def too_long(*_):
        raise TimeoutError("the hand-over cycle did not stop")

    host = Host("""
    flow a { run script "a"; exit { add to flow b } }
    flow b { run script "b"; exit { add to flow a } }
    """)
    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(20)
    try:
        host.engine.enroll("a", "p")
        host.run(hours=1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert any(r.status == "failed" and r.error
               for flow in ("a", "b")
               for r in list(host.engine.store.participants(flow)) + list(host.engine.store.finished_runs(flow)))
    for flow in ("a", "b"):
        assert_counts_match(host.engine, flow)


# ----------------------------------------------------------------------------- deploy

V1 = f"""
flow f {{
  settings {{ {SENDER} }}
  send email "One" {{ subject "v1 one" }}
  first: wait 1 day
  send email "Two" {{ subject "v1 two" }}
  second: wait 1 day
  send email "Three" {{ subject "v1 three" }}
  complete
}}
"""
V2 = V1.replace("v1", "v2").replace("second: wait 1 day", "third: wait 2 days")


def deployed_v1() -> Host:
    host = Host(V1)
    host.engine.enroll("f", "past_first", {})
    host.run(days=1)  # past_first now rests at `second`
    host.engine.enroll("f", "at_first", {})
    return host


def test_a_new_version_needs_the_flow_paused():
    host = deployed_v1()
    v2 = machines(V2)["f"]
    with pytest.raises(EngineError, match="pause"):
        host.engine.deploy(v2)
    host.engine.deploy(host.machines["f"])  # the same version again is harmless


def test_deploy_refuses_to_strand_participants_at_a_removed_step():
    host = deployed_v1()
    host.engine.pause("f")
    with pytest.raises(EngineError, match="second"):
        host.engine.deploy(machines(V2)["f"])
    with pytest.raises(EngineError, match="no step"):
        host.engine.deploy(machines(V2)["f"], removed={"second": "nowhere"})
    assert host.engine.current("f").version == host.machines["f"]["hash"]


def test_deploy_while_paused_moves_participants_by_the_rule_and_applies_edits():
    host = deployed_v1()
    e = host.engine
    e.pause("f")
    v2 = machines(V2)["f"]
    e.deploy(v2, removed={"second": "third"})
    e.enroll("f", "queued", {})
    e.resume("f")
    host.run(days=6)
    subjects = {(d["participant"], d["settings"]["subject"]) for d in host.deliveries}
    # at_first had not passed "Two": it gets the edited text; past_first had
    assert ("at_first", "v2 two") in subjects and ("past_first", "v1 two") in subjects
    assert ("past_first", "v2 three") in subjects and ("queued", "v2 one") in subjects
    past = host.p("f", "past_first")
    assert past.status == "completed" and "third" in past.path and past.version == v2["hash"]
    assert all(p.status == "completed" for p in e.store.participants("f"))
    assert_counts_match(e, "f")


def test_deploy_while_paused_can_drop_out_those_at_a_removed_step():
    host = deployed_v1()
    e = host.engine
    e.pause("f")
    e.deploy(machines(V2)["f"], removed={"second": None})
    e.resume("f")
    host.run(days=6)
    past = host.p("f", "past_first")
    assert past.status == "dropout" and past.error and "removed" in past.error
    assert host.p("f", "at_first").status == "completed"
    assert_counts_match(e, "f")


# ----------------------------------------------------------------------------- data and hand-over

def test_field_updates_reach_the_person_and_the_hand_over_target():
    host = Host("""
    schema person { field lead_status text }
    flow f {
      update person { set lead_status = "hot"; increase score by 10 }
      exit { add to flow g }
    }
    flow g {
      trigger { filter person.lead_status == "hot" }
      wait 1 day
    }""")
    host.engine.enroll("f", "a", {"score": 5})
    host.run(minutes=1)
    assert host.engine.store.person("a")["data"] == {"score": 15, "lead_status": "hot"}
    assert host.p("g", "a") is not None and host.p("g", "a").status == "active"


def test_membership_changes_reach_the_hand_over_target():
    host = Host("""
    flow f {
      add to selection "Warm"
      exit { add to flow g }
    }
    flow g {
      trigger { filter person in selection "Warm" }
      wait 1 day
    }""")
    host.engine.enroll("f", "a")
    host.run(minutes=1)
    assert host.p("g", "a").status == "active"
    assert host.engine.store.person("a")["memberships"]["selection"] == ["Warm"]


def test_update_company_changes_the_company_not_the_person():
    prog = program("""
    flow f {
      update company { set country = "SE" }
      wait 1 day
    }""")
    p = Participant("a", "f", data={"country": "NO", "company": {"name": "Acme", "country": "NO"}})
    after = enter(prog, p, START).participant
    assert after.data["country"] == "NO"
    assert after.data["company"] == {"name": "Acme", "country": "SE"}


def test_set_values_are_rendered_templates():
    prog = program("""
    schema person { field note text }
    flow f {
      update person { set note = "Welcomed {{ person.first_name }}" }
      wait 1 day
    }""")
    after = enter(prog, Participant("a", "f", data={"first_name": "Ann"}), START).participant
    assert after.data["note"] == "Welcomed Ann"


def test_the_host_is_told_what_update_person_changes():
    host = Host("""
    schema person { field lead_status text }
    flow f {
      update person { set lead_status = "Engaged"; increase score by 10 }
      wait 1 day
    }""")
    seen = []
    host.engine.register("update person", seen.append)
    host.engine.enroll("f", "a", {"score": 1})
    host.run(minutes=1)
    (delivery,) = seen
    operations = [{k: op[k] for k in ("op", "field", "value")} for op in delivery.operations]
    assert operations == [{"op": "set", "field": "lead_status", "value": "Engaged"},
                          {"op": "increase", "field": "score", "value": 10}]
    assert delivery.data["lead_status"] == "Engaged" and delivery.data["score"] == 11


def test_a_delivery_carries_the_resolved_sender():
    host = Host(SIMPLE)
    host.engine.enroll("simple", "a", {"first_name": "Ann"})
    host.run(minutes=1)
    (delivery,) = host.deliveries
    assert delivery["settings"]["from"] == "news@acme.example"
    assert delivery["settings"]["reply_to"] == "support@acme.example"


def test_a_set_value_that_cannot_render_fails_the_participant_at_the_update():
    prog = program("""
    schema person { field note text; field nickname text }
    flow f {
      update person { set note = "Hi {{ person.nickname }}" }
      wait 1 day
    }""")
    p = Participant("a", "f", data={"first_name": "Ann"})
    result = enter(prog, p, START)
    assert result.participant.status == "failed"
    assert result.participant.step.startswith("update-person")
    assert "note" in result.participant.error and "nickname" in result.participant.error
    assert "note" not in result.participant.data and p.data == {"first_name": "Ann"}


def test_manual_steps_wait_for_task_done_and_emit_once():
    host = Host(f"""
    flow seq {{
      for deal
      settings {{ {SENDER} }}
      intro: draft email "Intro" {{ subject "About {{{{ deal.title }}}}" }}
      call: create activity "Call" {{ type call }}
      complete
    }}""")
    e = host.engine
    e.enroll("seq", "d1", {"title": "Big"})
    host.run(days=30)
    assert host.p("seq", "d1").step == "intro" and host.steps() == ["intro"]
    e.ingest({"type": "task.done", "participant": "d1", "step": "call"})
    assert host.p("seq", "d1").step == "intro"
    e.ingest({"type": "task.done", "participant": "d1", "step": "intro"})
    host.run(minutes=1)
    assert host.p("seq", "d1").step == "call" and host.steps() == ["intro", "call"]
    e.ingest({"type": "task.done", "participant": "d1"})
    assert host.p("seq", "d1").status == "completed"


# ----------------------------------------------------------------------------- pipelines

PIPELINE = """
pipeline leads "Leads" {
  for lead
  stage new "New"
  stage attempting "Attempting" {
    on enter { create task "Reach out to {{ lead.name }}" { due in 1 workday } }
  }
  stage connected "Connected"
  stage won "Won" { final }
  move new to attempting on call logged, email sent
  move attempting to connected on email replied, call logged outcome "Connected"
  on contact lifecycle becomes "Sales qualified lead" { create lead { stage new } }
  on lead disqualified where lead.disqualification_reason in ["Timing"] {
    create lead "Follow-up: {{ lead.name }}" { stage new }
  }
}
"""


def test_pipeline_moves_forward_automatically_and_stops_after_a_manual_move_back():
    host = Host(PIPELINE)
    e = host.engine
    e.enroll("leads", "L1", {"name": "Acme"})
    e.ingest({"type": "email.replied", "participant": "L1", "email": "x"})  # no rule from `new`
    assert host.p("leads", "L1").step == "new"
    e.ingest({"type": "call.logged", "participant": "L1"})
    assert host.p("leads", "L1").step == "attempting"
    e.ingest({"type": "call.logged", "participant": "L1"})  # new -> attempting never goes back
    assert host.p("leads", "L1").step == "attempting"
    e.ingest({"type": "call.logged", "participant": "L1", "outcome": "Connected"})
    assert host.p("leads", "L1").step == "connected"
    e.ingest({"type": "stage.moved", "participant": "L1", "stage": "new", "manual": True})
    assert host.p("leads", "L1").step == "new" and not host.p("leads", "L1").auto_moves
    e.ingest({"type": "call.logged", "participant": "L1"})
    assert host.p("leads", "L1").step == "new"  # automatic moves are off for this lead
    e.ingest({"type": "stage.moved", "participant": "L1", "stage": "won", "manual": True})
    assert host.p("leads", "L1").status == "completed"
    host.run(minutes=1)
    assert host.steps("L1") == ["attempting/enter-create-task-reach-out-to-lead-name"]
    assert host.deliveries[0]["args"] == ["Reach out to Acme"]
    assert_counts_match(e, "leads")


def test_pipeline_lifecycle_changes_from_a_company_sync_create_no_lead():
    host = Host(PIPELINE)
    e = host.engine
    e.enroll("leads", "L0", {"name": "Seed"})  # someone known to the engine
    e._person("p1", {"first_name": "Pia"}, None)
    sync = {"type": "data.changed", "participant": "p1", "set": {"lifecycle": "Sales qualified lead"},
            "source": "company sync"}
    e.ingest(sync)
    assert [p.id for p in e.store.participants("leads")] == ["L0"]
    e.ingest({k: v for k, v in sync.items() if k != "source"})
    assert sorted(p.id for p in e.store.participants("leads")) == ["L0", "p1:lead-1"]
    e.ingest({"type": "lead.disqualified", "participant": "L0", "reason": "Budget"})
    assert len(list(e.store.participants("leads"))) == 2
    e.ingest({"type": "lead.disqualified", "participant": "L0", "reason": "Timing"})
    assert sorted(p.id for p in e.store.participants("leads")) == ["L0", "L0:lead-1", "p1:lead-1"]
    host.run(minutes=1)
    assert sorted(d["action"] for d in host.deliveries) == ["create lead", "create lead"]
    assert len({d["key"] for d in host.deliveries}) == 2


def test_events_held_for_an_ended_flow_go_to_the_dead_letters():
    host = Host(SIMPLE)
    e = host.engine
    e.enroll("simple", "a", {"first_name": "Ann"})
    e.pause("simple")
    event = {"type": "email.opened", "participant": "a", "email": "Hello"}
    e.ingest(event)
    e.end("simple")
    assert e.store.held_events("simple") == []
    assert [d.event for d in e.dead_letters()] == [event]
