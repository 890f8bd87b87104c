"""A project: the `.flow` files named on the command line, folders searched
recursively, read and parsed. Names are global across a project (DESIGN §3.2)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import attrs

from flowlang.gcpause import batch
from flowlang.source import SourceFile
from flowlang.syntax import ParseResult, parse


class ProjectError(Exception):
    """A path that cannot be read: a usage or I/O error (exit status 2), not a finding."""


@attrs.define(eq=False)
class Project:
    sources: list[SourceFile]
    parsed: list[ParseResult]

    @property
    def files(self):
        return [result.file for result in self.parsed]

    def source(self, path: str) -> SourceFile | None:
        return next((s for s in self.sources if s.path == path), None)


def find_files(paths: Iterable[str]) -> list[Path]:
    """Every `.flow` file under `paths`, each once, in a stable order."""
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                candidates = sorted(p for p in path.rglob("*.flow") if p.is_file())
            except OSError as e:
                raise ProjectError(f"cannot read folder {raw}: {e.strerror or e}") from None
        elif path.is_file():
            candidates = [path]
        elif path.exists():
            raise ProjectError(f"{raw} is neither a file nor a folder")
        else:
            raise ProjectError(f"{raw}: no such file or folder")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def read_source(path: Path) -> SourceFile:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProjectError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ProjectError(f"{path} is not UTF-8 text (byte {e.start})") from None
    return SourceFile(str(path), text)


@batch
def load_project(paths: Iterable[str]) -> Project:
    sources = [read_source(p) for p in find_files(paths)]
    return Project(sources, [parse(s) for s in sources])


@batch
def project_from_texts(texts: dict[str, str]) -> Project:
    """A project from in-memory files (tests, embedding)."""
    sources = [SourceFile(path, text) for path, text in texts.items()]
    return Project(sources, [parse(s) for s in sources])
