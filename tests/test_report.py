"""Output formats: SARIF 2.1.0 checked by Microsoft's own validator, GitHub
workflow commands, JSON."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flowlang import check_project, load_project, project_from_texts
from flowlang.diagnostics import CODES
from flowlang.report import render_github, render_sarif, sarif_log

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT.parent / "shared" / "conformance" / "bad"


def validator() -> str | None:
    for candidate in (os.environ.get("SARIF_MULTITOOL"),
                      str(ROOT / ".ci" / "node_modules" / ".bin" / "sarif-multitool"),
                      shutil.which("sarif-multitool")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def validate(tool: str, log: dict, tmp_path: Path) -> list[dict]:
    """The validator's findings for a log (it exits 0 either way: read its output)."""
    source, out = tmp_path / "in.sarif", tmp_path / "out.sarif"
    source.write_text(json.dumps(log), encoding="utf-8")
    proc = subprocess.run([tool, "validate", str(source), "-o", str(out), "--log", "ForceOverwrite"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text(encoding="utf-8"))["runs"][0].get("results", [])


@pytest.fixture(scope="module")
def bad_project_diagnostics():
    if not BAD.is_dir():
        pytest.skip("needs ../shared/conformance")
    project = load_project([str(BAD)])
    return project, check_project(project)


def test_sarif_is_valid_for_microsofts_validator(tmp_path, bad_project_diagnostics):
    tool = validator()
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("sarif-multitool is not installed (.ci/run installs it)")
        pytest.skip("sarif-multitool is not installed (npm install --prefix .ci @microsoft/sarif-multitool)")
    project, diagnostics = bad_project_diagnostics
    findings = validate(tool, sarif_log(diagnostics, project.source), tmp_path)
    problems = [f for f in findings if f.get("level") in ("error", "warning")]
    assert not problems, problems


def test_the_validator_does_find_problems(tmp_path):
    """A control: a broken log must not pass, so that the test above can fail."""
    tool = validator()
    if tool is None:
        pytest.skip("sarif-multitool is not installed")
    findings = validate(tool, {"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]}, tmp_path)
    assert any(f.get("level") == "error" for f in findings)


def test_sarif_shape(bad_project_diagnostics):
    project, diagnostics = bad_project_diagnostics
    log = sarif_log(diagnostics, project.source)
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} == set(CODES)
    for rule in rules:
        assert rule["helpUri"].endswith("docs/diagnostics.md#" + rule["id"].lower())
        assert rule["shortDescription"]["text"] == CODES[rule["id"]].title
    assert len(run["results"]) == len(diagnostics)
    for result, d in zip(run["results"], diagnostics):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == d.code
        region = result["locations"][0]["physicalLocation"]["region"]
        assert (region["startLine"], region["startColumn"]) == (d.line, d.column)
        assert len(result.get("relatedLocations", [])) == len(d.related)
        assert result["partialFingerprints"]["flowlang/v1"]


def test_fingerprints_survive_moving_lines():
    text = 'flow f {\n  add to selection "Hot"\n  remove from selection "Hot"\n  complete\n}\n'
    moved = "# a comment\n\n" + text

    def fingerprint(source):
        project = project_from_texts({"f.flow": source})
        (result,) = sarif_log(check_project(project), project.source)["runs"][0]["results"]
        return result["partialFingerprints"]["flowlang/v1"], result["locations"][0]

    (a, where_a), (b, where_b) = fingerprint(text), fingerprint(moved)
    assert a == b
    assert where_a != where_b


def test_github_annotations_escape_and_carry_the_span():
    project = project_from_texts({"a,b.flow": 'flow f {\n  sned sms { text "x" }\n  complete\n}\n'})
    out = render_github(check_project(project))
    assert out.startswith("::error file=a%2Cb.flow,line=2,col=3,endLine=2,endColumn=11,title=FL201::")
    assert "did you mean" in out


def test_sarif_output_from_the_cli_is_json(capsys):
    from flowlang.cli import main

    if not BAD.is_dir():
        pytest.skip("needs ../shared/conformance")
    assert main(["check", "--format", "sarif", str(BAD / "FL501_conflict.flow")]) == 1
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0" and log["runs"][0]["results"][0]["ruleId"] == "FL501"


def test_render_sarif_text_round_trips(bad_project_diagnostics):
    project, diagnostics = bad_project_diagnostics
    assert json.loads(render_sarif(diagnostics, project.source)) == sarif_log(diagnostics, project.source)
