"""Walking the steps of a flow or handler: every command in step position, with
where it stands, so that each rule does not re-learn the shape of the tree."""
from __future__ import annotations

from typing import Iterator

from flowlang import nodes as n


def nested_blocks(step: n.Node) -> Iterator[n.Block]:
    """The step blocks directly inside a step (split branches, exit blocks …)."""
    if isinstance(step, n.Split):
        for item in step.items:
            if item.body is not None:
                yield item.body
    elif isinstance(step, n.WaitFor):
        if isinstance(step.otherwise, n.ElseExit) and step.otherwise.body is not None:
            yield step.otherwise.body
    elif isinstance(step, (n.Exit, n.Complete)):
        if step.body is not None:
            yield step.body


def walk(statements) -> Iterator[n.Node]:
    """Every step in `statements` and below, depth first, in source order."""
    for step in statements:
        yield step
        for block in nested_blocks(step):
            yield from walk(block.statements)
        if isinstance(step, n.Command) and step.body is not None:
            # a setting with a block of steps: `no mobile exit { add to flow x }`
            for line in step.body.statements:
                if isinstance(line, n.Command) and line.body is not None:
                    yield from walk(line.body.statements)
