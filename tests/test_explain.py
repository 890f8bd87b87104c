"""`flowlang explain`: every code, from the same text as docs/diagnostics.md."""
import pytest

from flowlang.cli import main
from flowlang.diagnostics import CODES
from flowlang.explain import explain, sections


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_explains_with_a_bad_and_a_fixed_example(code):
    text = explain(code.lower())
    assert text.startswith(f"{code}: {CODES[code].title}")
    assert "Bad:" in text and "Fixed:" in text
    assert text.count("\n    flow ") + text.count("\n    form ") + text.count("\n    pipeline ") >= 2


def test_explain_reads_the_docs():
    assert set(sections()) == set(CODES)


def test_cli_explain(capsys):
    assert main(["explain", "FL501"]) == 0
    assert "conflicting actions" in capsys.readouterr().out


def test_unknown_code_is_a_usage_error(capsys):
    assert main(["explain", "FL999"]) == 2
    err = capsys.readouterr().err
    assert "FL999" in err and "FL501" in err and err.count("\n") == 1
