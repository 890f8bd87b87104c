"""Diagnostics rendered for people and for machines, in one place.

`text` is rustc-like (the source line, a caret underline, the related places, a
help line; colour only on a terminal); `json` is one array of objects with the
fields of DESIGN §5; `github` is workflow commands; `sarif` is SARIF 2.1.0.
"""
from __future__ import annotations

import json
from typing import Callable, Sequence

from flowlang.diagnostics import Diagnostic, Severity
from flowlang.source import SourceFile

SourceLookup = Callable[[str], "SourceFile | None"]

_COLOURS = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "help": "\x1b[1;36m",
            "frame": "\x1b[1;34m", "bold": "\x1b[1m", "reset": "\x1b[0m"}


def _paint(colour: bool):
    def paint(kind: str, text: str) -> str:
        return f"{_COLOURS[kind]}{text}{_COLOURS['reset']}" if colour else text
    return paint


def render_text(diagnostics: Sequence[Diagnostic], lookup: SourceLookup, colour: bool = False) -> str:
    paint = _paint(colour)
    blocks = []
    for d in diagnostics:
        kind = d.severity.value
        lines = [paint(kind, f"{kind}[{d.code}]") + paint("bold", f": {d.message}")]
        gutter = len(str(max([d.end_line] + [r.line for r in d.related])))
        pad = " " * gutter
        lines.append(f"{pad}{paint('frame', '-->')} {d.file}:{d.line}:{d.column}")
        lines.extend(_excerpt(lookup(d.file), d.line, d.column, d.end_line, d.end_column,
                              gutter, paint, kind))
        for r in d.related:
            lines.append(f"{pad}{paint('frame', ':::')} {r.file}:{r.line}:{r.column}: {r.message}")
            lines.extend(_excerpt(lookup(r.file), r.line, r.column, r.end_line, r.end_column,
                                  gutter, paint, "help"))
        if d.help:
            lines.append(f"{pad} {paint('frame', '=')} {paint('help', 'help')}: {d.help}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _excerpt(source, line, column, end_line, end_column, gutter, paint, kind) -> list[str]:
    if source is None or not source.line(line) and line > len(source.lines):
        return []
    text = source.line(line).replace("\t", " ")
    if end_line == line:
        width = max(1, end_column - column)
    else:
        width = max(1, len(text) - column + 1)
    bar = paint("frame", "|")
    return [
        f"{' ' * gutter} {bar}",
        f"{paint('frame', str(line).rjust(gutter))} {bar} {text}",
        f"{' ' * gutter} {bar} {' ' * (column - 1)}{paint(kind, '^' * width)}",
    ]


def summary(diagnostics: Sequence[Diagnostic], files: int) -> str:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    warnings = len(diagnostics) - errors
    noun = "file" if files == 1 else "files"
    if not diagnostics:
        return f"checked {files} {noun}: no problems"
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return f"checked {files} {noun}: " + ", ".join(parts)


def render_json(diagnostics: Sequence[Diagnostic], lookup: SourceLookup | None = None) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2, ensure_ascii=False) + "\n"


def _github_escape(text: str, property: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(diagnostics: Sequence[Diagnostic], lookup: SourceLookup | None = None) -> str:
    """GitHub Actions workflow commands: one annotation per diagnostic."""
    out = []
    for d in diagnostics:
        message = d.message + (f" (help: {d.help})" if d.help else "")
        props = ",".join([
            f"file={_github_escape(d.file, True)}", f"line={d.line}", f"col={d.column}",
            f"endLine={d.end_line}", f"endColumn={d.end_column}",
            f"title={_github_escape(d.code, True)}",
        ])
        out.append(f"::{d.severity.value} {props}::{_github_escape(message)}")
    return "\n".join(out) + ("\n" if out else "")


RENDERERS = {
    "json": render_json,
    "github": render_github,
}
