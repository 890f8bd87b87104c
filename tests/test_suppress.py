"""Suppression comments, the pyproject ignore list, --ignore, and FL001."""
from flowlang import check_project, project_from_texts
from flowlang.check.suppress import find_config
from flowlang.cli import main

EMOJI = 'flow emoji {\n  settings { sms from "ACME" }\n  send sms { text "Hi 🎉" }%s\n  complete\n}\n'


def codes(text, ignore=()):
    return [(d.code, d.line) for d in check_project(project_from_texts({"t.flow": text}), ignore)]


def test_trailing_comment_hides_the_diagnostic_on_its_line():
    assert codes(EMOJI % "") == [("FL602", 3)]
    assert codes(EMOJI % "  # flowlang: ignore[FL602]") == []


def test_comment_on_the_line_before():
    text = ('flow emoji {\n  settings { sms from "ACME" }\n  # flowlang: ignore[FL602]\n'
            '  send sms { text "Hi 🎉" }\n  complete\n}\n')
    assert codes(text) == []


def test_several_codes_in_one_comment():
    assert codes(EMOJI % "  # flowlang: ignore[FL601, FL602]") == [("FL001", 3)]  # FL601: nothing


def test_a_suppression_that_hides_nothing_is_reported():
    text = 'flow clean {\n  # flowlang: ignore[FL502]\n  add to selection "A"\n  complete\n}\n'
    diags = check_project(project_from_texts({"t.flow": text}))
    assert [(d.code, d.line, d.severity.value) for d in diags] == [("FL001", 2, "warning")]
    assert "suppresses nothing" in diags[0].message


def test_unknown_codes_and_fl100_are_reported():
    text = 'flow x {\n  add to selection "A"  # flowlang: ignore[FL999, FL100]\n  complete\n}\n'
    messages = sorted(d.message for d in check_project(project_from_texts({"t.flow": text})))
    assert any("FL999" in m for m in messages) and any("FL100 cannot" in m for m in messages)


def test_syntax_errors_cannot_be_hidden():
    text = 'flow x {\n  wait three days  # flowlang: ignore[FL100]\n}\n'
    assert ("FL100", 2) in codes(text, ignore=["FL100"])


def test_errors_can_be_hidden_too():
    text = 'flow x {\n  send email "Hi" { subject "Hello" }  # flowlang: ignore[FL304]\n  complete\n}\n'
    assert codes(text) == []


def test_ignore_list_hides_a_code_everywhere():
    assert codes(EMOJI % "", ignore=["FL602"]) == []


def test_pyproject_ignore_and_command_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.flowlang]\nignore = ["FL602"]\n')
    (tmp_path / "e.flow").write_text(EMOJI % "")
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert find_config()[0] == ["FL602"]
    assert main(["check", "--strict", str(tmp_path / "e.flow")]) == 0
    monkeypatch.chdir(tmp_path.parent)
    assert main(["check", "--strict", str(tmp_path / "e.flow")]) == 1
    assert main(["check", "--strict", "--ignore", "FL602", str(tmp_path / "e.flow")]) == 0
    assert main(["check", "--ignore", "FL777", str(tmp_path / "e.flow")]) == 2
    capsys.readouterr()


def test_a_broken_pyproject_is_a_usage_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.flowlang]\nignore = "FL602"\n')
    (tmp_path / "e.flow").write_text(EMOJI % "")
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(tmp_path / "e.flow")]) == 2
    assert "ignore must be a list" in capsys.readouterr().err
