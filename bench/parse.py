"""Parse throughput (DESIGN §10): flowlang's parse to AST against Lark's bare parse.

Generates a project of at least 20,000 lines (bench/generate.py), then times, file
by file, (a) Lark alone with the same grammar and no transformer, and (b)
`flowlang.syntax.parse_text` (the tokens, the parse and the AST with spans, comments
and literal values). Runs alternate between (a) and (b) so that load elsewhere on
the machine hits both; each figure is the best of the runs.

    python bench/parse.py [--lines 20000] [--seed 1] [--runs 9] [--profile [--sort tottime]] [--json]

Targets: (b) at least 25,000 lines/s, and (b) at most 1.5x the time of (a).
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate  # noqa: E402

import lark  # noqa: E402

from flowlang.syntax import parse_text  # noqa: E402
from flowlang.syntax.parser import bare_lark  # noqa: E402

TARGET_LINES_PER_S = 25_000
TARGET_RATIO = 1.5
#: Stop adding runs once this many seconds have passed (at least one run each).
BUDGET_S = 40.0


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {"nproc": usable, "cpus": os.cpu_count(), "cpu": model, "load": load,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "lark": lark.__version__, "platform": platform.platform()}


def timed(run) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=20_000, help="size of the generated project")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=9, help="runs of each parser; the best counts")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one run of parse_text and print the top functions")
    ap.add_argument("--top", type=int, default=30, help="functions to show with --profile")
    ap.add_argument("--sort", choices=["cumulative", "tottime", "ncalls"], default="cumulative",
                    help="order of the --profile table (default: cumulative)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)

    files = generate(args.lines, args.seed)
    lines = sum(text.count("\n") for text in files.values())
    texts = list(files.items())

    bare = bare_lark()
    bad = [(p, d) for p, t in texts for d in parse_text(t, p).diagnostics]  # also warms caches
    if bad:
        path, d = bad[0]
        print(f"generated project has {len(bad)} syntax diagnostics, first: {path}:{d.line}: "
              f"{d.message}", file=sys.stderr)
        return 1
    for _, text in texts[:2]:
        bare.parse(text)

    def run_bare():
        for _, text in texts:
            bare.parse(text)

    def run_flowlang():
        for path, text in texts:
            parse_text(text, path)

    best_bare = best_flowlang = float("inf")
    started = time.perf_counter()
    runs = 0
    while runs < args.runs and (runs == 0 or time.perf_counter() - started < BUDGET_S):
        best_bare = min(best_bare, timed(run_bare))
        best_flowlang = min(best_flowlang, timed(run_flowlang))
        runs += 1

    bare_rate = lines / best_bare
    flowlang_rate = lines / best_flowlang
    ratio = best_flowlang / best_bare
    rate_ok = flowlang_rate >= TARGET_LINES_PER_S
    ratio_ok = ratio <= TARGET_RATIO
    info = machine()

    if args.json:
        print(json.dumps({"files": len(files), "lines": lines, "runs": runs,
                          "bare_s": best_bare, "flowlang_s": best_flowlang,
                          "bare_lines_per_s": round(bare_rate), "flowlang_lines_per_s": round(flowlang_rate),
                          "ratio": round(ratio, 3), "target_lines_per_s": TARGET_LINES_PER_S,
                          "target_ratio": TARGET_RATIO, "rate_met": rate_ok, "ratio_met": ratio_ok,
                          "machine": info}))
    else:
        print(f"machine: {info['cpu']}; nproc {info['nproc']} (of {info['cpus']}); "
              f"load {info['load']}")
        print(f"python:  {info['python']}; lark {info['lark']}; {info['platform']}")
        print(f"project: {len(files)} files, {lines} lines (seed {args.seed}); best of {runs} runs")
        print(f"(a) bare Lark parse      {best_bare * 1000:8.1f} ms  {bare_rate:10,.0f} lines/s")
        print(f"(b) flowlang parse_text  {best_flowlang * 1000:8.1f} ms  {flowlang_rate:10,.0f} lines/s")
        print(f"ratio b/a                {ratio:8.2f}")
        print(f"target (b) >= {TARGET_LINES_PER_S:,} lines/s: {'met' if rate_ok else 'NOT met'}")
        print(f"target b/a <= {TARGET_RATIO}:            {'met' if ratio_ok else 'NOT met'}")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_flowlang()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
        print(f"\nprofile of one run of (b), top {args.top} by {args.sort} time "
              "(profiling slows everything; compare the shares, not the times):", file=sys.stderr)
        print(out.getvalue().split("\n", 4)[-1].rstrip(), file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
