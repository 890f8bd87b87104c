"""What the garbage collector does during the engine benchmark, counted.

`bench/instructions.py` measures at 20,000–40,000 participants, where the
collector (run every 200,000 new objects under flowlang's batch setting) hardly
runs, so its counts do not see a change in what stays alive. This runs
`bench/engine.py`'s own `timed_run` at one size with a `gc.callbacks` hook and
prints, for the timed part only, how many collections of each generation ran
and how many objects they walked (the collector's work is proportional to
these). The figures are the same from run to run: they depend on what the code
allocates, not on the machine.

    python bench/collector.py [--n 1000000] [--contender flowlang|baseline] [--tree DIR]

`--tree`: measure the flowlang code of another checkout (its `flowlang/` and
`bench/`, beside `shared/`). Walking the generations at each collection is slow:
a run at 1M takes a few minutes.
"""
from __future__ import annotations

import argparse
import gc
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--contender", choices=("flowlang", "baseline"), default="flowlang")
    ap.add_argument("--tree", default=str(HERE.parent), help="the checkout to measure")
    args = ap.parse_args(argv)
    tree = Path(args.tree).resolve()
    sys.path[:0] = [str(tree / "bench"), str(tree)]
    import engine  # the tree's benchmark, with the tree's flowlang

    ir = engine.compile_project(engine.load_project([engine.DEFAULT_FLOW])).machines[engine.FLOW]
    passes: Counter = Counter()
    walked: Counter = Counter()
    with engine.fewer_collections():
        timed = gc.get_threshold()  # the setting of the timed part (set-up runs outside it)

    def count(phase: str, info: dict) -> None:
        if phase == "start" and gc.get_threshold() == timed:
            generation = info["generation"]
            passes[generation] += 1
            # a collection of generation g walks the objects of generations 0..g
            walked[generation] += sum(len(gc.get_objects(g)) for g in range(generation + 1))

    gc.callbacks.append(count)
    try:
        engine.timed_run(args.contender, ir, args.n, check=False)
    finally:
        gc.callbacks.remove(count)
    print(f"tree: {tree}; {args.contender} at N={args.n:,}; collector threshold {timed}")
    for generation in sorted(passes):
        print(f"generation {generation}: {passes[generation]:>3} collections, "
              f"{walked[generation]:>12,} objects walked")
    total = sum(walked.values())
    print(f"total: {total:,} objects walked, {total / args.n:.2f} per participant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
