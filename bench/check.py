"""Check throughput (DESIGN §10): parse + full check against parse alone, on the
same generated project as bench/parse.py.

(a) parse only: `parse_text` for every file of the project;
(b) the whole check: loading the project from memory, parsing, every rule.
Runs alternate between (a) and (b); each figure is the best of the runs.

    python bench/check.py [--lines 20000] [--seed 1] [--runs 7] [--profile] [--json]

Targets: (b) at least 12,000 lines/s end to end, and (b) at most 2.0x the time of (a).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate  # noqa: E402
from parse import machine, timed  # noqa: E402

from flowlang.check import check_project  # noqa: E402
from flowlang.gcpause import fewer_collections  # noqa: E402
from flowlang.project import project_from_texts  # noqa: E402
from flowlang.syntax import parse_text  # noqa: E402

TARGET_LINES_PER_S = 12_000
TARGET_RATIO = 2.0
BUDGET_S = 60.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="profile the whole check")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    files = generate(args.lines, args.seed)
    lines = sum(text.count("\n") + 1 for text in files.values())

    def parse_only():
        # under the same collector settings as the check, so the ratio compares work
        with fewer_collections():
            for path, text in files.items():
                parse_text(text, path)

    def whole_check():
        diagnostics = check_project(project_from_texts(files))
        if any(d.is_error for d in diagnostics):
            raise SystemExit(f"the generated project has errors: {diagnostics[0]}")

    whole_check()  # warm up: grammar, stdlib, caches
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        whole_check()
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
        return 0
    best_a = best_b = float("inf")
    started = time.perf_counter()
    for run in range(args.runs):
        best_a = min(best_a, timed(parse_only))
        best_b = min(best_b, timed(whole_check))
        if run and time.perf_counter() - started > BUDGET_S:
            break
    result = {
        "lines": lines, "files": len(files),
        "parse_lines_per_s": round(lines / best_a), "check_lines_per_s": round(lines / best_b),
        "ratio": round(best_b / best_a, 2),
        "targets": {"check_lines_per_s": TARGET_LINES_PER_S, "ratio": TARGET_RATIO},
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = result["machine"]
    print(f"project: {len(files)} files, {lines} lines (bench/generate.py, seed {args.seed})")
    print(f"machine: {m['cpu']}, {m['nproc']} cores, {m['python']}, load {m['load']}")
    print(f"(a) parse only        {best_a * 1000:8.0f} ms  {result['parse_lines_per_s']:>8,} lines/s")
    print(f"(b) parse + check     {best_b * 1000:8.0f} ms  {result['check_lines_per_s']:>8,} lines/s"
          f"   target >= {TARGET_LINES_PER_S:,}: {'met' if lines / best_b >= TARGET_LINES_PER_S else 'MISSED'}")
    print(f"ratio b/a             {result['ratio']:8.2f}"
          f"   target <= {TARGET_RATIO}: {'met' if result['ratio'] <= TARGET_RATIO else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
