"""The checker: every diagnostic a project can have, syntax first.

`check_project` collects the parser's diagnostics (FL100, FL101), builds the
context (registry, names, resolved commands) and runs each rule of `RULES` over
the declarations that parsed cleanly. Rules are plain functions in the order
they depend on each other: resolution first (FL201/202/301/302/303/307), then
fields, conditions and events (FL205/206/305, recording the names they use),
names (FL203/204), split shapes, pipeline moves (FL406), what steps need from their flow (FL304/306),
the control-flow graph rules (FL401-FL407), the path analyses of effects
(FL501/502), the form and link triggers (FL503/504), and SMS length (FL601/602).
"""
from __future__ import annotations

from typing import Iterable

from flowlang.check import (fields, flowgraph, names, paths, pipelines, requirements, resolve,
                            sms, splits, suppress, triggers)
from flowlang.check.context import CheckContext, build_context
from flowlang.diagnostics import Diagnostic
from flowlang.gcpause import batch
from flowlang.project import Project

#: The semantic rules, in order; each is `rule(context) -> None` and reports
#: through the context.
RULES = (
    resolve.rule,
    fields.rule,
    names.rule,
    splits.rule,
    pipelines.rule,
    requirements.rule,
    flowgraph.rule,
    paths.rule,
    triggers.rule,
    sms.rule,
)


@batch
def analyse(project: Project, ignore: Iterable[str] = ()) -> CheckContext:
    """Run every rule, then the suppressions (comments and the `ignore` codes);
    the context keeps what the rules learned (for the compiler)."""
    ctx = build_context(project)
    for result in project.parsed:
        ctx.diagnostics.extend(result.diagnostics)
    for rule in RULES:
        rule(ctx)
    ctx.diagnostics = suppress.apply(dict.fromkeys(ctx.diagnostics), project, ignore)
    return ctx


@batch
def check_project(project: Project, ignore: Iterable[str] = ()) -> list[Diagnostic]:
    ctx = analyse(project, ignore)
    unique = dict.fromkeys(ctx.diagnostics)
    return sorted(unique, key=Diagnostic.sort_key)
