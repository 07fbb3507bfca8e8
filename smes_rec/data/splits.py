"""Splits: which rows are train, valid or test (``SplitConfig``), as pure functions of row numbers or time cells.

Legend: N rows. A split index is 0 for train, 1 for valid and 2 for test (the order of ``config.SPLITS``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from smes_rec.data.cells import as_array, is_text, parse_numbers
from smes_rec.data.config import SplitConfig
from smes_rec.data.files import RowContext
from smes_rec.data.hashing import fmix64, hash_text
from smes_rec.data.schema import DataError
from smes_rec.utils.config import ConfigError

__all__ = ["file_stem", "random_split", "time_split", "time_split_from_stats"]

_FORMAT_SUFFIXES = (".gz", ".csv", ".tsv", ".txt", ".parquet", ".pq")


def file_stem(name: str) -> str:
    """A data file's name without ``.gz`` and its format suffix."""
    for suffix in _FORMAT_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def random_split(name: str, row_start: int, num_rows: int, split: SplitConfig) -> np.ndarray:
    """The split of rows ``[row_start, row_start + num_rows)`` of a file under a random split.

    A seeded hash of (file name without format suffixes, row): stable across processes, machines, file lists, and a
    CSV file vs the same rows as Parquet.

    Args:
        name: The file's name relative to the data root.
        row_start: The first 0-based data row.
        num_rows: N.
        split: The split (``fractions``, ``seed``).

    Returns:
        ``[N]`` int8 split index.
    """
    salt = fmix64(np.array([split.seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    base = fmix64(hash_text(pa.array([file_stem(name)]))[:1] ^ salt)[0]
    rows_N = np.arange(row_start, row_start + num_rows, dtype=np.uint64)
    u01_N = (fmix64(rows_N + base) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    bounds = np.cumsum(split.fractions)[:2]
    return np.searchsorted(bounds, u01_N, side="right").astype(np.int8)


def time_split(values: pa.Array | pa.ChunkedArray, ctx: RowContext, column: str, split: SplitConfig,
               null_values: Sequence[str]) -> np.ndarray:
    """The split of rows by their time cells: ``>= valid_start`` valid, ``>= test_start`` test, else train.

    Args:
        values: ``[N]`` time cells (numbers, text or a date/timestamp type).
        ctx: Where the rows come from (for errors).
        column: The time column (for errors).
        split: The split (``valid_start``, ``test_start``).
        null_values: Text cells that mean "missing".

    Returns:
        ``[N]`` int8 split index.

    Raises:
        DataError: For a missing time value, naming file, row and column.
        ConfigError: When the bounds cannot be compared with the column's type.
    """
    vs, ts = split.valid_start, split.test_start
    values = as_array(values)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if isinstance(vs, float):
        x = parse_numbers(values, ctx, column, null_values=null_values)
        missing = np.isnan(x)
        out = (x >= vs).astype(np.int8)
        if ts is not None:
            out += (x >= ts).astype(np.int8)
    else:
        t = values.type
        if is_text(t):
            values = pc.utf8_trim_whitespace(values)
            lo, hi = pa.scalar(vs, t), pa.scalar(ts, t) if ts is not None else None
        elif pa.types.is_temporal(t):
            try:
                lo = pa.scalar(vs).cast(t)
                hi = pa.scalar(ts).cast(t) if ts is not None else None
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise ConfigError(f"split.valid_start/test_start: cannot compare {vs!r} with column {column!r} of "
                                  f"type {t}: {e}") from None
        else:
            raise ConfigError(f"split.valid_start: {vs!r} is text but column {column!r} holds {t}; give a number")
        missing = np.asarray(pc.is_null(values))
        out = np.asarray(pc.fill_null(pc.greater_equal(values, lo), False)).astype(np.int8)
        if hi is not None:
            out += np.asarray(pc.fill_null(pc.greater_equal(values, hi), False)).astype(np.int8)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{ctx.where(i, column)}: missing time value (needed by the time split)")
    return out


def time_split_from_stats(meta: pq.FileMetaData, row_group: int, column_index: int, num_rows: int,
                          split: SplitConfig) -> np.ndarray | None:
    """Rows per split of a Parquet row group from its min/max statistics, when it falls in one split.

    Args:
        meta: The file's metadata.
        row_group: The row group.
        column_index: The time column's position in the file.
        num_rows: The row group's rows.
        split: A time split with numeric bounds.

    Returns:
        ``[3]`` rows of train, valid and test; None when the statistics do not decide it (read the column then).
    """
    vs, ts = split.valid_start, split.test_start
    if not isinstance(vs, float):
        return None
    stats = meta.row_group(row_group).column(column_index).statistics
    if stats is None or not stats.has_min_max or stats.null_count:
        return None
    lo, hi = stats.min, stats.max
    if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)) or not isinstance(ts, (float, type(None))):
        return None
    out = np.zeros(3, dtype=np.int64)
    if hi < vs:
        out[0] = num_rows
    elif lo >= vs and (ts is None or hi < ts):
        out[1] = num_rows
    elif ts is not None and lo >= ts:
        out[2] = num_rows
    else:
        return None
    return out
