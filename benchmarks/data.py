"""Data pipeline throughput: rows/s from files to ready KJT batches, CSV vs Parquet, 1 and 2 DataLoader workers.

Generates the synthetic data set (24 sparse features including a multi-valued and a bucketised one, 9 dense
features, 8 tasks, user and video side tables joined), writes its log as CSV too, and iterates the train split of
each through ``build_dataloader`` (shuffled, batch 4096). Reported: rows per second of wall time from the first
batch to the last (the steady state; worker start-up and the first block are excluded and printed separately), and
rows per CPU-second of the processes preparing batches (what one worker sustains on a core of its own, whatever
else the machine runs).

    python benchmarks/data.py                # 2M rows
    python benchmarks/data.py --rows 4000000 --workers 1 2
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import gc
import platform
import resource
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from smes_rec.data.config import DataConfig, SyntheticConfig
from smes_rec.data.loader import build_dataloader
from smes_rec.data.schema import with_data_root
from smes_rec.data.source import DataSource
from smes_rec.data.synthetic import generate, synthetic_schema


def _run(source: DataSource, cfg: DataConfig) -> tuple[float, float, float, int]:
    """Returns (seconds to the first batch, steady-state rows/s, rows per worker-CPU-second, rows).

    The wall-clock rate depends on what else runs on the machine; the rate per CPU-second of the processes that
    prepare the batches (the workers, or the main process with 0 workers) is what one worker sustains on a core
    of its own.
    """
    self0, children0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    loader = build_dataloader(cfg, "train", source=source)
    first = None
    rows = 0
    for batch in loader:
        if first is None:
            first = time.perf_counter()
        else:
            rows += batch.batch_size
    end = time.perf_counter()
    gc.collect()  # the finished DataLoader iterator joins its workers, whose CPU time then counts as children's
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if cfg.num_workers else resource.RUSAGE_SELF)
    before = children0 if cfg.num_workers else self0
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    total = rows + cfg.batch_size
    return first - start, rows / (end - first), total / cpu, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--formats", nargs="+", default=["parquet", "csv"], choices=["parquet", "csv"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        syn = SyntheticConfig(num_rows=args.rows, rows_per_file=max(args.rows // 4, 1))
        generate(root, syn)
        print(f"generated {args.rows:,} synthetic rows in {time.perf_counter() - t:.1f} s")
        schema = synthetic_schema(syn)
        print(f"schema: {len(schema.sparse)} sparse features ({len(schema.tables())} tables), {schema.num_dense} "
              f"dense, {schema.num_tasks} tasks, {len(schema.joins)} side tables joined per row")
        if "csv" in args.formats:
            for path in sorted((root / "log").glob("*.parquet")):
                pacsv.write_csv(pq.read_table(path), path.with_suffix(".csv"))
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, 1 thread per worker, load average "
              f"{os.getloadavg()[0]:.1f} before the runs\n")
        print(f"{'format':<9}{'workers':>8}{'rows':>12}{'start s':>9}{'rows/s':>12}{'rows/s/worker':>15}"
              f"{'rows/cpu-s/worker':>19}")
        for fmt in args.formats:
            files = ("log/*.parquet",) if fmt == "parquet" else ("log/*.csv",)
            s = dataclasses.replace(schema, format=None, files=files)
            source = DataSource.from_schema(with_data_root(s, root, root), cache_dir=root / "cache")
            source.fitted_transform()
            for workers in args.workers:
                cfg = DataConfig(batch_size=args.batch_size, num_workers=workers, shuffle=True)
                startup, rate, per_cpu, rows = _run(source, cfg)
                print(f"{fmt:<9}{workers:>8}{rows:>12,}{startup:>9.2f}{rate:>12,.0f}{rate / max(workers, 1):>15,.0f}"
                      f"{per_cpu:>19,.0f}", flush=True)


if __name__ == "__main__":
    main()
