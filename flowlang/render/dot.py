"""A `Diagram` as Graphviz DOT text (through the `graphviz` package), and as SVG
or PNG through Graphviz's `dot` program.

Labels are HTML-like (`<…>`): every piece of text is escaped here, so quotes,
`<`, `&`, `{{ }}` and non-ASCII text reach the picture as written. Goto edges do
not constrain the ranks (`constraint=false`): they curve back to their label
instead of stretching the flow.
"""
from __future__ import annotations

import shutil

import graphviz

from flowlang.render.style import (
    EDGES,
    HEAT,
    KINDS,
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

FONT = "Helvetica,Arial,sans-serif"
COUNT_COLOUR = "#bf360c"
GROUPS = {"handlers": "on events, in any stage"}

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _html(lines) -> str:
    return "<BR/>".join(lines)


def node_label(node: Node) -> str:
    parts = [_html(f"<B>{escape(t)}</B>" for t in node.title)] if node.title else []
    if node.lines:
        parts.append(f'<FONT POINT-SIZE="9">{_html(escape(t) for t in node.lines)}</FONT>')
    if node.counts:
        parts.append(f'<FONT POINT-SIZE="9" COLOR="{COUNT_COLOUR}"><B>'
                     f'{_html(escape(t) for t in node.counts)}</B></FONT>')
    return "<" + "<BR/>".join(parts) + ">"


def node_attrs(node: Node, overlay: bool) -> dict[str, str]:
    look = KINDS[node.kind]
    attrs = {"shape": look.dot_shape, "style": look.dot_style, "fillcolor": fill(node, overlay),
             "color": look.stroke, "fontcolor": look.text}
    if look.peripheries != 1:
        attrs["peripheries"] = str(look.peripheries)
    if node.manual:
        attrs["style"] += ",dashed"
        attrs["penwidth"] = str(MANUAL_PENWIDTH)
    elif overlay:
        attrs["penwidth"] = "1.5"
    return attrs


def edge_attrs(edge: Edge, sample: bool = False) -> dict[str, str]:
    look = EDGES[edge.kind]
    attrs = {"color": look.color, "fontcolor": look.color}
    if look.style != "solid":
        attrs["style"] = look.style
    if not look.constraint and not sample:
        attrs["constraint"] = "false"
    if look.dot_tailport and not sample:
        attrs["tailport"] = look.dot_tailport
    if edge.label:
        attrs["label"] = "<" + _html(escape(t) for t in edge.label) + ">"
    if edge.weight:
        attrs["penwidth"] = f"{1 + 4 * edge.weight:.2f}"
    return attrs


def render(d: Diagram, legend: bool = False) -> str:
    """The diagram as DOT source text."""
    g = graphviz.Digraph(
        d.name,
        graph_attr={"label": escape_plain(d.title), "labelloc": "t", "fontname": FONT,
                    "fontsize": "14", "rankdir": d.direction, "nodesep": "0.3",
                    "ranksep": "0.4", "bgcolor": "white"},
        node_attr={"fontname": FONT, "fontsize": "10", "margin": "0.12,0.06"},
        edge_attr={"fontname": FONT, "fontsize": "9", "arrowsize": "0.7"})
    for node in d.nodes:
        if node.group is None:
            g.node(node.id, node_label(node), **node_attrs(node, d.overlay))
    for group, title in GROUPS.items():
        members = [n for n in d.nodes if n.group == group]
        if members:
            with g.subgraph(name=f"cluster_{group}") as c:
                c.attr(label=title, style="dashed", color="#bdbdbd", fontsize="10")
                for node in members:
                    c.node(node.id, node_label(node), **node_attrs(node, d.overlay))
    for edge in d.edges:
        g.edge(edge.tail, edge.head, **edge_attrs(edge))
    if legend:
        _legend(g, d)
    return g.source


def escape_plain(text: str) -> str:
    """Text for a plain (non-HTML) DOT string: backslashes are literal."""
    return graphviz.escape(text.replace("\\", "\\\\"))


def _legend(g: graphviz.Digraph, d: Diagram) -> None:
    """A cluster with one sample per kind of node and edge the diagram draws."""
    with g.subgraph(name="cluster_legend") as c:
        c.attr(label="Legend", style="rounded", color="#9e9e9e", fontsize="11")
        chain = []
        for kind in d.kinds:
            look = KINDS[kind]
            sample = Node(f"#legend-{kind}", kind, (look.legend,))
            c.node(sample.id, node_label(sample), **node_attrs(sample, False))
            chain.append(sample.id)
        if d.has_manual:
            c.node("#legend-manual", node_label(Node("", "action", (MANUAL_LEGEND,))),
                   shape="box", style="filled,dashed", fillcolor="#ffffff", color="#424242",
                   penwidth=str(MANUAL_PENWIDTH))
            chain.append("#legend-manual")
        if d.overlay:
            c.node("#legend-volume", node_label(Node("", "action", (VOLUME_LEGEND,))),
                   shape="box", style="filled", fillcolor=blend("#ffffff", HEAT, 0.6),
                   color="#424242")
            chain.append("#legend-volume")
        for a, b in zip(chain, chain[1:]):
            c.edge(a, b, style="invis")
        for kind in d.edge_kinds:
            # a sample edge, drawn across one rank, under the node samples
            a, b = f"#legend-{kind}-from", f"#legend-{kind}-to"
            with c.subgraph() as row:
                row.attr(rank="same")
                row.node(a, "", shape="point", width="0.06", color=EDGES[kind].color)
                row.node(b, node_label(Node("", "action", (), (EDGES[kind].legend,))),
                         shape="plaintext", fontcolor=EDGES[kind].color)
            c.edge(a, b, **edge_attrs(Edge(a, b, kind), sample=True))
            if chain:
                c.edge(chain[-1], a, style="invis")
            chain.append(a)


def pipe(source: str, fmt: str) -> bytes:
    if shutil.which("dot") is None:
        raise RenderError(f"{fmt.upper()} needs the `dot` program from Graphviz, which is not "
                          "on PATH (install the `graphviz` package: apt-get install graphviz, "
                          "brew install graphviz); -f dot and -f mermaid work without it")
    try:
        return graphviz.pipe("dot", fmt, source.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise RenderError(f"{fmt.upper()} needs the `dot` program from Graphviz") from None
    except graphviz.CalledProcessError as e:
        message = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise RenderError(f"dot failed: {message[0] if message else e}") from None


def render_svg(d: Diagram, legend: bool = False) -> str:
    return pipe(render(d, legend), "svg").decode("utf-8")


def render_png(d: Diagram, legend: bool = False) -> bytes:
    return pipe(render(d, legend), "png")
