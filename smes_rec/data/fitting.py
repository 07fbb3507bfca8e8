"""Fitting: the one streaming pass over the train split that fits the transform, and its on-disk cache.

For every ``standardize`` feature without ``mean``/``std`` in the schema, the mean and (population) standard
deviation of the filled raw values over the *train* split, and for every ``ids: vocab`` table its vocabulary, are
fitted in one streaming pass, in file and unit order (dense statistics merged with Chan's parallel formula in
float64). The pass is deterministic, so every rank gets bit-identical numbers; the result is cached as JSON under
``cache_dir/stats`` keyed by the schema's fitted features, the files (name, size, mtime), the side tables and the
split, and one process per machine computes it while the others wait for the file (``cache.locked``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from smes_rec.data.cache import cache_key, locked
from smes_rec.data.config import SplitConfig
from smes_rec.data.features import FeatureProcessor
from smes_rec.data.files import FileInfo, RowContext
from smes_rec.data.fitted import FittedTransform
from smes_rec.data.joins import ColumnPlan
from smes_rec.data.schema import DataError, DatasetSchema, DenseFeature
from smes_rec.data.vocab import VocabCounter

__all__ = ["fit_columns", "fit_transform", "load_or_fit", "stats_path"]


def fit_columns(schema: DatasetSchema) -> set[str]:
    """The log columns the fitting pass reads: fitted features' columns and join keys."""
    return ({f.column for f in schema.dense_to_fit} | {f.column for fs in schema.vocab_tables.values() for f in fs}
            | {j.key for j in schema.joins})


def fit_transform(schema: DatasetSchema, plan: ColumnPlan, chunks: Iterable[tuple[pa.Table, RowContext]],
                  split: str, files: Sequence[FileInfo]) -> FittedTransform:
    """Fits the transform on chunks of one split, in order (no cache).

    Dense statistics: the mean and population standard deviation of the filled raw values, merged chunk by chunk
    in float64 (Chan et al.); a constant column gets ``std = 1``. Vocabularies: see ``vocab.py``.

    Args:
        schema: The schema.
        plan: Where each column comes from.
        chunks: ``(log table, where its rows come from)`` of the split's rows, in file and unit order.
        split: The split's name (for errors).
        files: The data set's files (for errors).

    Returns:
        The fitted transform.

    Raises:
        DataError: When the split has no rows to fit on, or a value makes the statistics non-finite.
    """
    todo = schema.dense_to_fit
    vocab_tables = schema.vocab_tables
    processor = FeatureProcessor(schema, plan, None)  # fits nothing, processes nothing fitted
    acc = {f.name: (0, 0.0, 0.0) for f in todo}  # count, mean, M2
    counters = {t: VocabCounter() for t in vocab_tables}
    rows = 0
    for table, ctx in chunks:
        rows += table.num_rows
        for f in todo:
            x = processor.raw_dense_column(f, table, ctx)
            with np.errstate(over="ignore", invalid="ignore"):
                n_b, mean_b = len(x), float(x.mean())
                m2_b = float(((x - mean_b) ** 2).sum())
            if not (np.isfinite(mean_b) and np.isfinite(m2_b)):
                _blame_dense(f, x, ctx)
            n_a, mean_a, m2_a = acc[f.name]
            n = n_a + n_b
            delta = mean_b - mean_a
            acc[f.name] = (n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n)
        for t, fs in vocab_tables.items():
            for sf in fs:
                counters[t].add(processor.id_cells(sf, processor.cells(sf.column, table))[0])
    if rows == 0 and (todo or vocab_tables):
        what = ", ".join([*(f"dense feature {f.name!r}" for f in todo), *(f"vocabulary {t!r}" for t in counters)])
        raise DataError(f"the {split} split has no rows to fit {what} on ({len(files)} file(s): "
                        f"{', '.join(f.path for f in files[:3])}{' ...' if len(files) > 3 else ''})")
    dense = {}
    for f in todo:
        n, mean, m2 = acc[f.name]
        std = float(np.sqrt(m2 / n))
        dense[f.name] = (mean, std if std > 0 else 1.0)
    vocabs = {t: counters[t].vocabulary(fs[0].min_count or 1, fs[0].max_size) for t, fs in vocab_tables.items()}
    return FittedTransform(dense, vocabs, rows)


def _blame_dense(f: DenseFeature, x: np.ndarray, ctx: RowContext) -> None:
    """Raises for the row whose value makes a ``standardize`` feature's statistics non-finite."""
    bad = ~np.isfinite(x)
    i = int(np.flatnonzero(bad)[0]) if bad.any() else int(np.argmax(np.abs(x)))
    why = "is not finite" if bad.any() else "is so large that the standardisation statistics overflow"
    raise DataError(f"{ctx.where(i, f.column)}: value {float(x[i])!r} {why} (dense feature {f.name!r}, transform "
                    "'standardize')")


def stats_path(cache_dir: Path, schema: DatasetSchema, plan: ColumnPlan, files: Sequence[FileInfo],
               split: SplitConfig) -> Path:
    """Where the transform fitted on these files is cached: keyed by everything that changes it."""
    joins = []
    for j, path in zip(schema.joins, plan.join_paths, strict=True):
        st = os.stat(path)
        joins.append((asdict(j), st.st_size, st.st_mtime_ns))
    key = cache_key({
        "version": 2,
        "dense": [(f.name, f.column, f.fill) for f in schema.dense_to_fit],
        "vocab": [(t, [asdict(f) for f in fs]) for t, fs in schema.vocab_tables.items()],
        "files": [(f.name, f.size, f.mtime_ns) for f in files],
        "joins": joins,
        "split": asdict(split),
        "null_values": schema.null_values,
        "strip": schema.strip,
    })
    return cache_dir / "stats" / f"{key}.json"


def load_or_fit(path: Path, fit: Callable[[], FittedTransform]) -> FittedTransform:
    """The transform cached at ``path``, fitted with ``fit()`` and written there first when absent.

    One process fits while the others wait on the lock; the file is written under a temporary name and renamed, so
    a reader never sees half of it.
    """
    if not path.exists():
        with locked(path):
            if not path.exists():
                fitted = fit()
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(json.dumps(fitted.to_dict(), indent=1))
                os.replace(tmp, path)
    return FittedTransform.from_dict(json.loads(path.read_text()), source=str(path))
