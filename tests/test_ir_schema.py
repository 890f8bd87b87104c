"""docs/ir.schema.json (DESIGN §6: "a JSON Schema of the IR is part of the docs")
against what the compiler writes: every machine of the conformance project, the
benchmark flow and the examples validates; a project written to reach every state
kind, split mode, expression node and action field validates; and the schema is
strict enough to refuse what the IR must not hold."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from flowlang import compile_project, load_project, project_from_texts
from flowlang.cli import main
from flowlang.runtime import interpreter

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SCHEMA_PATH = ROOT / "docs" / "ir.schema.json"
EXAMPLES = ROOT / "examples"

PROJECTS = {"conformance": SHARED / "conformance" / "ok", "bench": SHARED / "bench" / "reference.flow"}
if list(EXAMPLES.rglob("*.flow")):
    PROJECTS["examples"] = EXAMPLES

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
DOCUMENT = jsonschema.Draft202012Validator(SCHEMA)
#: One machine, as `compile_project(...).machines[name]` returns it.
MACHINE = jsonschema.Draft202012Validator(
    {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": "#/$defs/machine"})

_COMPILED: dict[str, dict[str, dict]] = {}


def compiled(project: str) -> dict[str, dict]:
    if project not in _COMPILED:
        _COMPILED[project] = compile_project(load_project([str(PROJECTS[project])])).machines
    return _COMPILED[project]


def errors(validator, data) -> list[str]:
    """The schema's complaints about `data` as JSON, i.e. as `flowlang compile` writes
    it (whether the compiler's dicts hold only JSON types is test_compiler's job)."""
    data = json.loads(json.dumps(data))
    return [f"{e.json_path}: {e.message[:300]}" for e in validator.iter_errors(data)]


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("project,name", [
    pytest.param(project, name, id=f"{project}-{name}")
    for project in PROJECTS for name in compiled(project)])
def test_every_machine_validates(project, name):
    assert errors(MACHINE, compiled(project)[name]) == []


@pytest.mark.parametrize("project", list(PROJECTS))
def test_the_file_flowlang_compile_writes_validates(project, tmp_path, capsys):
    out = tmp_path / "ir.json"
    assert main(["compile", str(PROJECTS[project]), "-o", str(out)]) == 0
    capsys.readouterr()
    document = json.loads(out.read_text(encoding="utf-8"))
    assert errors(DOCUMENT, document) == []
    assert len(document["machines"]) == len(compiled(project))


# A project that reaches what the hand-written flows do not: a project's own action
# with a block setting, `no mobile exit { … }`, labels and goto, `wait … else exit
# { … }`, `wait until` without a time, an empty random branch, a value split on
# numbers with `otherwise exit`, splits with and without `otherwise { … }`, every field operation,
# every expression node, `exit { … }`, a pipeline with its own settings.
EVERYTHING = '''\
action "post to slack {text?}" {
  for person
  setting channel "{text}" required
  setting message "{template}"
  setting delay "{duration}"
  setting fallback ["skip", "exit"] default skip block
  effect posts slack setting channel
}

schema person {
  field tags list of text
  field lead_status text
  field birthday date
}

link offer "https://acme.example/offer" { on click { add interest "Offer" } }

flow everything "Everything" {
  settings {
    email from "a@acme.example"
    email reply_to "a@acme.example"
    sms from "ACME"
    authorize auto send "a@acme.example"
    workdays mon tue wed
    holidays "NO"
    timezone "Europe/Oslo"
  }
  trigger {
    on added to selection "X"
    on person.score changed
    once per person
    filter person.score is set and person.email is not set or not (person.country in ["NO", "SE"]) or person.birthday < 2020-01-01 or person.country not in ["DK"] or person.score != 3.5
    exclude selection "Never"
  }
  success when person in project "P" and not person in interest "I"
  send email "Hello" { subject "Hi {{ person.first_name }}"; attach "a.pdf" 2 MB; attach "b.pdf"; auto }
  send sms { text "Hi"; no mobile exit { add to flow other; add to selection "No mobile" } }
  post to slack "x" { channel "#a"; message "{{ person.first_name }}"; delay 2 hours }
  wait 1 day 12 hours
  wait until 2026-12-24
  again: wait for clicked link offer or person.score > 10 within 2 weeks else exit { add to flow other }
  wait for opened email "Hello"
  split "AB" random {
    branch "A" 33.5% { add to selection "A" }
    branch "B" 66.5% { }
  }
  split on person.score {
    1, 2 { add to selection "low" }
    3 { add to selection "mid" }
    otherwise exit
  }
  split {
    branch "hot" when person.score >= 50 { wait 1 minute; goto again }
  }
  split "Otherwise" {
    branch "cold" when person.score < 5 { add to selection "cold" }
    otherwise { add to selection "warm" }
  }
  update person { set lead_status = "x"; clear country; decrease score by 1; remove "a" from tags }
  update person { add "b" to tags }
  exit { add to selection "done" }
}

flow other "Other" {
  for deal
  settings { authorize auto send "a@acme.example" }
  draft email "Intro" { from "a@acme.example"; subject "Hi"; remind in 1 day }
  create activity "Call" { type call; due in 1 workday }
  complete { success add to flow other }
}

pipeline p {
  for lead
  settings { timezone "Europe/Oslo" }
  stage a "A"
  stage b
}
'''


@pytest.fixture(scope="module")
def everything() -> dict[str, dict]:
    return compile_project(project_from_texts({"everything.flow": EVERYTHING})).machines


def test_every_shape_validates(everything):
    for name, machine in everything.items():
        assert errors(MACHINE, machine) == [], name
    assert errors(DOCUMENT, {"format": "flowlang.ir/1", "machines": list(everything.values())}) == []


def _walk(data):
    yield data
    if isinstance(data, dict):
        for value in data.values():
            yield from _walk(value)
    elif isinstance(data, list):
        for value in data:
            yield from _walk(value)


def test_the_shapes_project_reaches_every_kind(everything):
    """So that `test_every_shape_validates` validates every branch of the schema."""
    nodes = [n for n in _walk(list(everything.values())) if isinstance(n, dict)]
    state_kinds = {n["kind"] for m in everything.values() if m["kind"] == "flow" for n in m["states"]}
    assert state_kinds == set(SCHEMA["$defs"]["state"]["properties"]["kind"]["enum"])
    splits = [n for n in nodes if n.get("kind") == "split"]
    assert {s["mode"] for s in splits} == {"when", "random", "value"}
    assert {None, True, False} == {s["otherwise"] and s["otherwise"]["exit"] for s in splits}
    ops = {n["op"] for n in nodes if "op" in n and "args" in n}
    assert ops == {"and", "or", "not", "is set", "<", ">", ">=", "!=", "in", "not in"}
    for key in ("field", "const", "list", "member", "happened"):
        assert any(key in n for n in nodes), key
    assert any(n.get("type") == "date" and "const" in n for n in nodes)
    actions = [n for n in nodes if "action" in n and "delivery" in n]
    for key in ("operations", "blocks", "when_missing"):
        assert any(key in a for a in actions), key
    assert {op["op"] for a in actions for op in a.get("operations", [])} == {
        "set", "clear", "decrease", "remove", "add"}  # `increase` is in the conformance flows
    settings = {k: v for a in actions for k, v in a["settings"].items()}
    assert settings["delay"] == {"duration": [[2, "hour"]]}  # a duration as a value
    assert any(isinstance(v, list) for v in settings.values())  # a repeated setting
    assert any(s.get("kind") == "wait_for" and s["timeout_actions"] for s in nodes)
    assert any(s.get("kind") == "wait_until" and s["time"] is None for s in nodes)
    assert any(s.get("kind") == "manual" for s in nodes)


def test_schema_knows_the_interpreters_state_kinds():
    assert set(SCHEMA["$defs"]["state"]["properties"]["kind"]["enum"]) == set(interpreter._ARRIVE)


# ----------------------------------------------------------------------------- strictness

def _first(machine: dict, kind: str) -> dict:
    return next(s for s in machine["states"] if s["kind"] == kind)


def _first_split(machine: dict, mode: str) -> dict:
    return next(s for s in machine["states"] if s["kind"] == "split" and s["mode"] == mode)


def _set(path_fn, key, value):
    def mutate(machine):
        path_fn(machine)[key] = value
    return mutate


def _drop(path_fn, key):
    def mutate(machine):
        del path_fn(machine)[key]
    return mutate


MUTATIONS = {
    "unknown machine field": _set(lambda m: m, "extra", 1),
    "unknown machine kind": _set(lambda m: m, "kind", "sequence"),
    "wrong format": _set(lambda m: m, "format", "flowlang.ir/2"),
    "malformed hash": _set(lambda m: m, "hash", "md5:abc"),
    "missing states": _drop(lambda m: m, "states"),
    "unknown state field": _set(lambda m: m["states"][0], "extra", 1),
    "unknown state kind": _set(lambda m: m["states"][0], "kind", "sleep"),
    "state without span": _drop(lambda m: m["states"][0], "span"),
    "span without end": _drop(lambda m: m["states"][0]["span"], "end_line"),
    "span at line 0": _set(lambda m: m["states"][0]["span"], "line", 0),
    "id with spaces": _set(lambda m: m["states"][0], "id", "send email"),
    "next not an id": _set(lambda m: m["states"][0], "next", 3),
    "plural duration unit": _set(lambda m: _first(m, "wait"), "duration", [[1, "days"]]),
    "zero duration": _set(lambda m: _first(m, "wait"), "duration", [[0, "day"]]),
    "empty duration": _set(lambda m: _first(m, "wait"), "duration", []),
    "date that is not ISO": _set(lambda m: _first(m, "wait_until"), "date", "24.12.2026"),
    "expression as code": _set(lambda m: _first(m, "wait_for"), "condition", "person.score > 10"),
    "unknown operator": _set(lambda m: _first(m, "wait_for")["condition"], "op", "xor"),
    "operator with one argument": _set(lambda m: _first(m, "wait_for")["condition"], "args",
                                       [{"const": 1}]),
    "expression node with extra key": _set(lambda m: m["trigger"]["filter"], "code", "x"),
    "unknown membership": _set(lambda m: m["success"]["args"][0], "member", "segment"),
    "unknown timeout rule": _set(lambda m: _first(m, "wait_for"), "on_timeout", "retry"),
    "continue with timeout actions": lambda m: _first(m, "wait_for").update(
        on_timeout="continue"),  # the first wait for has `else exit { … }` actions
    "random branch without weight": _drop(lambda m: _first_split(m, "random")["branches"][0], "weight"),
    "random branch with a condition": _set(lambda m: _first_split(m, "random")["branches"][0],
                                           "condition", {"const": True}),
    "value split without subject": _set(lambda m: _first_split(m, "value"), "subject", None),
    "when split with subject": _set(lambda m: _first_split(m, "when"), "subject", {"field": ["x"]}),
    "unknown split mode": _set(lambda m: _first_split(m, "when"), "mode", "weighted"),
    "otherwise exit with next": _set(lambda m: _first_split(m, "value")["otherwise"], "next", "again"),
    "action state doing a manual action": _set(lambda m: _first(m, "action")["do"], "manual", True),
    "unknown action field": _set(lambda m: _first(m, "action")["do"], "extra", 1),
    "action without effects": _drop(lambda m: _first(m, "action")["do"], "effects"),
    "unknown delivery": _set(lambda m: _first(m, "action")["do"], "delivery", "exactly once"),
    "unknown field operation": lambda m: next(s for s in m["states"] if "operations" in s.get("do", {}))[
        "do"]["operations"][0].update(op="multiply"),
    "unknown when_missing rule": lambda m: next(s for s in m["states"] if "when_missing" in s.get("do", {}))[
        "do"]["when_missing"].update(rule="retry"),
    "goto without target": _drop(lambda m: _first(m, "goto"), "target"),
    "exit with next": _set(lambda m: _first(m, "exit"), "next", None),
    "unknown trigger field": _set(lambda m: m["trigger"], "every", "day"),
    "event without type": _drop(lambda m: m["trigger"]["events"][0], "type"),
    "unknown participant": _set(lambda m: m, "participant", "contact"),
    "unknown weekday": _set(lambda m: m["settings"], "workdays", ["mon", "funday"]),
    "settings without timezone": _drop(lambda m: m["settings"], "timezone"),
    "python-ish value": _set(lambda m: _first(m, "action")["do"]["settings"], "when", {"date": "2026-01-01"}),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_schema_refuses(everything, mutation):
    machine = copy.deepcopy(everything["everything"])
    assert errors(MACHINE, machine) == []
    MUTATIONS[mutation](machine)
    assert errors(MACHINE, machine) != []


PIPELINE_MUTATIONS = {
    "stage without final": _drop(lambda m: m["stages"][0], "final"),
    "unknown stage field": _set(lambda m: m["stages"][0], "enter", []),
    "move without events": _set(lambda m: m["moves"][0], "on", []),
    "handler without where": _drop(lambda m: m["handlers"][0], "where"),
    "pipeline with states": _set(lambda m: m, "states", []),
}


@pytest.mark.parametrize("mutation", list(PIPELINE_MUTATIONS))
def test_schema_refuses_in_pipelines(mutation):
    machine = copy.deepcopy(compiled("conformance")["leads"])
    assert errors(MACHINE, machine) == []
    PIPELINE_MUTATIONS[mutation](machine)
    assert errors(MACHINE, machine) != []


def test_document_refuses_extra_fields():
    document = {"format": "flowlang.ir/1", "machines": list(compiled("conformance").values())}
    assert errors(DOCUMENT, document) == []
    assert errors(DOCUMENT, {**document, "version": 2}) != []
    assert errors(DOCUMENT, {"machines": document["machines"]}) != []
