"""The subcommands that compile and run flows: `compile` and `simulate`."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from flowlang import report
from flowlang.compiler import CompileError, compile_project
from flowlang.project import ProjectError, load_project

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _compiled(paths):
    """Compile the project, or print its errors and return None."""
    from flowlang.cli import ignored_codes

    project = load_project(paths)
    try:
        return project, compile_project(project, ignored_codes())
    except CompileError as e:
        sys.stderr.write(report.render_text(e.diagnostics, project.source, sys.stderr.isatty()))
        print(f"flowlang: not compiled: {len(e.diagnostics)} error(s)", file=sys.stderr)
        return project, None


def cmd_compile(args: argparse.Namespace) -> int:
    _, compiled = _compiled(args.paths)
    if compiled is None:
        return EXIT_FINDINGS
    machines = compiled.machines
    if args.flow:
        if args.flow not in machines:
            raise ProjectError(f"no flow or pipeline `{args.flow}` in the project")
        machines = {args.flow: machines[args.flow]}
    text = json.dumps({"format": "flowlang.ir/1", "machines": list(machines.values())},
                      indent=2, ensure_ascii=False) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise ProjectError(f"cannot write {args.output}: {e.strerror or e}") from None
        print(f"wrote {len(machines)} machine(s) to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from flowlang.simulate import InputError, parse_time, read_jsonl, simulate

    _, compiled = _compiled(args.paths)
    if compiled is None:
        return EXIT_FINDINGS
    machine = compiled.machines.get(args.flow)
    timezone = machine["settings"].get("timezone", "UTC") if machine else "UTC"
    try:
        people = read_jsonl(args.participants)
        events = read_jsonl(args.events) if args.events else []
        start = parse_time(args.start, timezone, "--start") if args.start else None
        sim = simulate(compiled.machines, args.flow, people, events, start=start, until=args.until,
                       seed=args.seed, today=dt.date.today(), explain=args.explain,
                       people_file=args.participants, events_file=args.events or "events")
    except InputError as e:
        print(f"flowlang: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        sys.stdout.write(json.dumps(sim.result(), indent=2, ensure_ascii=False) + "\n")
    else:
        print_text(sim)
    if args.explain:
        print(f"\nwhy {args.explain} went where it went:", file=sys.stderr if args.format == "json" else sys.stdout)
        for line in sim.explain.get(args.explain, ["(no steps: never admitted)"]):
            print("  " + line, file=sys.stderr if args.format == "json" else sys.stdout)
    return EXIT_OK


def print_text(sim) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True,
                      width=None if sys.stdout.isatty() else 120)
    console.print(f"[bold]{sim.flow}[/bold] from {sim.local(sim.start)} to {sim.local(sim.until)}")
    # what happened to the participants first, then the actions it caused, each in
    # the order it happened
    events = [(when, 0, i, sim.local(when), who, what) for i, (when, who, what) in enumerate(sim.timeline)]
    events += [(dt.datetime.fromisoformat(a["at"]), 1, i, a["at"], a["participant"],
                f"{a['action']} ({a['step']})") for i, a in enumerate(sim.actions)]
    for _, _, _, when, who, what in sorted(events, key=lambda e: e[:3]):
        console.print(f"  {when}  {who:<12} {what}")
    result = sim.result()
    table = Table(title="participants by step and status")
    statuses = ["queued", "active", "completed", "completed_success", "dropout", "failed"]
    table.add_column("step", overflow="fold")
    for status in statuses:
        table.add_column(status, justify="right")
    for step, counts in sorted(result["counts"].items()):
        table.add_row(step, *[str(counts.get(s, "")) for s in statuses])
    console.print(table)


def register(sub) -> None:
    compile_ = sub.add_parser("compile", help="compile flows and pipelines to the JSON IR")
    compile_.add_argument("paths", nargs="+", metavar="PATH")
    compile_.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    compile_.add_argument("--flow", metavar="NAME", help="only this flow or pipeline")
    compile_.set_defaults(run=cmd_compile)

    simulate = sub.add_parser("simulate", help="run a flow on a virtual clock over people and events")
    simulate.add_argument("paths", nargs="+", metavar="PATH")
    simulate.add_argument("--flow", required=True, metavar="NAME")
    simulate.add_argument("--participants", required=True, metavar="people.jsonl")
    simulate.add_argument("--events", metavar="events.jsonl")
    simulate.add_argument("--start", metavar="DATETIME",
                          help="virtual start (default: the first Monday of this year, 09:00)")
    simulate.add_argument("--until", default="30d", metavar="SPAN|DATE",
                          help="where to stop: 30d, 12h, 2w or a date (default 30d)")
    simulate.add_argument("--seed", type=int, default=0, help="seed for random splits")
    simulate.add_argument("--format", choices=["text", "json"], default="text")
    simulate.add_argument("--explain", metavar="PARTICIPANT",
                          help="say why this participant took each step")
    simulate.set_defaults(run=cmd_simulate)
