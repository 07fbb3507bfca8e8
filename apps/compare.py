"""Compare evaluations side by side: per-task tables with deltas against a baseline, and one chart.

    python apps/compare.py runs/smes/eval_test runs/mmoe/eval_test --baseline mmoe --out runs/compare
    python apps/compare.py smes=runs/a/eval_test/metrics.json mmoe=runs/b/eval_test --metric gauc --metric auc

A run is an evaluation folder written by apps/evaluate.py or its metrics.json, optionally named NAME=PATH (a
folder <run>/eval_<split> is otherwise named after <run>). Prints the tables; with --out also writes
OUT/compare.md, OUT/compare.json and OUT/compare.png (the first comparable metric). Runs evaluated on another
split, at another checkpoint step, on other data or with other tasks are compared anyway, under a warning that
names the difference. Exit status 2 on bad input, or when no metric can be compared at all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smes_rec.evaluation.compare import (
    COMPARABLE,
    compare_runs,
    comparison_chart,
    comparison_markdown,
    load_run,
    run_differences,
)
from smes_rec.utils.files import write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="[NAME=]PATH", help="evaluation folders or metrics.json files")
    parser.add_argument("--baseline", default=None, help="name of the baseline run (default: the first)")
    parser.add_argument("--metric", action="append", choices=COMPARABLE, default=None,
                        help="metric to compare (repeatable; default: gauc and auc)")
    parser.add_argument("--out", default=None, help="folder for compare.md, compare.json and compare.png")
    args = parser.parse_args(argv)
    metrics = args.metric or ["gauc", "auc"]
    try:
        runs = [load_run(spec) for spec in args.runs]
        comparisons = [compare_runs(runs, m, args.baseline) for m in metrics]
    except (FileNotFoundError, ValueError) as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    comparable = [c for c in comparisons if c.common_tasks]
    text = "\n\n".join(comparison_markdown(c, runs) for c in comparisons)
    differences = run_differences(runs)
    if differences:
        text = "**Warning: these runs are not directly comparable**:\n\n" + "\n".join(
            f"- {d}" for d in differences) + "\n\n" + text
    print(text)
    if not comparable:
        print(f"compare.py: error: nothing to compare: no task has {' or '.join(metrics)} defined in every run",
              file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(f"# Comparison\n\n{text}\n\n![{comparable[0].metric}](compare.png)\n")
        payload = {"runs": {r.name: str(r.path) for r in runs}, "differences": differences,
                   "comparisons": [c.to_dict() for c in comparisons]}
        write_json(out / "compare.json", payload, allow_nan=False)
        comparison_chart(out / "compare.png", comparable[0])
        print(f"\nWrote {out / 'compare.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
