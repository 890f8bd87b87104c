"""The wheel carries the grammar and the stdlib, and an installed flowlang works from
any directory (DESIGN §2: `pip install .` then `flowlang check examples/` elsewhere).

Slow: it builds a wheel and installs it, with its dependencies from the package
registry, into a fresh virtual environment.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO.parent / "shared" / "conformance"
#: Folders beside the package that the wheel must carry inside it, as flowlang/<folder>/.
DATA_FOLDERS = ("grammar", "stdlib")
BIN = "Scripts" if os.name == "nt" else "bin"


def _run(cmd: list, *, cwd=None, timeout: int = 600, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env() -> dict:
    """The environment without anything that would let the repository leak into an
    installed interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    try:
        import build  # noqa: F401
        _run([sys.executable, "-m", "build", "--wheel", "--outdir", out, REPO], env=_clean_env())
    except ImportError:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, REPO], env=_clean_env())
    (path,) = out.glob("flowlang-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel and its dependencies; returns its bin/."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", venv], env=_clean_env())
    python = venv / BIN / "python"
    _run([python, "-m", "pip", "install", "-q", wheel], env=_clean_env(), cwd="/")
    return venv / BIN


def test_wheel_carries_grammar_and_stdlib(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder in DATA_FOLDERS:
        files = [p for p in (REPO / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
        assert files or folder == "stdlib", f"{folder}/ is empty"
        expected |= {"flowlang/" + p.relative_to(REPO).as_posix() for p in files}
    assert "flowlang/grammar/flowlang.lark" in expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"


def test_wheel_holds_only_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "flowlang/__init__.py" in names and "flowlang/cli.py" in names
    strays = [n for n in names if not n.startswith(("flowlang/", "flowlang-"))]
    assert not strays, f"files outside the package: {strays[:20]}"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "flowlang = flowlang.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_package_uses_its_own_grammar_and_stdlib(installed):
    proc = _run([installed / "python", "-c",
                 "import flowlang, flowlang.resources as r;"
                 "print(flowlang.__file__); print(r.grammar_file()); print(r.stdlib_dir())"],
                cwd="/", env=_clean_env())
    venv = installed.parent.resolve()
    for line in proc.stdout.split():
        assert Path(line).resolve().is_relative_to(venv), f"{line} is not inside {venv}"


def _projects() -> list[Path]:
    found = []
    if (CONFORMANCE / "ok").is_dir():
        found.append(CONFORMANCE / "ok")
    if any((REPO / "examples").rglob("*.flow")):
        found.append(REPO / "examples")
    return found


def test_installed_flowlang_checks_from_another_directory(installed):
    projects = _projects()
    if not projects:
        pytest.skip("no conformance cases and no examples to check")
    for project in projects:
        proc = subprocess.run([str(installed / "flowlang"), "check", str(project)], cwd="/",
                              env=_clean_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"flowlang check {project}: exit {proc.returncode}\n" \
                                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_installed_flowlang_reports_syntax_errors(installed, tmp_path):
    bad = tmp_path / "bad.flow"
    bad.write_text("flow broken {\n  wait three days\n  complete\n}\n", encoding="utf-8")
    proc = subprocess.run([str(installed / "flowlang"), "check", "--format", "json", str(bad)],
                          cwd="/", env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert '"FL100"' in proc.stdout
    missing = subprocess.run([str(installed / "python"), "-m", "flowlang", "check", str(tmp_path / "nope")],
                             cwd="/", env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
