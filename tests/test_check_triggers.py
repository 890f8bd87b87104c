"""FL503 and FL504: a flow action that repeats or contradicts an action of the form
or link that starts the flow (`flowlang.check.triggers`). The data cases
`tests/cases/check/FL503_*.flow` and `FL504_*.flow` run with the other checker
cases."""
from __future__ import annotations

import pytest

from flowlang.check import check_project
from flowlang.project import project_from_texts

CODES = ("FL503", "FL504")

SIGNUP = """\
form signup "Signup" {
  on submit {
    add to selection "Newsletter"
    update person { set language = "en" }
  }
}
"""


def diagnostics(*texts: str, codes: tuple[str, ...] = CODES) -> list:
    project = project_from_texts({f"f{i}.flow": text for i, text in enumerate(texts)})
    return [d for d in check_project(project) if not codes or d.code in codes]


def pairs(*texts: str, codes: tuple[str, ...] = CODES) -> list[tuple[str, int]]:
    return sorted((d.code, d.line) for d in diagnostics(*texts, codes=codes))


def flow(body: str, *, trigger: str = "on form signup submitted", name: str = "f") -> str:
    """A flow whose steps start on line 3."""
    return f"flow {name} {{\n  trigger {{ {trigger} }}\n{body.lstrip(chr(10))}\n}}\n"


# ---------------------------------------------------------------------- where and how

def test_fl503_at_the_flow_action_with_the_form_action_related():
    (found,) = diagnostics(flow('  wait 1 day\n  add to selection "Newsletter"\n  complete'), SIGNUP)
    assert (found.code, found.severity.value, found.file, found.line) == ("FL503", "warning", "f0.flow", 4)
    assert [(r.file, r.line) for r in found.related] == [("f1.flow", 3)]
    assert "form `signup`" in found.message and found.help


def test_fl504_at_the_flow_action_with_the_form_action_related():
    (found,) = diagnostics(flow('  remove from selection "Newsletter"\n  complete'), SIGNUP)
    assert (found.code, found.severity.value, found.line) == ("FL504", "warning", 3)
    assert [r.line for r in found.related] == [3]
    assert "contradicts" in found.message and found.help


@pytest.mark.parametrize("operation, code", [
    ('set language = "en"', "FL503"),
    ('set language = "sv"', "FL504"),
    ("clear language", "FL504"),
    ('set person.language = "en"', "FL503"),
])
def test_update_operations_at_their_own_line(operation, code):
    text = flow(f"  update person {{\n    increase score by 1\n    {operation}\n  }}\n  complete")
    (found,) = diagnostics(text, SIGNUP)
    assert (found.code, found.line) == (code, 5)
    assert [r.line for r in found.related] == [4]


# ---------------------------------------------------------------------- every action of the flow

@pytest.mark.parametrize("body, line", [
    ('  add to selection "Newsletter"', 3),
    ('  wait 3 days\n  wait 1 week\n  add to selection "Newsletter"', 5),
    ('  split {\n    branch "A" when person.score > 5 { add to selection "Newsletter" }\n  }', 4),
    ('  split {\n    branch "A" when person.score > 5 { wait 1 day }\n'
     '    otherwise exit { add to selection "Newsletter" }\n  }', 5),
    ('  wait for person.score > 5 within 3 days else exit {\n    add to selection "Newsletter"\n  }', 4),
    ('  exit {\n    add to selection "Newsletter"\n  }', 4),
    ('  send sms {\n    text "Hi"\n    from "ACME"\n'
     '    no mobile exit { add to selection "Newsletter" }\n  }', 6),
    ("  complete {\n    success add to flow other\n  }", 4),
    ("  complete {\n    no success add to flow other\n  }", 4),
])
def test_every_action_of_the_flow_counts(body, line):
    form = ('form signup "S" {\n  on submit {\n    add to selection "Newsletter"\n'
            '    add to flow other\n  }\n}\n')
    other = "flow other {\n  wait 1 day\n  complete\n}\n"
    assert pairs(flow(body), form, other) == [("FL503", line)]


def test_every_action_of_the_form_counts():
    form = """\
form signup "S" {
  on submit {
    add to selection "A"
    send sms {
      text "Welcome"
      from "ACME"
      no mobile exit { add to selection "B" }
    }
  }
}
"""
    text = flow('  add to selection "B"\n  wait 1 day\n  add to selection "A"\n  complete')
    found = diagnostics(text, form)
    assert [(d.code, d.line, [r.line for r in d.related]) for d in found] == [
        ("FL503", 3, [7]), ("FL503", 5, [3])]


def test_a_link_that_starts_the_flow():
    link = 'link pricing "https://x.example" {\n  on click {\n    add interest "Pricing"\n  }\n}\n'
    text = flow('  add interest "Pricing"\n  remove interest "Pricing"', trigger="on link pricing clicked")
    found = diagnostics(text, link)
    assert [(d.code, d.line) for d in found] == [("FL503", 3), ("FL504", 4)]
    assert all("link `pricing`" in d.message and "link's action" in d.related[0].message for d in found)


def test_each_form_of_a_trigger_with_several_events():
    other = 'form other "O" {\n  on submit { add to selection "Newsletter" }\n}\n'
    text = ('flow f {\n  trigger {\n    on form signup submitted\n    on form other submitted\n  }\n'
            '  add to selection "Newsletter"\n  complete\n}\n')
    (found,) = diagnostics(text, SIGNUP, other)
    assert (found.code, found.line) == ("FL503", 6)
    assert sorted((r.file, r.line) for r in found.related) == [("f1.flow", 3), ("f2.flow", 2)]


def test_the_form_in_another_file_and_the_flow_first():
    project = {"a/flows.flow": flow('  add to selection "Newsletter"'), "z/forms.flow": SIGNUP}
    found = check_project(project_from_texts(project))
    assert [(d.code, d.file, d.line) for d in found] == [("FL503", "a/flows.flow", 3)]


# ---------------------------------------------------------------------- what does not count

@pytest.mark.parametrize("body", [
    '  add to selection "Customers"',
    '  add to project "Newsletter"',
    '  remove from project "Newsletter"',
    '  update person { set country = "NO" }',
    "  update person { increase score by 1 }",
    '  send email "Newsletter" { subject "Hi" }',
])
def test_not_for_other_targets_or_kinds(body):
    header = 'settings { email from "a@acme.example" }\n'
    assert pairs(flow(header + body), SIGNUP) == []


def test_accumulating_updates_never_repeat():
    form = 'form signup "S" {\n  on submit { update person { increase score by 10 } }\n}\n'
    assert pairs(flow("  update person { increase score by 10 }"), form) == []


@pytest.mark.parametrize("trigger", [
    'on added to selection "Newsletter"',
    "on link pricing clicked",
])
def test_not_for_a_form_that_does_not_start_the_flow(trigger):
    link = 'link pricing "https://x.example" {\n  on click { add interest "Pricing" }\n}\n'
    body = '  wait for submitted form signup within 2 days\n  add to selection "Newsletter"\n  complete'
    assert pairs(flow(body, trigger=trigger), SIGNUP, link) == []


def test_not_without_a_trigger():
    assert pairs('flow f {\n  add to selection "Newsletter"\n}\n', SIGNUP) == []


def test_only_the_handlers_of_the_starting_event():
    """A form's handler for another event type (a project's own `scope form`
    event) has not run when the flow starts on `form NAME submitted`."""
    viewed = 'event "view" {\n  type "form.viewed"\n  for person\n  scope form\n}\n'
    form = ('form signup "S" {\n  on view { add to selection "Viewers" }\n'
            '  on submit { add to selection "Newsletter" }\n}\n')
    body = '  add to selection "Viewers"\n  wait 1 day\n  add to selection "Newsletter"'
    assert pairs(flow(body), form, viewed, codes=()) == [("FL503", 5)]


def test_not_for_an_unknown_or_broken_form():
    assert pairs(flow('  add to selection "Newsletter"', trigger="on form nope submitted"),
                 codes=()) == [("FL204", 2)]
    broken = 'form signup "S" {\n  on submit { add to selection "Newsletter" }\n  @@@\n}\n'
    found = pairs(flow('  add to selection "Newsletter"'), broken, codes=())
    assert [code for code, _ in found] == ["FL100"]


def test_alongside_the_path_rules():
    """FL502 compares a flow's actions with each other, FL503 with the form's."""
    body = '  add to selection "Newsletter"\n  wait 1 day\n  add to selection "Newsletter"'
    assert pairs(flow(body), SIGNUP, codes=("FL502", "FL503")) == [
        ("FL502", 5), ("FL503", 3), ("FL503", 5)]


def test_a_pipeline_handler_is_not_a_flow():
    pipeline = ('pipeline p {\n  for lead\n  stage new "New"\n'
                '  on form signup submitted { create lead { stage new } }\n}\n')
    form = 'form signup "S" {\n  on submit { create lead { stage new } }\n}\n'
    assert pairs(pipeline, form) == []
