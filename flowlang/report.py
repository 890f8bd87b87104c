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


# ---------------------------------------------------------------------- SARIF

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
HELP_URI = "https://github.com/flowlang/flowlang/blob/main/docs/diagnostics.md#{anchor}"
_LEVEL = {"error": "error", "warning": "warning"}


def _uri(path: str) -> str:
    """A file's URI relative to the current folder when it lies below it (so that
    code scanning can match it to the repository), else absolute."""
    import os
    from pathlib import Path

    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(Path(os.getcwd()).resolve()).as_posix()
    except ValueError:
        return absolute.as_uri()


def _region(line: int, column: int, end_line: int, end_column: int) -> dict:
    region = {"startLine": line, "startColumn": column}
    if (end_line, end_column) > (line, column):
        region.update(endLine=end_line, endColumn=end_column)
    return region


def _fingerprint(d: Diagnostic, lookup: SourceLookup | None) -> str:
    """The alert's identity across commits: its code, file, message and the text of
    its line (whitespace squeezed), not the line number, so that moving code
    around it keeps the alert the same one."""
    import hashlib

    source = lookup(d.file) if lookup else None
    text = " ".join(source.line(d.line).split()) if source is not None else ""
    raw = "\0".join([d.code, _uri(d.file), d.message, text])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


def sarif_log(diagnostics: Sequence[Diagnostic], lookup: SourceLookup | None = None) -> dict:
    """A SARIF 2.1.0 log: one run, a rule per code, a result per diagnostic."""
    from flowlang import __version__
    from flowlang.diagnostics import CODES

    codes = sorted(CODES)
    index = {code: i for i, code in enumerate(codes)}
    rules = [{
        "id": code,
        "name": "".join(w.capitalize() for w in CODES[code].title.replace("`", "").split()),
        "shortDescription": {"text": CODES[code].title},
        "fullDescription": {"text": f"{code}: {CODES[code].title}"},
        "helpUri": HELP_URI.format(anchor=code.lower()),
        "defaultConfiguration": {"level": _LEVEL[CODES[code].severity.value]},
    } for code in codes]
    results = []
    for d in diagnostics:
        message = d.message + (f" (help: {d.help})" if d.help else "")
        result = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": _LEVEL[d.severity.value],
            "message": {"text": message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(d.file)},
                "region": _region(d.line, d.column, d.end_line, d.end_column)}}],
            "partialFingerprints": {"flowlang/v1": _fingerprint(d, lookup)},
        }
        if d.related:
            result["relatedLocations"] = [{
                "id": number,
                "message": {"text": r.message},
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(r.file)},
                    "region": _region(r.line, r.column, r.end_line, r.end_column)},
            } for number, r in enumerate(d.related, 1)]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "flowlang",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": "https://github.com/flowlang/flowlang",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def render_sarif(diagnostics: Sequence[Diagnostic], lookup: SourceLookup | None = None) -> str:
    return json.dumps(sarif_log(diagnostics, lookup), indent=2, ensure_ascii=False) + "\n"


RENDERERS["sarif"] = render_sarif
