"""The shape of splits: each branch fits the split's mode, and a random split's
weights add up to 100% (FL303, at the split's first line)."""
from __future__ import annotations

from flowlang import nodes as n
from flowlang.check.context import CheckContext
from flowlang.check.steps import walk

_MODE_TEXT = {"when": "a conditional split", "random": "a random split", "value": "a split on a value"}
_BRANCH_FORM = {"when": 'branch "Name" when CONDITION { … }', "random": 'branch "Name" 50% { … }',
                "value": '"VALUE" { … }'}


def rule(ctx: CheckContext) -> None:
    for flow in ctx.declarations(n.Flow):
        for step in walk(flow.steps):
            if isinstance(step, n.Split):
                split(ctx, step)


def split(ctx: CheckContext, step: n.Split) -> None:
    branches = step.branches
    if not branches:
        ctx.report("FL302", step, f"{_MODE_TEXT[step.mode]} needs at least one branch",
                   help=f"write `{_BRANCH_FORM[step.mode]}`")
        return
    for branch in branches:
        if _fits(step.mode, branch):
            continue
        ctx.report("FL302", branch, f"this branch does not fit {_MODE_TEXT[step.mode]}",
                   help=f"write `{_BRANCH_FORM[step.mode]}`")
    if step.mode == "random":
        weights = [b.weight.value for b in branches
                   if isinstance(b, n.Branch) and b.weight is not None and b.weight.value is not None]
        total = sum(weights)
        if len(weights) == len(branches) and abs(total - 100) > 1e-9:
            ctx.report("FL303", step, f"the branches of a random split add up to {total:g}%, "
                       "not 100%", help="make the percentages add up to exactly 100%")


def _fits(mode: str, branch: n.Node) -> bool:
    if mode == "value":
        return isinstance(branch, n.ValueBranch)
    if not isinstance(branch, n.Branch):
        return False
    if mode == "random":
        return branch.weight is not None and branch.condition is None
    return branch.condition is not None and branch.weight is None
