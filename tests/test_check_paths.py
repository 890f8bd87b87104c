"""FL501 conflicting actions with no wait between them and FL502 duplicate actions on
one path (`flowlang.check.paths`). The data cases in `tests/cases/check/FL50*.flow`
and `ok_FL50*.flow` run with the other checker cases (test_check_flowgraph.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowlang.check import check_project
from flowlang.project import project_from_texts

BENCH = Path(__file__).resolve().parent.parent / "bench"


def diagnostics(*texts: str, codes: tuple[str, ...] = ("FL501", "FL502")) -> list:
    project = project_from_texts({f"f{i}.flow": text for i, text in enumerate(texts)})
    return [d for d in check_project(project) if d.code in codes]


def pairs(*texts: str, codes: tuple[str, ...] = ("FL501", "FL502")) -> list[tuple[str, int]]:
    return sorted((d.code, d.line) for d in diagnostics(*texts, codes=codes))


def flow(body: str, *, header: str = 'settings { email from "a@acme.example" }') -> str:
    """A flow whose steps start on line 3."""
    return f"flow f {{\n  {header}\n{body.lstrip(chr(10))}\n}}\n"


# ---------------------------------------------------------------------- FL501

@pytest.mark.parametrize("first, second", [
    ('add to selection "S"', 'remove from selection "S"'),
    ('remove from project "P"', 'add to project "P"'),
    ('add interest "I"', 'remove interest "I"'),
    ('update person { set language = "en" }', 'update person { set language = "sv" }'),
    ('update person { set language = "en" }', "update person { clear language }"),
    ("update person { clear person.language }", 'update person { set language = "en" }'),
])
def test_fl501_at_the_later_action_with_the_earlier_related(first, second):
    (found,) = diagnostics(flow(f"  {first}\n  {second}\n  complete"))
    assert (found.code, found.line, found.severity.value) == ("FL501", 4, "error")
    assert [r.line for r in found.related] == [3]
    assert found.help


@pytest.mark.parametrize("first, second", [
    ('add to selection "S"', 'remove from selection "T"'),
    ('add to selection "S"', 'remove from project "S"'),
    ('update person { set language = "en" }', 'update company { set country = "SE" }'),
    ('update person { set language = "en" }', 'update person { increase score by 1 }'),
    ('update person { increase score by 2 }', 'update person { decrease score by 1 }'),
])
def test_fl501_not_for_different_targets_or_accumulating_updates(first, second):
    assert pairs(flow(f"  {first}\n  {second}\n  complete")) == []


@pytest.mark.parametrize("between", ["wait 1 day", "wait until 2026-12-01", "wait for clicked link l"])
def test_fl501_not_with_a_wait_between(between):
    text = flow(f'  add to selection "S"\n  {between}\n  remove from selection "S"')
    text += 'link l "https://x.example" { on click { add interest "L" } }\n'
    assert pairs(text) == []


def test_fl501_several_operations_on_one_field_in_one_update_block():
    (found,) = diagnostics(flow("""
  update person {
    set language = "en"
    set country = "NO"
    set person.language = "en"
  }"""))
    assert (found.code, found.line) == ("FL501", 6)
    assert [r.line for r in found.related] == [4]
    assert "`update person`" in found.message


def test_fl501_through_branches_and_into_exit_blocks():
    text = flow("""
  add to selection "S"
  split {
    branch "A" when person.score > 1 { exit { remove from selection "S" } }
    otherwise exit { add to selection "Cold" }
  }""")
    assert pairs(text) == [("FL501", 5)]


def test_fl501_in_a_complete_outcome_but_not_between_outcomes():
    text = flow("""
  add to selection "S"
  complete {
    success remove from selection "S"
    no success add to selection "T"
    no success remove from selection "T"
  }""")
    assert pairs(text) == [("FL501", 5), ("FL501", 7)]
    text = flow("""
  complete {
    success add to selection "S"
    no success remove from selection "S"
  }""")
    assert pairs(text) == []


def test_fl501_in_a_no_mobile_exit_block():
    text = flow("""
  add to selection "S"
  send sms { text "Hi"; no mobile exit { remove from selection "S" } }""",
                header='settings { sms from "ACME" }')
    assert pairs(text) == [("FL501", 4)]


def test_fl501_once_for_a_later_action_that_conflicts_twice():
    text = flow("""
  split {
    branch "A" when person.score > 1 { add to selection "S" }
    otherwise { add to selection "S" }
  }
  remove from selection "S"
  complete""")
    assert pairs(text) == [("FL501", 7)]


def test_fl501_in_form_handlers():
    text = 'form f {\n  on submit {\n    add to selection "S"\n    remove from selection "S"\n  }\n}\n'
    assert pairs(text) == [("FL501", 4)]


# ---------------------------------------------------------------------- FL502

def test_fl502_same_email_twice_with_waits_between():
    (found,) = diagnostics(flow("""
  send email "Hi" { subject "Hi" }
  wait 1 week
  send email "Hi" { subject "Hi again" }"""))
    assert (found.code, found.line, found.severity.value) == ("FL502", 5, "warning")
    assert [r.line for r in found.related] == [3]
    assert 'send email "Hi"' in found.message


def test_fl502_once_per_later_occurrence():
    text = flow("""
  add to selection "S"
  wait 1 day
  add to selection "S"
  wait 1 day
  add to selection "S\"""")
    assert pairs(text) == [("FL502", 5), ("FL502", 7)]


def test_fl502_not_on_different_branches():
    text = flow("""
  split {
    branch "A" when person.score > 1 { send email "Hi" { subject "A" } }
    otherwise { send email "Hi" { subject "B" } }
  }
  complete""")
    assert pairs(text) == []


def test_fl502_after_a_branch_that_did_it():
    text = flow("""
  split {
    branch "A" when person.score > 1 { add to project "P" }
  }
  wait 1 day
  add to project "P\"""")
    assert pairs(text) == [("FL502", 7)]


def test_fl502_not_through_a_loop_with_a_wait():
    text = flow("""
  top: send email "Reminder" { subject "Reminder" }
  wait 2 days
  split { branch "Again" when person.score < 5 { goto top } }
  complete""")
    assert pairs(text) == []


def test_fl502_not_for_accumulating_updates():
    text = flow("""
  update person { increase score by 1 }
  wait 1 day
  update person { increase score by 1 }""")
    assert pairs(text) == []


def test_fl502_in_an_exit_block():
    text = flow("""
  add to flow g
  exit { add to flow g }""")
    text += "flow g {\n  wait 1 day\n  complete\n}\n"
    assert pairs(text) == [("FL502", 4)]


def test_fl501_and_fl502_skip_unreachable_steps():
    text = flow("""
  add to selection "S"
  complete
  remove from selection "S"
  add to selection "S\"""")
    assert pairs(text) == []


@pytest.mark.skipif(not (BENCH / "generate.py").is_file(), reason="needs bench/generate.py")
def test_a_generated_project_has_no_conflicts():
    """The benchmark generator writes varied, valid flows: none of them has a
    conflict, a loop without a wait, or a condition before its send."""
    sys.path.insert(0, str(BENCH))
    try:
        from generate import generate
    finally:
        sys.path.remove(str(BENCH))
    files = generate(lines=3000, seed=7)
    found = check_project(project_from_texts({str(k): v for k, v in files.items()}))
    assert [(d.file, d.line, d.code, d.message) for d in found if d.is_error] == []
