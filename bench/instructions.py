"""Instructions per participant of the engine benchmark, counted by callgrind.

Wall-clock runs on a shared 2-core machine vary by 15% between runs of the same
code; instruction counts do not. This runs `bench/engine.py`'s own `timed_run`
(flowlang, the reference flow) under `valgrind --tool=callgrind` at two sizes and
prints the difference over the difference in participants: the cost of one more
participant, with imports, compilation and first-use caches taken out. Use it
to judge a change to the engine's hot paths (lower is better); the speed itself
is `bench/engine.py`'s.

    python bench/instructions.py [--sizes 20000,40000] [--tree DIR]

`--tree`: measure the flowlang code of another checkout (its `flowlang/` and
`bench/`; like this one, it must sit beside `shared/`, where the reference flow
is) with this Python, to compare two versions. Needs valgrind; a run of 40,000
participants takes about a minute.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: what runs under callgrind: one timed run of N participants from the tree given
INNER = """
import sys
tree, n = sys.argv[1], int(sys.argv[2])
sys.path[:0] = [tree + "/bench", tree]
import engine
ir = engine.compile_project(engine.load_project([engine.DEFAULT_FLOW])).machines[engine.FLOW]
engine.timed_run("flowlang", ir, n, check=False)
"""


def instructions(tree: Path, n: int) -> int:
    """Instructions callgrind counts for the whole process at N participants."""
    # a fixed hash seed: with a random one, string hashes (and so dict probes)
    # differ from run to run, and so does the count, by up to 1%
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", INNER, str(tree), str(n)],
        capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run at N={n:,} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,40000", help="two sizes, smaller first")
    ap.add_argument("--tree", default=str(HERE.parent), help="the checkout to measure")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    small, large = (int(s) for s in args.sizes.split(","))
    if not 0 <= small < large:
        ap.error("--sizes: two sizes, the smaller first")
    tree = Path(args.tree).resolve()
    at_small = instructions(tree, small)
    at_large = instructions(tree, large)
    per = (at_large - at_small) / (large - small)
    print(f"tree: {tree}")
    print(f"instructions: {at_small:,} at N={small:,}, {at_large:,} at N={large:,}")
    print(f"per participant: {per:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
