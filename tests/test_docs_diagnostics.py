"""docs/diagnostics.md is the single source of every code's explanation: each code
is there, and each bad example really produces its code while its fix does not."""
import re
from pathlib import Path

import pytest

from flowlang import check_project, project_from_texts
from flowlang.diagnostics import CODES

DOC = Path(__file__).resolve().parent.parent / "docs" / "diagnostics.md"
TEXT = DOC.read_text(encoding="utf-8")
SECTIONS = dict(re.findall(r"^## (FL\d{3})\n(.*?)(?=^## FL|\Z)", TEXT, re.S | re.M))


def examples(code: str) -> tuple[str, str]:
    bad, fixed = re.findall(r"```flow\n(.*?)```", SECTIONS[code], re.S)
    return bad, fixed


def codes_of(text: str) -> set[str]:
    return {d.code for d in check_project(project_from_texts({"example.flow": text}))}


def test_every_code_is_documented():
    assert set(SECTIONS) == set(CODES)


def test_every_code_the_checker_can_emit_is_in_the_table():
    source = "\n".join(p.read_text() for p in (DOC.parent.parent / "flowlang").rglob("*.py"))
    emitted = set(re.findall(r'"(FL\d{3})"', source))
    assert emitted <= set(CODES), emitted - set(CODES)


@pytest.mark.parametrize("code", sorted(CODES))
def test_bad_example_gives_its_code_and_the_fix_does_not(code):
    bad, fixed = examples(code)
    assert code in codes_of(bad), code
    assert not codes_of(fixed), (code, codes_of(fixed))
