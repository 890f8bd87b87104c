"""Every example in the language reference is real flowlang: it parses (step-only
snippets inside a flow), and the whole ones check with no error."""
import re
from pathlib import Path

import pytest

from flowlang import check_project, parse_text, project_from_texts

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
BLOCKS = re.findall(r"```flow\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_reference_has_examples():
    assert len(BLOCKS) >= 20


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_example_parses(number):
    text = BLOCKS[number]
    if parse_text(text).diagnostics:
        text = "flow example {\n" + text + "\n}\n"
    result = parse_text(text)
    assert not result.diagnostics, (BLOCKS[number], result.diagnostics)
    if text is BLOCKS[number]:
        errors = [d for d in check_project(project_from_texts({"doc.flow": text})) if d.is_error]
        assert not errors, errors


README = DOC.parent.parent / "README.md"


def test_the_readme_example_checks_with_no_diagnostic_at_all():
    """The first flow a reader sees is clean even under `--strict` (no warning)."""
    blocks = re.findall(r"```flow\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks
    for text in blocks:
        assert not parse_text(text).diagnostics
        assert list(check_project(project_from_texts({"README.flow": text}))) == []
