"""Suppression, the most asked-for feature of linters.

- `# flowlang: ignore[FL502]` (or `ignore[FL502, FL601]`) at the end of the line
  a diagnostic points at, or alone on the line before it, hides that diagnostic.
- `ignore = ["FL601"]` under `[tool.flowlang]` in the nearest `pyproject.toml`
  (from the current folder upwards), and `flowlang check --ignore FL601`, hide a
  code everywhere.
- A suppression comment that hides nothing is itself reported (FL001, a warning),
  so that stale ones do not pile up. A syntax error (FL100) cannot be hidden.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Iterable

import attrs

from flowlang.diagnostics import CODES, Diagnostic
from flowlang.project import Project, ProjectError
from flowlang.source import Span

_COMMENT = re.compile(r"#\s*flowlang:\s*ignore\[([^\]]*)\]")
UNSUPPRESSABLE = frozenset({"FL100"})


@attrs.define(eq=False)
class Suppression:
    codes: tuple[str, ...]
    file: str
    line: int  # the line it hides diagnostics on
    span: Span  # the comment
    used: set = attrs.field(factory=set)


def find_config(start: Path | None = None) -> tuple[list[str], Path | None]:
    """The `[tool.flowlang] ignore` list of the nearest pyproject.toml."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / "pyproject.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise ProjectError(f"cannot read {path}: {e}") from None
            ignore = data.get("tool", {}).get("flowlang", {}).get("ignore", [])
            if not isinstance(ignore, list) or not all(isinstance(c, str) for c in ignore):
                raise ProjectError(f"{path}: [tool.flowlang] ignore must be a list of codes")
            return [c.strip().upper() for c in ignore], path
    return [], None


def comments(project: Project) -> list[Suppression]:
    found: list[Suppression] = []
    for result, source in zip(project.parsed, project.sources):
        for comment in result.file.comments:
            match = _COMMENT.search(comment.text)
            if not match:
                continue
            codes = tuple(c.strip().upper() for c in match.group(1).split(",") if c.strip())
            span = comment.span
            before = source.line(span.line)[:span.column - 1]
            line = span.line + 1 if not before.strip() else span.line
            found.append(Suppression(codes, span.file, line, span))
    return found


def apply(diagnostics: Iterable[Diagnostic], project: Project,
          ignore: Iterable[str] = ()) -> list[Diagnostic]:
    ignored = {c.upper() for c in ignore} - UNSUPPRESSABLE
    suppressions = comments(project)
    by_line: dict[tuple[str, int], list[Suppression]] = {}
    for s in suppressions:
        by_line.setdefault((s.file, s.line), []).append(s)
    kept: list[Diagnostic] = []
    for d in diagnostics:
        if d.code in UNSUPPRESSABLE:
            kept.append(d)
            continue
        hiding = [s for s in by_line.get((d.file, d.line), ()) if d.code in s.codes]
        for s in hiding:
            s.used.add(d.code)
        if hiding or d.code in ignored:
            continue
        kept.append(d)
    for s in suppressions:
        for code in s.codes:
            if code in s.used:
                continue
            if code not in CODES:
                message = f"`{code}` is not a flowlang diagnostic code"
                help_line = "see `flowlang explain` or docs/diagnostics.md for the codes"
            elif code in UNSUPPRESSABLE:
                message = f"{code} cannot be suppressed"
                help_line = "fix the syntax error instead"
            else:
                message = f"`ignore[{code}]` suppresses nothing here"
                help_line = "remove it, or move it to the line the diagnostic points at"
            if "FL001" not in ignored:
                kept.append(Diagnostic.at("FL001", s.span, message, help=help_line))
    return kept
