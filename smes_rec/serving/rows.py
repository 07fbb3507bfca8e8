"""Raw rows of input files -> request tensors, through the frozen transform. Labels are optional.

Legend: B rows, D dense features, F sparse features, N ids.

Scoring reuses the data pipeline's readers and feature processor, so a bad cell gets the same error as in training
(file, row or line, and column). What scoring does not need is not read: label and weight columns (a file without
them is scored all the same) and the group and time columns.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import torch

from smes_rec.data.cells import read_unit
from smes_rec.data.features import Columns, FeatureProcessor
from smes_rec.data.files import FileCache, FileInfo, RowContext, Unit, infer_format, scan_file
from smes_rec.data.joins import ColumnPlan
from smes_rec.data.schema import DataError, DatasetSchema, Task
from smes_rec.serving.transform import FrozenTransform

__all__ = ["InputFile", "RowChunk", "RowReader", "expand_inputs", "request_tensors"]


class InputFile(NamedTuple):
    """A scanned input file and its units (row groups, or runs of CSV lines)."""

    info: FileInfo
    units: tuple[Unit, ...]


class RowChunk(NamedTuple):
    """Processed rows of one unit.

    Attributes:
        file: The file's path as given.
        rows: ``[N]`` 0-based data row of each row in its file.
        columns: The model inputs (labels unused).
        keep: The ``--keep`` columns as read.
    """

    file: str
    rows: np.ndarray
    columns: Columns
    keep: pa.Table


def expand_inputs(patterns: Sequence[str], schema: DatasetSchema, unit_rows: int = 65536,
                  file_cache: FileCache | None = None) -> list[InputFile]:
    """Expands file names and globs (relative to the current directory) and scans every file.

    The format comes from each file's name (``.csv``, ``.tsv``, ``.parquet``, optionally ``.gz``), falling back
    to the schema's. ``file_cache`` keeps what the scan built for the ``RowReader`` that reads the files.

    Raises:
        FileNotFoundError: For a pattern that matches no file.
    """
    paths: dict[str, None] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern] * Path(pattern).is_file()
        if not matches:
            raise FileNotFoundError(f"--data {pattern!r} matches no file")
        paths.update(dict.fromkeys(matches))
    out = []
    for i, p in enumerate(paths):
        try:
            fmt = infer_format(p)
            view = dataclasses.replace(schema, format=fmt, delimiter=schema.delimiter if fmt == schema.format else None)
        except DataError:
            view = schema
        info, units = scan_file(Path(p).resolve(), p, i, view, unit_rows, file_cache)
        out.append(InputFile(info, units))
    return out


def _scoring_schema(schema: DatasetSchema) -> tuple[DatasetSchema, tuple[str, ...]]:
    """The schema without what scoring ignores, and the label columns no feature reads (never read)."""
    read = {f.column for f in schema.sparse} | {f.column for f in schema.dense} | {j.key for j in schema.joins}
    tasks = tuple(dataclasses.replace(t, weight_column=None) for t in schema.tasks)
    label_only = tuple(dict.fromkeys(t.column for t in tasks if t.column not in read))
    return dataclasses.replace(schema, tasks=tasks, group=None, time=None), label_only


class _FeaturesOnly(FeatureProcessor):
    """The pipeline's processor with labels ignored (they are neither read nor checked when scoring)."""

    def label(self, task: Task, values: pa.Array | pa.ChunkedArray, ctx: RowContext) -> np.ndarray:
        return np.zeros(len(values), dtype=np.float32)


class RowReader:
    """Reads units of input files and turns them into model inputs with the frozen transform.

    Args:
        transform: The frozen transform.
        keep: Columns of the input files copied to the output as they are.
        file_cache: The cache the files were scanned with (default: a new one).
    """

    def __init__(self, transform: FrozenTransform, keep: Sequence[str] = (), file_cache: FileCache | None = None):
        self.transform = transform
        self.file_cache = file_cache if file_cache is not None else FileCache()
        self.keep = tuple(keep)
        self.schema, self._label_only = _scoring_schema(transform.schema)
        self._processors: dict[tuple[str, ...], tuple[ColumnPlan, FeatureProcessor]] = {}

    def _processor(self, info: FileInfo) -> tuple[ColumnPlan, FeatureProcessor]:
        key = info.column_names
        if key not in self._processors:
            present = tuple(info.column_names) + tuple(c for c in self._label_only if c not in info.column_names)
            plan = ColumnPlan.build(self.schema, present, info.path)
            self._processors[key] = (plan, _FeaturesOnly(self.schema, plan, self.transform.fitted))
        return self._processors[key]

    def read(self, f: InputFile, u: int, select: np.ndarray | None = None) -> RowChunk:
        """Reads and processes unit ``u`` of ``f`` (only its local rows ``select``, when given).

        Raises:
            DataError: For a missing column or a bad cell, naming file, row and column.
        """
        info, unit = f.info, f.units[u]
        for c in self.keep:
            if c not in info.column_names:
                raise DataError(f"{info.path}: --keep column {c!r} is not in the file (columns: "
                                f"{list(info.column_names)})")
        plan, processor = self._processor(info)
        # Label-only columns are never read (scoring ignores labels): a null column stands in for them.
        wanted = [c for c in plan.log_columns if c in info.column_names and c not in self._label_only]
        read = list(dict.fromkeys([*wanted, *self.keep]))
        table = read_unit(info, unit, read, dict(plan.kinds), self.schema.null_values, self.file_cache)
        for c in plan.log_columns:
            if c not in table.column_names:  # a label-only column: never used
                table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
        rows = np.arange(unit.row_start, unit.row_start + unit.num_rows)
        if select is not None:
            table, rows = table.take(pa.array(select)), rows[select]
        cols = processor(table.select(list(plan.log_columns)), RowContext(info, rows))
        return RowChunk(info.name, rows, cols, table.select(list(self.keep)))


def request_tensors(cols: Columns, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``[start, stop)`` of processed columns as the serving contract's ``(dense_BD, values_N, lengths_FB)``."""
    values, lengths = [], []
    for l_N, v in zip(cols.lengths, cols.values, strict=True):
        ends = np.cumsum(l_N, dtype=np.int64)
        lo = int(ends[start - 1]) if start else 0
        values.append(v[lo : int(ends[stop - 1]) if stop else 0])
        lengths.append(l_N[start:stop])
    dense = torch.from_numpy(np.ascontiguousarray(cols.dense[start:stop]))
    values_N = torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *values]).astype(np.int64))
    lengths_FB = torch.from_numpy(np.concatenate([np.zeros(0, np.int32), *lengths]).astype(np.int32))
    return dense, values_N, lengths_FB
