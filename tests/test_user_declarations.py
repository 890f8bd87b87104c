"""A project's own `action`, `event` and `schema` declarations are checked exactly
like the stdlib's (DESIGN §4): the same rules read them from the same registry,
whichever file of the project declares them. Each project here is a dict of
path -> text, declarations and flows in separate files."""
from __future__ import annotations

from flowlang.check import check_project
from flowlang.project import project_from_texts

SLACK = """\
action "post to slack" {
  for person
  setting channel "{text}" required
  setting message "{template}"
  effect posts slack setting channel
}
"""

WEBINAR = """\
event "webinar {text} attended" {
  type "webinar.attended"
  for person
  condition "attended webinar {text}"
}
"""

SCHEMA = """\
schema person {
  field slack_handle text max 30
}
"""

TAGS = """\
action "tag {text}" {
  for person
  effect adds tag
}
action "untag {text}" {
  for person
  effect removes tag
}
action "ask for approval {text}" {
  for person
  manual
  effect requests approval
}
"""


def check(flows: str, **files: str) -> list:
    """Check `flows` (as `flows.flow`) with the declaration files given by name."""
    texts = {f"decl/{name}.flow": text for name, text in files.items()}
    texts["flows.flow"] = flows
    return check_project(project_from_texts(texts))


def found(flows: str, **files: str) -> list[tuple[str, str, int]]:
    return [(d.code, d.file, d.line) for d in check(flows, **files)]


def flow(body: str, *, header: str = "") -> str:
    """A flow whose steps start on line 2 (line 3 with a header line)."""
    head = f"  {header}\n" if header else ""
    return f"flow f {{\n{head}{body.lstrip(chr(10))}\n}}\n"


SLACK_STEP = '  post to slack { channel "#sales"; message "{{ person.full_name }}" }'


# ---------------------------------------------------------------------- actions

def test_a_user_action_used_correctly_checks_clean():
    assert check(flow(SLACK_STEP + "\n  complete"), slack=SLACK) == []


def test_declarations_after_their_use_and_in_any_file():
    texts = {"a.flow": flow(SLACK_STEP), "b/c/z.flow": SLACK}
    assert check_project(project_from_texts(texts)) == []


def test_missing_required_setting_is_fl301_at_the_step():
    (diagnostic,) = check(flow('  post to slack {\n    message "Hi"\n  }'), slack=SLACK)
    assert (diagnostic.code, diagnostic.line) == ("FL301", 2)
    assert "`channel`" in diagnostic.message and diagnostic.help


def test_unknown_setting_is_fl202_with_did_you_mean():
    text = flow('  post to slack {\n    channel "#sales"\n    mesage "Hi"\n  }')
    (diagnostic,) = check(text, slack=SLACK)
    assert (diagnostic.code, diagnostic.line) == ("FL202", 4)
    assert diagnostic.help == "did you mean `message`?"


def test_a_typo_in_a_required_setting_is_fl202_with_did_you_mean():
    text = flow('  post to slack {\n    chanel "#sales"\n  }')
    diagnostics = check(text, slack=SLACK)
    (typo,) = [d for d in diagnostics if d.code == "FL202"]
    assert (typo.line, typo.help) == (3, "did you mean `channel`?")


def test_a_typo_in_a_required_setting_is_only_fl202():
    text = flow('  post to slack {\n    chanel "#sales"\n  }')
    assert found(text, slack=SLACK) == [("FL202", "flows.flow", 3)]


def test_a_required_setting_of_the_wrong_form_is_only_fl302():
    assert found(flow("  post to slack { channel 42 }"), slack=SLACK) == [("FL302", "flows.flow", 2)]


def test_wrong_participant_type_is_fl307():
    text = flow('  post to slack { channel "#sales"; message "{{ deal.title }}" }', header="for deal")
    (diagnostic,) = check(text, slack=SLACK)
    assert (diagnostic.code, diagnostic.line) == ("FL307", 3)
    assert "person" in diagnostic.help


def test_unknown_action_is_fl201_suggesting_the_users_action():
    (diagnostic,) = check(flow('  post to slak { channel "#sales" }'), slack=SLACK)
    assert (diagnostic.code, diagnostic.line) == ("FL201", 2)
    assert diagnostic.help == "did you mean `post to slack`?"


def test_an_unknown_field_in_a_user_actions_template_is_fl205():
    text = flow('  post to slack {\n    channel "#sales"\n    message "{{ person.ful_name }}"\n  }')
    (diagnostic,) = check(text, slack=SLACK)
    assert (diagnostic.code, diagnostic.line) == ("FL205", 4)
    assert diagnostic.help == "did you mean `full_name`?"


def test_a_template_syntax_error_in_a_user_action_is_fl305():
    text = flow('  post to slack { channel "#sales"; message "{{ person.full_name" }')
    assert found(text, slack=SLACK) == [("FL305", "flows.flow", 2)]


# ---------------------------------------------------------------------- events

def test_a_user_event_as_a_trigger_checks_clean():
    text = flow('  trigger {\n    on webinar "Automation 101" attended\n  }\n  complete')
    assert check(text, webinar=WEBINAR) == []


def test_an_unknown_event_is_fl206_suggesting_the_users_event():
    text = flow('  trigger {\n    on webinar "Automation 101" atended\n  }\n  complete')
    (diagnostic,) = check(text, webinar=WEBINAR)
    assert (diagnostic.code, diagnostic.line) == ("FL206", 3)
    assert "webinar" in diagnostic.help


def test_a_user_events_condition_in_expressions():
    ok = flow('  wait for attended webinar "Automation 101" within 30 days else exit\n  complete')
    assert check(ok, webinar=WEBINAR) == []
    bad = flow('  wait for atended webinar "Automation 101"\n  complete')
    assert found(bad, webinar=WEBINAR) == [("FL206", "flows.flow", 2)]


def test_a_user_event_in_a_pipeline():
    pipeline = ('pipeline p {\n  for person\n  stage invited "Invited"\n  stage attended "Attended"\n'
                '  move invited to attended on webinar "Automation 101" attended\n}\n')
    assert check_project(project_from_texts({"p.flow": pipeline, "e.flow": WEBINAR})) == []


# ---------------------------------------------------------------------- schemas

def test_a_user_schema_field_in_templates_and_expressions():
    text = flow("""
  trigger {
    on webinar "Automation 101" attended
    filter person.slack_handle is set
  }
  split on person.slack_handle {
    "ceo" { complete }
  }
  post to slack { channel "#sales"; message "@{{ person.slack_handle }} attended" }
  update person { set slack_handle = "unknown" }
  complete""")
    assert check(text, slack=SLACK, webinar=WEBINAR, schema=SCHEMA) == []
    without = found(text, slack=SLACK, webinar=WEBINAR)
    assert sorted(set(code for code, _, _ in without)) == ["FL205"]
    assert [line for _, _, line in without] == [4, 6, 9, 10]


# ---------------------------------------------------------------------- effects

def test_user_effects_repeat_on_a_path_fl502():
    text = flow(f"{SLACK_STEP}\n  wait 1 day\n{SLACK_STEP}\n"
                '  post to slack { channel "#support" }\n  complete')
    assert found(text, slack=SLACK) == [("FL502", "flows.flow", 4)]


def test_user_effects_with_opposite_verbs_conflict_fl501():
    text = flow('  tag "vip"\n  untag "vip"\n  untag "churn"\n  complete')
    assert found(text, tags=TAGS) == [("FL501", "flows.flow", 3)]


def test_a_user_manual_action_is_a_wait_between_conflicts():
    text = flow('  tag "vip"\n  ask for approval "Discount"\n  untag "vip"\n  complete')
    assert found(text, tags=TAGS) == []


def test_user_actions_in_a_starting_form_and_the_flow_fl503_fl504():
    form = ('form demo "Demo" {\n  on submit {\n    post to slack { channel "#sales" }\n'
            '    tag "demo"\n  }\n}\n')
    text = flow(f'  trigger {{ on form demo submitted }}\n{SLACK_STEP}\n  untag "demo"\n'
                '  post to slack { channel "#support" }\n  complete')
    diagnostics = check(text, slack=SLACK, tags=TAGS, form=form)
    assert [(d.code, d.line, [(r.file, r.line) for r in d.related]) for d in diagnostics] == [
        ("FL503", 3, [("decl/form.flow", 3)]),
        ("FL504", 4, [("decl/form.flow", 4)]),
    ]


# ---------------------------------------------------------------------- SMS

def test_a_user_action_that_sends_sms_is_measured():
    promo = ('action "send promo {text}" {\n  for person\n  setting body "{template}" required\n'
             "  effect sends sms setting body\n}\n")
    text = flow('  send promo "Spring" {\n    body "' + "a" * 150 + '{{ person.slack_handle }}"\n  }\n'
                '  wait 1 day\n  send promo "Summer" { body "Sun ☀" }')
    assert found(text, promo=promo, schema=SCHEMA) == [
        ("FL601", "flows.flow", 3), ("FL602", "flows.flow", 6)]
