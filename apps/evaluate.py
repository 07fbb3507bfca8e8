"""Evaluate a smes-rec checkpoint offline: per-task AUC / GAUC / log loss / NE / calibration and expert routing.

Writes OUT/metrics.json, OUT/report.md with PNG charts (GAUC per task, task x expert selection heatmap, histogram
of experts executed per instance with the SMES bound, expert load) and, with --predictions, OUT/predictions.parquet.

    python apps/evaluate.py --checkpoint runs/tiny/checkpoints --split valid
    python apps/evaluate.py --checkpoint runs/tiny/checkpoints/step_000000040 --out runs/tiny/eval_step40 --predictions
    torchrun --nproc_per_node 2 apps/evaluate.py --checkpoint runs/tiny   # sharded, same numbers

The data config comes from the checkpoint; change it with --set data.KEY=VALUE (e.g. data.batch_size=1024,
data.data_root=/mnt/kuairand). Relative paths in it resolve against the current directory (the repository root).
Exit status: 0 on success, 2 on a usage, config or data error or a damaged checkpoint (the message says what
differs, or names the bad file).
"""

from __future__ import annotations

import argparse
import os
import sys

from smes_rec.utils.logging import quiet_third_party

quiet_third_party()  # before torchrec is imported

from smes_rec.data.schema import DataError
from smes_rec.evaluation.app import EvalConfig, evaluate_checkpoint
from smes_rec.evaluation.report import metrics_table
from smes_rec.utils.cli import closing_process_group, report_error
from smes_rec.utils.config import ConfigError
from smes_rec.utils.memory import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint folder (step_XXXXXXXXX), or a checkpoints/ or output_dir folder (latest)")
    parser.add_argument("--split", choices=["valid", "test"], default="test", help="split to evaluate (test)")
    parser.add_argument("--out", default=None, help="output folder (default: <output_dir>/eval_<split>)")
    parser.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                        help="override the checkpoint's data config (repeatable); also device=, sharding=")
    parser.add_argument("--max-batches", type=int, default=None, help="evaluate only the first N batches per process")
    parser.add_argument("--predictions", action="store_true", help="also write OUT/predictions.parquet")
    parser.add_argument("--mode", choices=["auto", "unsharded", "sharded"], default="auto",
                        help="auto: sharded under torchrun with several processes, else unsharded on the CPU")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        with closing_process_group():
            cfg = EvalConfig(checkpoint=args.checkpoint, split=args.split, out=args.out, overrides=tuple(args.set),
                             max_batches=args.max_batches, predictions=args.predictions, mode=args.mode,
                             progress=not args.no_progress)
            outcome = evaluate_checkpoint(cfg)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        return report_error("evaluate.py", e)
    if os.environ.get("RANK", "0") == "0":
        run, routing = outcome.summary["run"], outcome.summary["routing"]
        print(f"\n{run['arch']} step {run['step']}, {run['split']} split ({routing['num_instances']} instances):")
        print(metrics_table(outcome.result.metrics, ("auc", "gauc", "gauc_uniform", "log_loss", "ne")))
        print(f"experts per instance: mean {routing['mean_unique_experts']:.2f}, max {routing['max_unique_experts']}"
              f" ({routing['bound']['note']})")
        print(f"Report: {outcome.out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # a process-wide setting: the process, not main(), owns it (tests call main in-process)
    sys.exit(main())
