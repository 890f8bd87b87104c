"""The command line: exit statuses, output formats, and usage errors without tracebacks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowlang.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT.parent / "shared" / "conformance"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


CLEAN = 'flow clean {\n  add to selection "A"\n  complete\n}\n'
BROKEN = 'flow broken {\n  wait three days\n  complete\n}\n'


def test_clean_project_exits_zero(tmp_path, capsys):
    (tmp_path / "a.flow").write_text(CLEAN)
    code, out, err = run(capsys, "check", str(tmp_path))
    assert code == 0
    assert out == ""
    assert "no problems" in err


def test_errors_exit_one_with_rustc_like_text(tmp_path, capsys):
    path = tmp_path / "b.flow"
    path.write_text(BROKEN)
    code, out, _ = run(capsys, "check", str(path))
    assert code == 1
    assert "error[FL100]" in out
    assert f"--> {path}:2:8" in out
    assert "  wait three days" in out
    assert "^^^^^" in out
    assert "\x1b[" not in out  # no colour when not a terminal


def test_json_has_every_field(tmp_path, capsys):
    path = tmp_path / "b.flow"
    path.write_text(BROKEN)
    code, out, _ = run(capsys, "check", "--format", "json", str(path))
    assert code == 1
    (diag,) = json.loads(out)
    assert set(diag) == {"code", "severity", "message", "file", "line", "column", "end_line",
                         "end_column", "related", "help"}
    assert (diag["code"], diag["severity"], diag["line"], diag["column"]) == ("FL100", "error", 2, 8)


def test_json_related_locations(tmp_path, capsys):
    path = tmp_path / "d.flow"
    path.write_text('flow a {\n  complete\n}\nflow a {\n  complete\n}\n')
    _, out, _ = run(capsys, "check", "--format", "json", str(path))
    (diag,) = json.loads(out)
    assert diag["code"] == "FL203" and diag["line"] == 4
    assert diag["related"][0]["line"] == 1


def test_github_annotations(tmp_path, capsys):
    path = tmp_path / "b.flow"
    path.write_text(BROKEN)
    _, out, _ = run(capsys, "check", "--format", "github", str(path))
    assert out.startswith(f"::error file={path},line=2,col=8,endLine=2,endColumn=13,title=FL100::")


def test_strict_fails_on_warnings(tmp_path, capsys):
    (tmp_path / "w.flow").write_text('flow w {\n  settings { sms from "ACME" }\n'
                                     '  send sms { text "Thanks for joining! 🎉" }\n  complete\n}\n')
    code, out, _ = run(capsys, "check", str(tmp_path))
    assert code == 0 and "warning[FL602]" in out
    strict, _, _ = run(capsys, "check", "--strict", str(tmp_path))
    assert strict == 1


@pytest.mark.parametrize("argv", [["check", "no/such/path"], ["check"], ["frobnicate"],
                                  ["check", "--format", "xml", "x"]])
def test_usage_errors_exit_two(capsys, argv):
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err


def test_unreadable_file_is_exit_two(tmp_path, capsys):
    path = tmp_path / "x.flow"
    path.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert "not UTF-8" in err and err.count("\n") == 1


def test_folders_are_searched_recursively_as_one_project(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.flow").write_text('flow a {\n  add to flow b\n  complete\n}\n')
    (tmp_path / "sub" / "b.flow").write_text('flow b {\n  wait 1 day\n  complete\n}\n')
    code, out, _ = run(capsys, "check", str(tmp_path))
    assert code == 0, out


def test_fmt_check_lists_files_and_exits_one(tmp_path, capsys):
    path = tmp_path / "messy.flow"
    path.write_text('flow messy {\n      complete\n}\n')
    code, out, _ = run(capsys, "fmt", "--check", str(path))
    assert code == 1
    assert str(path) in out
    assert path.read_text() == 'flow messy {\n      complete\n}\n'  # --check changes nothing
    code, _, _ = run(capsys, "fmt", str(path))
    assert code == 0
    assert path.read_text() == 'flow messy {\n  complete\n}\n'
    code, out, _ = run(capsys, "fmt", "--check", str(path))
    assert code == 0 and out == ""


def test_fmt_refuses_files_with_syntax_errors(tmp_path, capsys):
    path = tmp_path / "b.flow"
    path.write_text(BROKEN)
    code, _, err = run(capsys, "fmt", str(path))
    assert code == 1
    assert "syntax errors" in err
    assert path.read_text() == BROKEN


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="needs ../shared/conformance")
def test_conformance_ok_is_clean_in_strict_mode(capsys):
    code, out, err = run(capsys, "check", "--strict", str(CONFORMANCE / "ok"))
    assert code == 0, out + err


def test_module_entry_point_runs(tmp_path):
    (tmp_path / "a.flow").write_text(CLEAN)
    proc = subprocess.run([sys.executable, "-m", "flowlang", "check", str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
