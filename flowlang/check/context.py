"""What every rule needs to know about a project: its declarations by name, the
registry (stdlib plus the project's own declarations), and each command resolved
to the action or setting it names.

Rules read the context and report through it; none of them re-parses or
re-resolves. Declarations that had syntax errors are known by name (so that
references to them resolve) but not checked further: their holes would only
produce echoes of the syntax error.
"""
from __future__ import annotations

import difflib
from typing import Iterator, Sequence

import attrs

from flowlang import nodes as n
from flowlang.diagnostics import Diagnostic, Related
from flowlang.patterns import Pattern
from flowlang.project import Project
from flowlang.source import Span
from flowlang.stdlib import ActionDecl, Registry, SettingDecl, read_declarations, standard_registry

NAMED = (n.Flow, n.Pipeline, n.Form, n.Link)
KIND_OF = {n.Flow: "flow", n.Pipeline: "pipeline", n.Form: "form", n.Link: "link"}


@attrs.define(eq=False)
class ResolvedSetting:
    decl: SettingDecl
    line: n.Command
    pattern: Pattern | None  # the alternative that matched; None for a flag
    values: tuple[n.Node | None, ...]

    def value(self, kind: str | None = None) -> n.Node | None:
        """The first slot value (of `kind`, if given)."""
        if self.pattern is None:
            return None
        for slot, value in zip(self.pattern.slots, self.values):
            if value is not None and (kind is None or slot.kind == kind):
                return value
        return None

    @property
    def word(self) -> str:
        """The alternative's literal words (`skip`, `task in`), for choices."""
        return " ".join(i for i in self.pattern.items if isinstance(i, str)) if self.pattern else ""


@attrs.define(eq=False)
class Operation:
    """One line of an `update` block: `set score = 10`, `add "X" to topics`."""

    op: str  # set | clear | increase | decrease | add | remove
    field: n.Node  # Word | Ref
    value: n.Node | None
    line: n.Command

    @property
    def field_name(self) -> str:
        return self.field.text if isinstance(self.field, n.Word) else self.field.dotted


@attrs.define(eq=False)
class ResolvedAction:
    command: n.Command
    decl: ActionDecl
    args: tuple[n.Node | None, ...]
    settings: dict[str, list[ResolvedSetting]] = attrs.field(factory=dict)
    operations: list[Operation] = attrs.field(factory=list)
    #: `success` / `no success` when the action stands in a `complete { … }` block.
    outcome: str | None = None

    def setting(self, name: str) -> ResolvedSetting | None:
        found = self.settings.get(name)
        return found[0] if found else None

    def arg(self, kind: str | None = None) -> n.Node | None:
        for slot, value in zip(self.decl.pattern.slots, self.args):
            if value is not None and (kind is None or slot.kind == kind):
                return value
        return None

    @property
    def phrase(self) -> str:
        return self.decl.phrase


@attrs.define(eq=False)
class CheckContext:
    project: Project
    registry: Registry
    diagnostics: list[Diagnostic] = attrs.field(factory=list)
    #: Every flow, pipeline, form and link by name (all occurrences, in order).
    by_name: dict[str, list[n.Node]] = attrs.field(factory=dict)
    #: id(Command) -> its resolution, for commands that name an action.
    resolved: dict[int, ResolvedAction] = attrs.field(factory=dict)
    #: id(settings/trigger/stage Command) -> its resolution.
    resolved_settings: dict[int, ResolvedSetting] = attrs.field(factory=dict)
    broken: list[tuple[str, range]] = attrs.field(factory=list)
    #: Names used as references, resolved by the names rule: (kind, node, scope),
    #: kind one of flow, form, link, stage; scope the pipeline for stages.
    references: list[tuple[str, n.Node, n.Node | None]] = attrs.field(factory=list)
    #: Template strings to check, with the participant type they render over.
    templates: list[tuple[n.Str, str]] = attrs.field(factory=list)
    #: id(Phrase) -> (EventDecl, slot values) for behaviour conditions.
    conditions: dict[int, tuple] = attrs.field(factory=dict)
    #: id(EventPhrase) -> (EventDecl, slot values) for triggers, moves and handlers.
    events: dict[int, tuple] = attrs.field(factory=dict)

    # ------------------------------------------------------------------ reporting
    def report(self, code: str, at: n.Node | Span, message: str, *, help: str | None = None,
               related: Sequence[tuple[n.Node | Span, str]] = ()) -> None:
        span = at if isinstance(at, Span) else at.span
        rel = tuple(Related.at(r if isinstance(r, Span) else r.span, text) for r, text in related)
        self.diagnostics.append(Diagnostic.at(code, span, message, help=help, related=rel))

    # ------------------------------------------------------------------ declarations
    def declarations(self, kind=None) -> Iterator[n.Node]:
        """The project's declarations that parsed cleanly, in file order."""
        for result in self.project.parsed:
            for decl in result.file.declarations:
                if (kind is None or isinstance(decl, kind)) and not self.is_broken(decl):
                    yield decl

    def is_broken(self, decl: n.Node) -> bool:
        span = decl.span
        return any(path == span.file and span.line in lines for path, lines in self.broken)

    @property
    def flows(self) -> list[n.Flow]:
        return list(self.declarations(n.Flow))

    def lookup(self, name: str, kind: type | None = None) -> n.Node | None:
        """The first declaration called `name` (of `kind`, if given)."""
        for decl in self.by_name.get(name, ()):
            if kind is None or isinstance(decl, kind):
                return decl
        return None

    def names_of(self, kind: type) -> list[str]:
        return [name for name, decls in self.by_name.items() if any(isinstance(d, kind) for d in decls)]

    def action_of(self, command: n.Node) -> ResolvedAction | None:
        return self.resolved.get(id(command))


def suggest(word: str, candidates: Sequence[str]) -> str | None:
    """A 'did you mean' help line from the nearest candidates, if any is near."""
    close = difflib.get_close_matches(word, list(dict.fromkeys(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def build_context(project: Project) -> CheckContext:
    registry = standard_registry()
    ctx = CheckContext(project, registry)
    for result in project.parsed:
        ctx.broken.extend((result.file.path, lines) for lines in result.broken)
    files = [r.file for r in project.parsed]
    ctx.diagnostics.extend(read_declarations(files, registry))
    for file in files:
        for decl in file.declarations:
            if isinstance(decl, NAMED):
                ctx.by_name.setdefault(decl.name.text, []).append(decl)
    return ctx
