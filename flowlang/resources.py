"""Where the grammar and the stdlib live: inside the installed package (the wheel
carries them as `flowlang/grammar` and `flowlang/stdlib`), or beside the package
in a source checkout."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"flowlang is installed without its {name}/ folder")


def grammar_file() -> Path:
    return _find("grammar") / "flowlang.lark"


def stdlib_dir() -> Path:
    return _find("stdlib")


def diagnostics_doc() -> Path:
    """docs/diagnostics.md: the one text `flowlang explain` and the docs share."""
    for candidate in (_PACKAGE / "docs" / "diagnostics.md", _PACKAGE.parent / "docs" / "diagnostics.md"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("flowlang is installed without docs/diagnostics.md")
