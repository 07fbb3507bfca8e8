"""Compare evaluations side by side: per-task tables with deltas against a baseline, and one chart.

    python apps/compare.py runs/smes/eval_test runs/mmoe/eval_test --baseline mmoe --out runs/compare
    python apps/compare.py smes=runs/a/eval_test/metrics.json mmoe=runs/b/eval_test --metric gauc --metric auc

A run is an evaluation folder written by apps/evaluate.py or its metrics.json, optionally named NAME=PATH (a
folder <run>/eval_<split> is otherwise named after <run>). Prints the tables; with --out also writes
OUT/compare.md, OUT/compare.json and OUT/compare.png (the first metric). Exit status 2 on bad input.
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
    text = "\n\n".join(comparison_markdown(c, runs) for c in comparisons)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(f"# Comparison\n\n{text}\n\n![{metrics[0]}](compare.png)\n")
        payload = {"runs": {r.name: str(r.path) for r in runs}, "comparisons": [c.to_dict() for c in comparisons]}
        write_json(out / "compare.json", payload, allow_nan=False)
        comparison_chart(out / "compare.png", comparisons[0])
        print(f"\nWrote {out / 'compare.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
