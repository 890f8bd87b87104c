"""Scenarios kept as data: `tests/scenarios/<name>/` holds a project, people,
events and the arguments of one `flowlang simulate` run, and the JSON it must
print (DESIGN §9, the simulation contract). See tests/scenarios/README.md.

`FLOWLANG_UPDATE_SCENARIOS=1 pytest tests/test_scenarios.py` rewrites each
expected.json from the current output (never for a scenario marked `xfail`,
whose expected.json is written by hand). Review the diff before committing it:
an expected.json is a claim about the semantics, not a recording.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
from pathlib import Path

import pytest

from flowlang import cli

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
REPO = SCENARIOS.parent.parent
UPDATE = os.environ.get("FLOWLANG_UPDATE_SCENARIOS") == "1"


def _scenarios() -> list:
    params = []
    for folder in sorted(p for p in SCENARIOS.iterdir() if (p / "args.json").is_file()):
        args = json.loads((folder / "args.json").read_text(encoding="utf-8"))
        marks = []
        if args.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=args["xfail"]))
        params.append(pytest.param(folder, id=folder.name, marks=marks))
    return params


def project_paths(folder: Path) -> list[str]:
    """The scenario's own folder, or the folders `project.txt` names (one a line,
    relative to the repository root)."""
    listing = folder / "project.txt"
    if not listing.is_file():
        return ["."]
    lines = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
    return [str(REPO / line) for line in lines if line and not line.startswith("#")]


def run_simulate(folder: Path, monkeypatch, *, seed: int | None = None) -> tuple[int, str, str]:
    """`flowlang simulate … --format json` in the scenario's folder, in process:
    (exit status, stdout, stderr). File names in messages are as given here
    (`people.jsonl`), so expected messages do not depend on where the tests run."""
    args = json.loads((folder / "args.json").read_text(encoding="utf-8"))
    argv = ["simulate", *project_paths(folder), "--flow", args["flow"],
            "--participants", "people.jsonl", "--start", args["start"],
            "--until", args["until"], "--seed", str(args.get("seed", 0) if seed is None else seed),
            "--format", "json"]
    if (folder / "events.jsonl").is_file():
        argv += ["--events", "events.jsonl"]
    monkeypatch.chdir(folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def outcome(status: int, stdout: str, stderr: str) -> dict:
    """What a run is compared on: the simulate JSON, or for a run that must fail,
    its exit status and the first line of its message."""
    if status == 0:
        return json.loads(stdout)
    first = stderr.strip().splitlines()[0] if stderr.strip() else ""
    return {"exit": status, "stderr": first.removeprefix("flowlang: ")}


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


@pytest.mark.parametrize("folder", _scenarios())
def test_scenario(folder: Path, monkeypatch):
    args = json.loads((folder / "args.json").read_text(encoding="utf-8"))
    got = outcome(*run_simulate(folder, monkeypatch))
    expected_file = folder / "expected.json"
    if UPDATE and not args.get("xfail"):
        expected_file.write_text(_dump(got), encoding="utf-8")
    expected = json.loads(expected_file.read_text(encoding="utf-8"))
    if "exit" in expected:
        # a run that must fail: same status, and the message names file:line
        assert got.get("exit") == expected["exit"], got
        assert expected["stderr"] in got.get("stderr", ""), got
        return
    if got != expected:
        diff = "".join(difflib.unified_diff(_dump(expected).splitlines(True), _dump(got).splitlines(True),
                                            "expected.json", "simulate"))
        pytest.fail(f"{folder.name}: the simulation differs from expected.json\n{diff}")


def test_every_scenario_is_complete():
    """Each folder has what the runner reads, and its expected output exists."""
    for folder in SCENARIOS.iterdir():
        if not folder.is_dir() or folder.name.startswith((".", "__")):
            continue
        names = {p.name for p in folder.iterdir()}
        assert {"args.json", "people.jsonl", "expected.json"} <= names, folder.name
        assert any(n.endswith(".flow") for n in names) or "project.txt" in names, folder.name
        args = json.loads((folder / "args.json").read_text(encoding="utf-8"))
        assert {"flow", "start", "until"} <= set(args), folder.name


def test_random_split_is_reproducible_by_seed(monkeypatch):
    """The same seed gives the same branches, run after run; another seed may
    give others (and does, for this scenario's people)."""
    folder = SCENARIOS / "random_split"
    first = outcome(*run_simulate(folder, monkeypatch))
    again = outcome(*run_simulate(folder, monkeypatch))
    assert first == again

    def branches(result):
        return {p["id"]: p["path"][1] for p in result["participants"]}

    other = outcome(*run_simulate(folder, monkeypatch, seed=12345))
    assert branches(other) != branches(first)
    assert set(branches(other)) == set(branches(first))
