"""FL601 SMS texts longer than one segment and FL602 texts with characters outside
GSM-7 (`flowlang.check.sms`). The data cases `tests/cases/check/FL601_*.flow` and
`FL602_*.flow` run with the other checker cases."""
from __future__ import annotations

import pytest

from flowlang.check import check_project
from flowlang.check.sms import (GSM_BASIC, GSM_EXTENSION, Placeholder, measure_pieces,
                                split_template)
from flowlang.project import project_from_texts
from flowlang.stdlib import FieldType, standard_registry

CODES = ("FL601", "FL602")


def diagnostics(*texts: str, codes: tuple[str, ...] = CODES) -> list:
    project = project_from_texts({f"f{i}.flow": text for i, text in enumerate(texts)})
    return [d for d in check_project(project) if not codes or d.code in codes]


def pairs(*texts: str, codes: tuple[str, ...] = CODES) -> list[tuple[str, int]]:
    return sorted((d.code, d.line) for d in diagnostics(*texts, codes=codes))


def sms(text: str, *, step: str = "send sms") -> str:
    """A flow whose SMS text is on line 4."""
    extra = "\n    to our_contact" if step == "notify sms" else ""
    return f'flow f {{\n  settings {{ sms from "ACME" }}\n  {step} {{\n    text "{text}"{extra}\n  }}\n}}\n'


def measure(text: str, registry=None):
    pieces = split_template(text, registry or standard_registry())
    return measure_pieces(pieces)


# ---------------------------------------------------------------------- the alphabet

def test_the_gsm_tables():
    assert len(GSM_BASIC) == 127  # 128 code points, one of them the escape
    assert GSM_EXTENSION == set("\f^{}\\[~]|€")
    assert not GSM_BASIC & GSM_EXTENSION
    assert set("@£$¥èØÅΔßÉ¤¡Ä§¿à\n\r") <= GSM_BASIC
    assert not {"`", "’", "ł", "á", "ç", "\t", "\u00a0"} & GSM_BASIC


@pytest.mark.parametrize("text, encoding, length, segments", [
    ("", "GSM-7", 0, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),
    ("€" * 81, "GSM-7", 162, 2),
    ("[x]" * 32, "GSM-7", 160, 1),
    ("ÅØÆåøæÑñÜüÉé" * 13 + "äöÄÖ", "GSM-7", 160, 1),
    # an escape pair is never split between two segments
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),
    ("ł" * 70, "UCS-2", 70, 1),
    ("ł" * 71, "UCS-2", 71, 2),
    ("ł" * 134, "UCS-2", 134, 2),
    ("ł" * 135, "UCS-2", 135, 3),
    # the extension table costs one unit in UCS-2; an emoji two
    ("€" * 69 + "ł", "UCS-2", 70, 1),
    ("🎉" * 35, "UCS-2", 70, 1),
    ("🎉" * 36, "UCS-2", 72, 2),
    ("a" * 66 + "🎉" + "a" * 66, "UCS-2", 134, 3),
])
def test_measure(text, encoding, length, segments):
    found = measure(text)
    assert (found.encoding, found.length, found.segments) == (encoding, length, segments)


def test_characters_outside_gsm_each_once_in_order():
    assert measure("Hi 🎉 ’ 🎉 ł").outside == ("🎉", "’", "ł")


# ---------------------------------------------------------------------- placeholders

@pytest.mark.parametrize("text, length", [
    ("{{ person.first_name }}", 40),
    ("{{ person.full_name }}", 80),
    ("{{ person.email }}", 254),
    ("{{ person.company.name }}", 80),
    ("{{ person.company.domain }}", 40),
    ("{{ person.score }}", 20),          # no `max`: 20
    ("{{ person.our_contact }}", 20),
    ("{{ person.nope }}", 20),           # unknown (FL205): 20
    ("{{ loop }}", 20),
    ("{{ person.first_name | upper }}", 40),
    ("{{ person.first_name ~ person.last_name }}", 80),
    ("{{ person.first_name if person.first_name else 'friend' }}", 40),
    ("{{ 'Hello' }}", 5),                # a constant is its text
    ("{% if person.score > 5 %}Hi{% else %}Hey{% endif %}", 5),
    ("{# a comment #}Hi", 2),
    ("Hi   {%- if x %}!{% endif %}", 3),
    ("Hi {{ person.first_name }}, welcome!", 3 + 40 + 10),
])
def test_placeholders_count_as_their_fields_longest_value(text, length):
    assert measure(text).length == length


def test_a_schemas_max_counts():
    registry = standard_registry()
    registry.schemas["person"]["coupon"] = FieldType(("text",), 12)
    assert measure("{{ person.coupon }}", registry).length == 12


def test_placeholders_are_not_checked_for_gsm():
    pieces = split_template("{{ person.first_name }}", standard_registry())
    assert [type(p) for p in pieces] == [Placeholder]
    assert measure("{{ person.first_name }}").outside == ()


def test_a_template_that_does_not_parse_is_not_measured():
    assert split_template("Hi {{ person.first_name", standard_registry()) is None
    assert pairs(sms("Hi 🎉 {{ person.first_name " + "a" * 200), codes=()) == [("FL305", 4)]


# ---------------------------------------------------------------------- FL601

def test_fl601_says_how_long_and_how_many_segments():
    (found,) = diagnostics(sms("a" * 163 + " {{ person.full_name }}"))
    assert (found.code, found.severity.value, found.line) == ("FL601", "warning", 4)
    assert "244 characters: 2 SMS segments" in found.message
    assert "`person.full_name` as 80" in found.help


def test_fl601_one_segment_of_160_is_fine():
    assert pairs(sms("a" * 120 + "{{ person.first_name }}")) == []
    assert pairs(sms("a" * 121 + "{{ person.first_name }}")) == [("FL601", 4)]


def test_fl601_with_a_user_schema_max():
    schema = "schema person {\n  field coupon text max 100\n  field code text\n}\n"
    assert pairs(sms("a" * 60 + "{{ person.coupon }}"), schema) == []
    assert pairs(sms("a" * 61 + "{{ person.coupon }}"), schema) == [("FL601", 4)]
    assert pairs(sms("a" * 140 + "{{ person.code }}"), schema) == []
    assert pairs(sms("a" * 141 + "{{ person.code }}"), schema) == [("FL601", 4)]


def test_fl601_at_the_text_line_of_a_multi_line_step():
    text = ('flow f {\n  settings { sms from "ACME" }\n  send sms {\n    from "ACME"\n'
            '    no mobile skip\n    text """\n      ' + "word " * 40 + '\n      """\n  }\n}\n')
    assert pairs(text) == [("FL601", 6)]


def test_fl601_and_fl602_both_for_a_long_non_gsm_text():
    found = diagnostics(sms("ł" * 71))
    assert [(d.code, d.line) for d in found] == [("FL601", 4), ("FL602", 4)]
    assert "71 characters in UCS-2: 2 SMS segments" in found[0].message


def test_not_for_staff_notifications():
    assert pairs(sms("a" * 300 + " 🎉", step="notify sms")) == []


def test_sms_in_forms_links_and_pipelines():
    form = 'form f1 "F" {\n  on submit {\n    send sms { text "' + "a" * 161 + '" }\n  }\n}\n'
    pipeline = ('pipeline p {\n  for person\n  stage new "New" {\n'
                '    on enter { send sms { text "🎉" } }\n  }\n}\n')
    assert pairs(form, pipeline) == [("FL601", 3), ("FL602", 4)]


# ---------------------------------------------------------------------- FL602

def test_fl602_names_the_characters():
    (found,) = diagnostics(sms("We’re open 🎉"))
    assert (found.code, found.severity.value, found.line) == ("FL602", "warning", 4)
    assert "’" in found.message and "U+2019" in found.message and "🎉" in found.message
    assert "UCS-2" in found.message and "70" in found.message
    assert "replace ’ with '" in found.help


def test_fl602_not_for_gsm_letters_and_the_extension_table():
    assert pairs(sms("Hej Åsa, Jørgen og Ñoño: 10€ [i dag] ~ {{ person.first_name }}")) == []


def test_fl602_for_a_constant_in_a_placeholder():
    assert pairs(sms("Hi {{ '✓' }}")) == [("FL602", 4)]


# ---------------------------------------------------------------------- driven by declarations

PROMO = """\
action "send promo sms" {
  for person
  setting body "{template}" required
  setting note "{template}"
  effect sends sms setting body
}
action "page staff" {
  for person
  setting body "{template}" required
  effect notifies sms setting body
}
"""


def test_a_projects_own_sms_action_is_checked_through_its_effect():
    text = ('flow f {\n  send promo sms {\n    note "🎉"\n    body "Hi 🎉"\n  }\n'
            '  page staff { body "🎉" }\n}\n')
    assert pairs(text, PROMO) == [("FL602", 4)]
