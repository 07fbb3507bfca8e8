"""Joins: where each column the schema reads comes from, and side tables joined to the log on a key column.

A side table is read once per process and its key column turned into a lookup (a direct position table for small
non-negative integer keys, else a sorted hash); joining a chunk of the log is then a lookup of row indices and a
gather. Sparse features a side table provides are encoded once for all its rows by a function the feature
processor injects (``encode``), so no text is parsed or hashed per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm)
import numpy as np
import pyarrow as pa
import torch

from smes_rec.data.cells import parse_numbers, read_side_table
from smes_rec.data.files import FileInfo, RowContext, infer_format, resolve_join, side_table_columns
from smes_rec.data.hashing import canonical_ids, fmix64
from smes_rec.data.schema import DataError, DatasetSchema, SparseFeature, column_roles
from smes_rec.utils.config import ConfigError

__all__ = ["ColumnPlan", "SideTable", "SparseEncoder"]

# Encodes one sparse feature's cells: ``(feature, cells, where the rows come from) -> (lengths_N, values)``.
SparseEncoder = Callable[[SparseFeature, pa.Array | pa.ChunkedArray, RowContext], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ColumnPlan:
    """Where each column the schema reads comes from.

    Attributes:
        log_columns: Columns read from the data files.
        join_columns: Per join, the side-table columns it adds.
        join_paths: Per join, its side table file (resolved once, here).
        uses: ``column -> first schema key that reads it``.
        kinds: ``column -> "number" | "text"``.
    """

    log_columns: tuple[str, ...]
    join_columns: tuple[tuple[str, ...], ...]
    join_paths: tuple[str, ...]
    uses: Mapping[str, str]
    kinds: Mapping[str, str]

    @staticmethod
    def build(schema: DatasetSchema, file_columns: Sequence[str], source: str) -> ColumnPlan:
        """Assigns every referenced column to the log or to one join.

        Args:
            schema: The schema (with an absolute data root).
            file_columns: The columns of the (first) data file.
            source: The file name, for errors.

        Returns:
            The plan.

        Raises:
            ConfigError: When a column is in neither the log nor a side table, or two tables provide it.
        """
        uses, kinds = column_roles(schema)
        present = set(file_columns)
        join_cols: list[tuple[str, ...]] = []
        join_paths: list[str] = []
        taken: dict[str, str] = {}
        for i, j in enumerate(schema.joins):
            if j.key not in present:
                raise ConfigError(f"joins[{i}].key: column {j.key!r} is not in {source} (columns: "
                                  f"{list(file_columns)})")
            path = resolve_join(schema, j, i)
            join_paths.append(path)
            side = side_table_columns(path, j.delimiter)
            if j.side_column not in side:
                raise ConfigError(f"joins[{i}].side_key: column {j.side_column!r} is not in {path} (columns: "
                                  f"{list(side)})")
            if j.columns is not None:
                for c in j.columns:
                    if c not in side:
                        raise ConfigError(f"joins[{i}].columns: {c!r} is not in {path} (columns: {list(side)})")
                    if c in present:
                        raise ConfigError(f"joins[{i}].columns: {c!r} is also a column of {source}")
                mine = tuple(c for c in j.columns if c in uses)
            else:
                mine = tuple(c for c in uses if c not in present and c in side and c != j.side_column)
            for c in mine:
                if c in taken:
                    raise ConfigError(f"joins[{i}]: column {c!r} is also provided by {taken[c]}; list `columns` "
                                      "explicitly")
                taken[c] = f"joins[{i}]"
            join_cols.append(mine)
        missing = [c for c in uses if c not in present and c not in taken]
        if missing:
            c = missing[0]
            raise ConfigError(
                f"{uses[c]}: column {c!r} is not in {source} nor in a joined table (file columns: {list(file_columns)})"
            )
        log = tuple(c for c in uses if c in present and c not in taken)
        return ColumnPlan(log, tuple(join_cols), tuple(join_paths), dict(uses), dict(kinds))


def join_hash(key: np.ndarray, is_int: np.ndarray) -> np.ndarray:
    """The hash joins match on: integer and text keys with the same bits hash apart. Side table and log must agree."""
    return fmix64(key) ^ np.where(is_int, np.uint64(0), np.uint64(0x9E3779B97F4A7C15))


class SideTable:
    """A joined side table, prepared once per process.

    Sparse features and dense columns it provides are computed once for all its rows (plus a last, empty row for
    log keys without a match), so joining a chunk of the log is a lookup of row indices and a gather: no text is
    parsed or hashed per chunk. Errors in side-table cells name the side-table file and row.

    Args:
        schema: The schema.
        plan: The column plan.
        index: The join's position in ``schema.joins``.
        features: The sparse features to encode once here (those of its columns the caller can encode).
        encode: Encodes a sparse feature's cells (the feature processor's ``sparse``).
    """

    def __init__(self, schema: DatasetSchema, plan: ColumnPlan, index: int, features: Sequence[SparseFeature],
                 encode: SparseEncoder) -> None:
        join = schema.joins[index]
        self.join, self.index = join, index
        self.columns = plan.join_columns[index]
        kinds = {c: plan.kinds.get(c, "text") for c in self.columns}
        kinds[join.side_column] = "text"
        self.path = plan.join_paths[index]
        table = read_side_table(self.path, join, index, [join.side_column, *self.columns], kinds, schema.null_values)
        self.num_rows = n = table.num_rows
        info = FileInfo(self.path, self.path, infer_format(self.path), False, "", True, tuple(table.column_names),
                        n, 0, 0)
        ctx = RowContext(info, np.arange(n))
        key, is_int, valid = canonical_ids(table.column(join.side_column), schema.strip)
        if not valid.all():
            i = int(np.flatnonzero(~valid)[0])
            raise DataError(f"{ctx.where(i, join.side_column)}: missing join key")
        self._dense_lookup: np.ndarray | None = None
        ints = key.view(np.int64)
        if n and is_int.all() and ints.min() >= 0 and ints.max() < 4 * n + 4096:
            # Small non-negative integer keys (user/item ids): a direct position table.
            lookup = np.full(int(ints.max()) + 1, -1, dtype=np.int64)
            lookup[ints] = np.arange(n)
            if (lookup >= 0).sum() != n:
                self._duplicate(table, ints, ctx)
            self._dense_lookup = np.where(lookup < 0, n, lookup)
        else:
            h = join_hash(key, is_int)
            order = np.argsort(h, kind="stable")
            self._sorted, self._order = h[order], order
            if len(h) and (self._sorted[1:] == self._sorted[:-1]).any():
                self._duplicate(table, h, ctx)
        self.table = table
        # Precomputed features, each with a trailing empty/missing row at index n.
        self.sparse: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
        for f in features:
            if f.column in self.columns:
                lengths, values = encode(f, table.column(f.column), ctx)
                single = bool((lengths == 1).all())
                self.sparse[f.name] = (np.append(lengths, np.int32(0)), values, single)
        self.numbers: dict[str, np.ndarray] = {}
        for d in schema.dense:
            if d.column in self.columns and d.column not in self.numbers:
                x = parse_numbers(table.column(d.column), ctx, d.column, null_values=schema.null_values)
                self.numbers[d.column] = np.append(x, np.nan)

    def _duplicate(self, table: pa.Table, keys: np.ndarray, ctx: RowContext) -> None:
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        i = int(first[np.flatnonzero(counts > 1)[0]])
        j = int(np.flatnonzero(keys == keys[i])[1])
        value = table.column(self.join.side_column)[i].as_py()
        raise DataError(f"{ctx.where(j, self.join.side_column)}: join key {value!r} already appears in row {i + 1}; "
                        "join keys must be unique")

    def rows(self, values: pa.Array | pa.ChunkedArray, strip: bool) -> np.ndarray:
        """``[N]`` side-table row of each log key (``num_rows`` where there is no match)."""
        key, is_int, valid = canonical_ids(values, strip)
        n = self.num_rows
        if self._dense_lookup is not None:
            ints = key.view(np.int64)
            ok = valid & is_int & (ints >= 0) & (ints < len(self._dense_lookup))
            return np.where(ok, self._dense_lookup[np.where(ok, ints, 0)], n)
        h = join_hash(key, is_int)
        pos = np.minimum(np.searchsorted(self._sorted, h), max(n - 1, 0))
        match = valid & (self._sorted[pos] == h) if n else np.zeros(len(h), dtype=bool)
        return np.where(match, self._order[pos], n)

    def gather_sparse(self, name: str, rows_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of feature ``name`` for side rows ``rows_N``: ``(lengths_N, values)``."""
        lengths_S1, values, single = self.sparse[name]
        n = self.num_rows
        if single:
            matched = rows_N < n
            if matched.all():
                return np.ones(len(rows_N), dtype=np.int32), values[rows_N]
            return matched.astype(np.int32), values[rows_N[matched]]
        out_lengths, out_values, _ = torch.ops.fbgemm.permute_1D_sparse_data(
            torch.from_numpy(rows_N.astype(np.int32)), torch.from_numpy(lengths_S1), torch.from_numpy(values),
            None, None,
        )
        return out_lengths.numpy(), out_values.numpy()

    def column(self, name: str, rows_N: np.ndarray) -> pa.Array:
        """Column ``name`` for side rows ``rows_N`` (nulls where there is no match)."""
        idx = pa.array(rows_N, mask=rows_N >= self.num_rows, type=pa.int64())
        return self.table.column(name).take(idx)

