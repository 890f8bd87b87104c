"""Templates are Jinja2 over the participant (`{{ person.first_name }}`).

At check time they are parsed (never rendered) to find syntax errors and the
field paths they use; at run time they render in a sandbox with strict undefined.
"""
from __future__ import annotations

import functools

import attrs
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """The one environment templates parse and render in: sandboxed (no reaching
    Python internals), immutable (no mutating the participant's data), strict
    (an unknown name is an error, not an empty string), no autoescape (these are
    subjects, SMS texts and CRM fields, not HTML)."""
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                         keep_trailing_newline=True)


@attrs.frozen
class FieldUse:
    path: tuple[str, ...]
    line: int  # 1-based line within the template


@attrs.frozen
class TemplateError:
    message: str
    line: int  # 1-based line within the template


def analyse(text: str) -> tuple[list[FieldUse], TemplateError | None]:
    """The field paths a template reads, or its syntax error."""
    if "{" not in text:
        return [], None
    try:
        tree = environment().parse(text)
    except TemplateSyntaxError as e:
        return [], TemplateError(e.message or "invalid template", e.lineno or 1)
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        tag = {"Include": "include", "Import": "import", "FromImport": "from … import",
               "Extends": "extends"}[type(node).__name__]
        return [], TemplateError(f"`{{% {tag} %}}` is not available: a template stands alone",
                                 node.lineno)
    local = {t.name for t in tree.find_all(nodes.Name) if t.ctx in ("store", "param")}
    local.add("loop")
    uses: list[FieldUse] = []
    inner: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in inner:
            continue
        path = _path(node, inner)
        if path and path[0] not in local and not (isinstance(node, nodes.Name) and node.ctx != "load"):
            uses.append(FieldUse(path, node.lineno))
    return uses, None


def _path(node, inner: set[int]) -> tuple[str, ...] | None:
    """`person.company.name` as a tuple, marking the inner nodes as seen."""
    names: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            names.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str):
            names.append(node.arg.value)
        elif isinstance(node, nodes.Name):
            names.append(node.name)
            return tuple(reversed(names))
        else:
            return None
        node = node.node
        inner.add(id(node))
