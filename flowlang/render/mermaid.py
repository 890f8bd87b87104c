"""A `Diagram` as a Mermaid flowchart, the text GitHub draws in a ```mermaid block.

Node ids are the step ids made safe (`s_` and letters, digits, `_`), so they
stay put when other steps change, like the step ids themselves. Text goes in
quoted labels with Mermaid's entity codes for what would end or confuse them
(`"` as `#quot;`, `#` as `#35;`, `<` as `#lt;` …); lines break with `<br/>`.
Mermaid refuses a diagram over `maxTextSize` characters or `maxEdges` edges
(defaults 50,000 and 500): such a flow is a `RenderError`, not a broken picture.
"""
from __future__ import annotations

import re

from flowlang.render.style import (
    EDGES,
    HEAT,
    KINDS,
    MANUAL_DASH,
    MANUAL_LEGEND,
    MANUAL_PENWIDTH,
    VOLUME_LEGEND,
    Diagram,
    Edge,
    Node,
    RenderError,
    blend,
    fill,
)

MAX_TEXT = 50_000   # Mermaid's default maxTextSize
MAX_EDGES = 500     # Mermaid's default maxEdges
DIRECTIONS = {"TB": "TD", "LR": "LR"}
GROUPS = {"handlers": "on events, in any stage"}
COUNT_PREFIX = "▸ "
WRAPPING_WIDTH = 300  # px: our lines are wrapped at `style.WRAP` characters already

_ESCAPES = str.maketrans({
    "#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;",
    "`": "#96;", "|": "#124;", ";": "#59;", "\n": " ",
})


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _lines(lines) -> str:
    return "<br/>".join(escape(t) for t in lines)


class _Ids:
    """Step ids as Mermaid identifiers: distinct, stable, never a keyword."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.taken: set[str] = set()

    def __call__(self, step: str) -> str:
        if step not in self.ids:
            base = "s_" + re.sub(r"[^A-Za-z0-9]+", "_", step).strip("_")
            safe, n = base, 1
            while safe in self.taken:
                n += 1
                safe = f"{base}_{n}"
            self.taken.add(safe)
            self.ids[step] = safe
        return self.ids[step]


def _node(ids: _Ids, node: Node) -> str:
    opening, closing = KINDS[node.kind].mermaid
    text = list(node.title) + list(node.lines) + [COUNT_PREFIX + c if i == 0 else c
                                                  for i, c in enumerate(node.counts)]
    return f'{ids(node.id)}{opening}"{_lines(text)}"{closing}'


def _style(ids: _Ids, node: Node, overlay: bool) -> list[str]:
    out = []
    if overlay:
        out.append(f"style {ids(node.id)} fill:{fill(node, overlay)}")
    if node.manual:
        out.append(f"style {ids(node.id)} stroke-dasharray:{MANUAL_DASH},"
                   f"stroke-width:{MANUAL_PENWIDTH:g}px")
    return out


class _Links:
    """Links in the order written: `linkStyle` addresses them by that index."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.by_style: dict[str, list[int]] = {}

    def add(self, tail: str, head: str, edge: Edge) -> str:
        look = EDGES[edge.kind]
        label = f'|"{_lines(edge.label)}"|' if edge.label and look.mermaid != "~~~" else ""
        index = len(self.lines)
        self.lines.append(f"{tail} {look.mermaid}{label} {head}")
        if look.style != "invis":
            width = f",stroke-width:{1 + 4 * edge.weight:.1f}px" if edge.weight else ""
            self.by_style.setdefault(f"stroke:{look.color},color:{look.color}{width}", []).append(index)
        return self.lines[-1]

    @property
    def styles(self) -> list[str]:
        return [f"linkStyle {','.join(map(str, indices))} {style}"
                for style, indices in self.by_style.items()]


def _class_defs(kinds) -> list[str]:
    return [f"classDef k_{k} fill:{KINDS[k].fill},stroke:{KINDS[k].stroke},color:{KINDS[k].text}"
            for k in kinds]


def render(d: Diagram, legend: bool = False) -> str:
    """The diagram as a Mermaid flowchart; `RenderError` beyond Mermaid's limits."""
    ids, links = _Ids(), _Links()
    body: list[str] = []
    styles: list[str] = []
    for node in d.nodes:
        if node.group is None:
            body.append("  " + _node(ids, node))
        styles += _style(ids, node, d.overlay)
    for group, title in GROUPS.items():
        members = [n for n in d.nodes if n.group == group]
        if members:
            body.append(f'  subgraph g_{group}["{escape(title)}"]')
            body += ["    " + _node(ids, n) for n in members]
            body.append("  end")
    edges = ["  " + links.add(ids(e.tail), ids(e.head), e) for e in d.edges]
    kinds = list(d.kinds)
    legend_lines: list[str] = []
    if legend:
        legend_lines, legend_styles = _legend(d, links)
        styles += legend_styles
    classes = {}
    for node in d.nodes:
        classes.setdefault(node.kind, []).append(ids(node.id))
    header = ["---", f"title: {_yaml(d.title)}", "config:", "  flowchart:",
              f"    wrappingWidth: {WRAPPING_WIDTH}", "---", f"flowchart {DIRECTIONS[d.direction]}"]
    text = "\n".join(
        header + body + edges + legend_lines
        + ["  " + line for line in _class_defs(kinds)]
        + [f"  class {','.join(classes[k])} k_{k}" for k in kinds]
        + ["  " + s for s in styles + links.styles]) + "\n"
    _check_limits(d, text, len(links.lines))
    return text


#: The front-matter title is SVG text that Mermaid sanitises (a tag is dropped,
#: `&` shows as `&amp;`) and decodes no entity codes: look-alikes stand in.
_TITLE = str.maketrans({"&": "＆", "<": "‹", ">": "›"})


def _yaml(text: str) -> str:
    """The title as a YAML double-quoted string."""
    text = text.translate(_TITLE)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _legend(d: Diagram, links: _Links) -> tuple[list[str], list[str]]:
    """A `Legend` subgraph: one sample per node and edge kind the diagram draws,
    unlinked, so that Mermaid lays it out as one row that does not push the
    flow down."""
    lines = ['  subgraph legend["Legend"]']
    styles: list[str] = []
    for kind in d.kinds:
        opening, closing = KINDS[kind].mermaid
        node_id = f"legend_{kind}"
        lines.append(f'    {node_id}{opening}"{escape(KINDS[kind].legend)}"{closing}')
        styles.append(f"style {node_id} fill:{KINDS[kind].fill},stroke:{KINDS[kind].stroke},"
                      f"color:{KINDS[kind].text}")
    if d.has_manual:
        lines.append(f'    legend_manual["{escape(MANUAL_LEGEND)}"]')
        styles.append(f"style legend_manual fill:#ffffff,stroke:#424242,"
                      f"stroke-dasharray:{MANUAL_DASH},stroke-width:{MANUAL_PENWIDTH:g}px")
    if d.overlay:
        lines.append(f'    legend_volume["{escape(VOLUME_LEGEND)}"]')
        styles.append(f"style legend_volume fill:{blend('#ffffff', HEAT, 0.6)},stroke:#424242")
    for kind in d.edge_kinds:
        a, b = f"legend_{kind}_from", f"legend_{kind}_to"
        lines += [f'    {a}((" "))', f'    {b}((" "))']
        lines.append("    " + links.add(a, b, Edge(a, b, kind, (EDGES[kind].legend,))))
        styles += [f"style {x} fill:#ffffff,stroke:{EDGES[kind].color}" for x in (a, b)]
    lines.append("  end")
    return lines, styles


def _check_limits(d: Diagram, text: str, edges: int) -> None:
    if len(text) > MAX_TEXT:
        raise RenderError(f"{d.name}: the Mermaid text has {len(text):,} characters, over "
                          f"Mermaid's maxTextSize of {MAX_TEXT:,}; draw it with -f svg instead")
    if edges > MAX_EDGES:
        raise RenderError(f"{d.name}: the Mermaid flowchart has {edges} edges, over Mermaid's "
                          f"maxEdges of {MAX_EDGES}; draw it with -f svg instead")
