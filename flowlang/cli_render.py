"""`flowlang render`: draw a flow or pipeline as DOT, SVG, PNG or Mermaid.

Text formats (dot, mermaid, svg) go to stdout unless `-o FILE`; PNG is bytes
and needs `-o`. SVG and PNG need Graphviz's `dot` program; without it the
command says so in one line and exits 2, like every other usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

#: The format an output file's suffix implies when `-f` is not given.
SUFFIXES = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png",
            ".mmd": "mermaid", ".mermaid": "mermaid"}


def _usage(message: str) -> int:
    print(f"flowlang: {message}", file=sys.stderr)
    return EXIT_USAGE


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output not in (None, "-"):
        return SUFFIXES.get(Path(args.output).suffix.lower(), "dot")
    return "dot"


def _machine(machines: dict, kind: str, name: str):
    """The machine asked for, or the one-line message that names the known ones."""
    machine = machines.get(name)
    if machine is not None and machine["kind"] == kind:
        return machine, None
    known = sorted(n for n, m in machines.items() if m["kind"] == kind)
    listed = ", ".join(known) if known else "none"
    message = f"no {kind} `{name}` in the project ({kind}s: {listed})"
    if machine is not None:
        other = "pipeline" if kind == "flow" else "flow"
        message += f"; `{name}` is a {other}: use --{other} {name}"
    return None, message


def _counts(path: str):
    from flowlang.render import read_counts

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {getattr(e, 'msg', e)}") from None
    return read_counts(data)


def cmd_render(args: argparse.Namespace) -> int:
    from flowlang.cli_runtime import _compiled
    from flowlang.render import RENDERERS, RenderError, diagram, unknown_steps

    fmt = _format(args)
    if fmt not in RENDERERS:
        return _usage(f"unknown format `{fmt}` (formats: {', '.join(RENDERERS)})")
    spec = RENDERERS[fmt]
    to_stdout = args.output in (None, "-")
    if spec.binary and to_stdout:
        return _usage(f"{fmt} is binary: write it to a file with -o FILE.{fmt}")
    counts = None
    if args.counts:
        try:
            counts = _counts(args.counts)
        except (ValueError, RenderError) as e:
            return _usage(f"--counts: {e}")
    _, compiled = _compiled(args.paths)
    if compiled is None:
        return EXIT_FINDINGS
    kind, name = ("flow", args.flow) if args.flow else ("pipeline", args.pipeline)
    machine, problem = _machine(compiled.machines, kind, name)
    if problem:
        return _usage(problem)
    try:
        drawn = diagram(machine, counts)
        result = spec.render(drawn, legend=args.legend)
    except RenderError as e:
        return _usage(str(e))
    if counts is not None:
        missing = unknown_steps(drawn, counts)
        if missing:
            print(f"flowlang: warning: {len(missing)} step(s) in {args.counts} are not in "
                  f"{name}: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}",
                  file=sys.stderr)
    if to_stdout:
        sys.stdout.write(result)
        return EXIT_OK
    try:
        if isinstance(result, bytes):
            Path(args.output).write_bytes(result)
        else:
            Path(args.output).write_text(result, encoding="utf-8")
    except OSError as e:
        return _usage(f"cannot write {args.output}: {e.strerror or e}")
    print(f"wrote {kind} {name} as {fmt} to {args.output}", file=sys.stderr)
    return EXIT_OK


def register(sub) -> None:
    render = sub.add_parser(
        "render", help="draw a flow or pipeline as DOT, SVG, PNG or Mermaid",
        description="Draw one flow or pipeline. Text formats go to stdout unless -o; "
                    "SVG and PNG need Graphviz's `dot` program.")
    render.add_argument("paths", nargs="+", metavar="PATH")
    which = render.add_mutually_exclusive_group(required=True)
    which.add_argument("--flow", metavar="NAME", help="the flow to draw")
    which.add_argument("--pipeline", metavar="NAME", help="the pipeline to draw")
    from flowlang.render import RENDERERS

    render.add_argument("-f", "--format", choices=list(RENDERERS),
                        help="output format (default: from -o's suffix, else dot)")
    render.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    render.add_argument("--legend", action="store_true",
                        help="add a legend of the shapes, colours and edges used")
    render.add_argument("--counts", metavar="FILE",
                        help="overlay participants per step: the JSON of `flowlang simulate "
                             "--format json`, or {\"steps\": {step: {status: n}}}")
    render.set_defaults(run=cmd_render)
