"""Score CSV/TSV/Parquet files (labels optional) with an exported serving package or directly with a checkpoint.

    python apps/predict.py --model runs/tiny/serving --data new_rows.parquet --out preds.parquet --keep user_id
    python apps/predict.py --model runs/tiny --split test --out test_preds.parquet --keep user_id video_id
    torchrun --nproc_per_node 2 apps/predict.py --model pkg --data 'logs/*.csv' --out preds.parquet

Rows go through the frozen feature transform of the model (schema, hashing, buckets, train-split statistics), are
streamed unit by unit (bounded memory) and written to one Parquet file with the columns: file, row (0-based data row
in that file), the --keep columns, and p_<task> per task. Under torchrun each process scores its share of the input
and rank 0 assembles the parts in input order. A bad row is an error naming the file, row and column.
Exit status: 0 on success, 2 on a usage, config or data error.
"""

from __future__ import annotations

import argparse
import os
import sys

from smes_rec.utils.logging import quiet_third_party

quiet_third_party()  # before torchrec is imported

from smes_rec.data.schema import DataError
from smes_rec.serving.predict import PredictConfig, predict
from smes_rec.utils.cli import closing_process_group, report_error
from smes_rec.utils.config import ConfigError
from smes_rec.utils.memory import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a serving package, or a checkpoint / checkpoints / run folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", nargs="+", metavar="FILE_OR_GLOB", help="input files (CSV, TSV, Parquet)")
    source.add_argument("--split", choices=["valid", "test"], help="score a split of the model's own run data")
    parser.add_argument("--out", required=True, help="output Parquet file")
    parser.add_argument("--keep", nargs="+", default=[], metavar="COL", help="input columns copied to the output")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per model call (1024)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        with closing_process_group():
            cfg = PredictConfig(model=args.model, out=args.out, data=tuple(args.data or ()), split=args.split,
                                keep=tuple(args.keep), batch_size=args.batch_size, progress=not args.no_progress)
            outcome = predict(cfg)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        return report_error("predict.py", e)
    if os.environ.get("RANK", "0") == "0":
        print(f"{outcome.total_rows} rows scored -> {outcome.out}")
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # a process-wide setting: the process, not main(), owns it (tests call main in-process)
    sys.exit(main())
