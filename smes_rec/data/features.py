"""Features: from an Arrow table of raw cells (the log's, side tables' through ``joins.py``) to ids, dense
features, labels, weights and groups (``Columns``).

Everything here is vectorised (pyarrow.compute and numpy over whole chunks) and runs in DataLoader workers. Every
error names the file, the row (and line for text files) and the column, through a ``RowContext``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from smes_rec.data.cells import as_array, clean_text, is_text, parse_numbers, try_numbers
from smes_rec.data.files import RowContext
from smes_rec.data.fitted import FittedTransform
from smes_rec.data.hashing import bucketize_ids, canonical_ids, group_ids, hash_ids
from smes_rec.data.joins import ColumnPlan, SideTable
from smes_rec.data.schema import DataError, DatasetSchema, DenseFeature, SparseFeature, Task
from smes_rec.data.vocab import Vocabulary

__all__ = ["Columns", "FeatureProcessor", "raw_dense"]


@dataclass
class Columns:
    """Processed rows, column-wise (N rows, F sparse features, D dense features, T tasks).

    Attributes:
        lengths: Per sparse feature, ``[N]`` int32 ids per row.
        values: Per sparse feature, the int64 bucket ids of all rows, row after row.
        dense: ``[N, D]`` float32.
        labels: ``[T, N]`` float32.
        weights: ``[T, N]`` float32.
        group_ids: ``[N]`` int64.
    """

    lengths: list[np.ndarray]
    values: list[np.ndarray]
    dense: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    group_ids: np.ndarray

    @property
    def num_rows(self) -> int:
        """N."""
        return len(self.group_ids)

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        """Concatenates row-wise."""
        if len(parts) == 1:
            return parts[0]
        return Columns(
            lengths=[np.concatenate([p.lengths[f] for p in parts]) for f in range(len(parts[0].lengths))],
            values=[np.concatenate([p.values[f] for p in parts]) for f in range(len(parts[0].values))],
            dense=np.concatenate([p.dense for p in parts]),
            labels=np.concatenate([p.labels for p in parts], axis=1),
            weights=np.concatenate([p.weights for p in parts], axis=1),
            group_ids=np.concatenate([p.group_ids for p in parts]),
        )


def raw_dense(f: DenseFeature, values: pa.Array | pa.ChunkedArray, ctx: RowContext,
              null_values: Sequence[str] = ("",)) -> np.ndarray:
    """A dense column before its transform: float64 numbers with ``fill`` applied.

    Args:
        f: The dense feature.
        values: ``[N]`` raw cells.
        ctx: Where the rows come from.
        null_values: Text cells that mean "missing".

    Returns:
        ``[N]`` float64.

    Raises:
        DataError: For a missing cell without ``fill``, or a cell that is not a number.
    """
    x = parse_numbers(values, ctx, f.column, null_values=null_values)
    missing = np.isnan(x)
    if missing.any():
        if f.fill is None:
            i = int(np.flatnonzero(missing)[0])
            raise DataError(f"{ctx.where(i, f.column)}: missing value for dense feature {f.name!r} (set `fill` to "
                            "allow missing values)")
        x = np.where(missing, f.fill, x)
    return x


# --------------------------------------------------------------------------------------------- feature processing
class FeatureProcessor:
    """Turns tables of raw log cells into ``Columns``, joining side tables on the way.

    Args:
        schema: The schema.
        plan: Where each column comes from (``ColumnPlan.build``).
        fitted: What was fitted on the train split (``standardize`` statistics, vocabularies); nothing is fitted
            here. None: only features that need nothing fitted can be processed (the fitting pass uses that).
    """

    def __init__(self, schema: DatasetSchema, plan: ColumnPlan, fitted: FittedTransform | None = None) -> None:
        self.schema = schema
        self._stats: dict[str, tuple[float, float]] = {}
        for f in schema.dense:
            if f.transform == "standardize":
                if f.mean is not None and f.std is not None:
                    self._stats[f.name] = (f.mean, f.std)
                elif fitted is not None and f.name in fitted.dense:
                    self._stats[f.name] = fitted.dense[f.name]
        self._vocabs = {t: Vocabulary(v) for t, v in (fitted.vocabularies if fitted else {}).items()}
        self._boundaries = {
            f.name: torch.tensor(f.boundaries, dtype=torch.float64) for f in schema.sparse if f.boundaries
        }
        encodable = [f for f in schema.sparse if self.can_process(f)]
        self.sides = [SideTable(schema, plan, i, encodable, self.sparse) for i in range(len(schema.joins))]
        self._side_of = {c: side for side in self.sides for c in side.columns}

    def __call__(self, table: pa.Table, ctx: RowContext) -> Columns:
        """Processes ``table`` (the log columns; one row per entry of ``ctx.rows``)."""
        n = table.num_rows
        side_rows = {side.index: side.rows(table.column(side.join.key), self.schema.strip) for side in self.sides}
        lengths, values = [], []
        for f in self.schema.sparse:
            side = self._side_of.get(f.column)
            if side is not None:
                l_N, v = side.gather_sparse(f.name, side_rows[side.index])
            else:
                l_N, v = self.sparse(f, table.column(f.column), ctx)
            lengths.append(l_N)
            values.append(v)
        dense = np.empty((n, len(self.schema.dense)), dtype=np.float32)
        for d, df in enumerate(self.schema.dense):
            side = self._side_of.get(df.column)
            if side is not None:
                raw = pa.array(side.numbers[df.column][side_rows[side.index]], from_pandas=True)
                try:
                    dense[:, d] = self.dense(df, raw, ctx)
                except DataError as e:
                    raise DataError(f"{e} [column from joins[{side.index}] {side.path}; keys without a match are "
                                    "missing]") from None
            else:
                dense[:, d] = self.dense(df, table.column(df.column), ctx)

        def column(name: str) -> pa.Array:
            side = self._side_of.get(name)
            return side.column(name, side_rows[side.index]) if side is not None else table.column(name)

        labels = np.empty((len(self.schema.tasks), n), dtype=np.float32)
        weights = np.empty((len(self.schema.tasks), n), dtype=np.float32)
        for t, task in enumerate(self.schema.tasks):
            labels[t] = self.label(task, column(task.column), ctx)
            weights[t] = task.weight
            if task.weight_column:
                w = parse_numbers(column(task.weight_column), ctx, task.weight_column,
                                  null_values=self.schema.null_values)
                bad = ~np.isfinite(w) | (w < 0)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise DataError(f"{ctx.where(i, task.weight_column)}: weight {w[i]} is missing, negative or not "
                                    "finite")
                weights[t] *= w
        if self.schema.group:
            g_N, ok = group_ids(self.clean_cells(column(self.schema.group)), self.schema.strip)
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                raise DataError(f"{ctx.where(i, self.schema.group)}: missing group id")
        else:
            g_N = np.zeros(n, dtype=np.int64)
        return Columns(lengths, values, dense, labels, weights, g_N)

    def raw_dense_column(self, f: DenseFeature, table: pa.Table, ctx: RowContext) -> np.ndarray:
        """A dense feature's filled raw values (before its transform) for the rows of a log table."""
        side = self._side_of.get(f.column)
        if side is None:
            return raw_dense(f, table.column(f.column), ctx, self.schema.null_values)
        rows = side.rows(table.column(side.join.key), self.schema.strip)
        return raw_dense(f, pa.array(side.numbers[f.column][rows], from_pandas=True), ctx, self.schema.null_values)

    def clean_cells(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Applies ``strip`` and ``null_values`` to text (once per distinct value for dictionary columns): what
        every feature and label sees; other types are returned as they are."""
        values = as_array(values)
        t = values.type
        if pa.types.is_dictionary(t) and is_text(t.value_type):
            cleaned = clean_text(values.dictionary, self.schema.strip, self.schema.null_values)
            return pa.DictionaryArray.from_arrays(values.indices, cleaned)
        if is_text(t):
            return clean_text(values, self.schema.strip, self.schema.null_values)
        return values

    def sparse(self, f: SparseFeature, values: pa.Array | pa.ChunkedArray, ctx: RowContext
               ) -> tuple[np.ndarray, np.ndarray]:
        """Ids of one sparse feature.

        Args:
            f: The feature.
            values: ``[N]`` raw cells.
            ctx: Where the rows come from.

        Returns:
            ``(lengths_N int32, values int64)``: a missing cell gives length 0.
        """
        values = as_array(values)
        n = len(values)
        if f.boundaries:
            x = parse_numbers(values, ctx, f.column, null_values=self.schema.null_values)
            ok = ~np.isnan(x)
            buckets = torch.bucketize(torch.from_numpy(x[ok]), self._boundaries[f.name], right=True)
            return ok.astype(np.int32), buckets.numpy().astype(np.int64)
        flat, parents = self.id_cells(f, values)
        try:
            ids, ok = self._ids(f, flat, ctx, parents)
        except TypeError as e:
            raise DataError(f"{ctx.file.path}: column {f.column!r}: {e}") from None
        if parents is not None:
            return np.bincount(parents[ok], minlength=n).astype(np.int32), ids[ok]
        if ok.all():
            return np.ones(n, dtype=np.int32), ids
        return ok.astype(np.int32), ids[ok]

    def id_cells(self, f: SparseFeature, values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray | None]:
        """The cleaned id cells of a (not bucketised) sparse feature, multi-valued cells flattened.

        Returns:
            ``(cells, parents)``: one cell per id (``strip``/``null_values`` applied) and, for multi-valued
            features, the row of each id (None for single-valued ones: one cell per row).
        """
        values = as_array(values)
        t = values.type
        if f.separator is not None or pa.types.is_list(t) or pa.types.is_large_list(t):
            if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
                text = values.dictionary_decode() if pa.types.is_dictionary(t) else values
                if not is_text(text.type):
                    text = text.cast(pa.string())
                values = pc.split_pattern(text, f.separator)
            flat = pc.list_flatten(values)
            return self.clean_cells(flat), np.asarray(pc.list_parent_indices(values))
        return self.clean_cells(values), None

    def _ids(self, f: SparseFeature, cells: pa.Array, ctx: RowContext, parents: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, valid)`` of cleaned cells by the feature's ``ids`` mode (see ``SparseFeature``)."""
        if f.ids == "vocab":
            vocab = self._vocabs.get(f.table_name)
            if vocab is None:
                raise ValueError(f"sparse feature {f.name!r} (ids: vocab) needs the vocabulary of table "
                                 f"{f.table_name!r} (the fitted transform has none)")
            return vocab.lookup(cells)
        if f.ids == "identity":
            key, is_int, ok = canonical_ids(cells, self.schema.strip)
            ints = key.view(np.int64)
            bad = ok & (~is_int | (ints < 0) | (ints >= (f.num_embeddings or 1)))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                row = int(parents[i]) if parents is not None else i
                raise DataError(f"{ctx.where(row, f.column)}: id {cells[i].as_py()!r} is not an integer in "
                                f"[0, {f.num_embeddings}) (sparse feature {f.name!r} has ids: identity)")
            return ints.copy(), ok
        h, ok = hash_ids(cells, self.schema.strip)
        return bucketize_ids(h, f.num_embeddings or 1), ok

    def sparse_hashes(self, f: SparseFeature, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The 64-bit hashes of a hashed feature's non-missing ids (``apps/prepare.py validate`` counts merges)."""
        flat, _ = self.id_cells(f, values)
        h, ok = hash_ids(flat, self.schema.strip)
        return h[ok]

    def cells(self, column: str, table: pa.Table) -> pa.Array | pa.ChunkedArray:
        """Column ``column`` for the rows of a log table: from the log, or gathered from its side table."""
        side = self._side_of.get(column)
        if side is None:
            return table.column(column)
        return side.column(column, side.rows(table.column(side.join.key), self.schema.strip))

    def can_process(self, f: SparseFeature) -> bool:
        """Whether this processor has what ``f`` needs (a vocabulary for ``ids: vocab``)."""
        return f.ids != "vocab" or f.table_name in self._vocabs

    def dense(self, f: DenseFeature, values: pa.Array | pa.ChunkedArray, ctx: RowContext) -> np.ndarray:
        """One dense feature after fill and transform, checked finite.

        Returns:
            ``[N]`` float64.

        Raises:
            DataError: For a missing cell without ``fill``, or a value that is NaN or infinite after the transform.
        """
        raw = raw_dense(f, values, ctx, self.schema.null_values)
        if f.transform == "log1p":
            with np.errstate(invalid="ignore", divide="ignore"):
                y = np.log1p(raw)
        elif f.transform == "standardize":
            if f.name not in self._stats:
                raise ValueError(f"dense feature {f.name!r} needs standardisation statistics (the fitted transform "
                                 "has none for it)")
            mean, std = self._stats[f.name]
            y = (raw - mean) / std
        else:
            y = raw
        bad = ~np.isfinite(y)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{ctx.where(i, f.column)}: value {float(raw[i])!r} gives {float(y[i])} after transform "
                            f"{f.transform!r} (dense feature {f.name!r})")
        return y

    def label(self, task: Task, values: pa.Array | pa.ChunkedArray, ctx: RowContext) -> np.ndarray:
        """One task's 0/1 labels.

        Raises:
            DataError: For a missing label, a non-number with ``threshold``, or (with ``negative``) a value that is
                neither positive nor negative.
        """
        values = as_array(values)
        if task.threshold is not None:
            x = parse_numbers(values, ctx, task.column, null_values=self.schema.null_values)
            self._check_present(np.isnan(x), ctx, task)
            return (x > task.threshold).astype(np.float32)
        values = self.clean_cells(values)
        if is_text(values.type):
            values = pc.dictionary_encode(values)  # labels take few distinct values: match each once
        self._check_present(np.asarray(pc.is_null(values)), ctx, task)
        if pa.types.is_dictionary(values.type):
            idx = values.indices.to_numpy(zero_copy_only=False)
            distinct = values.dictionary
        else:
            idx, distinct = None, values
        pos = self._match(distinct, task.positive or (), ctx, task)
        bad = ~pos
        if task.negative is not None:
            bad &= ~self._match(distinct, task.negative, ctx, task)
        if idx is not None:
            pos, bad = pos[idx], bad[idx]
        if task.negative is not None and bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = values[i].as_py()
            raise DataError(f"{ctx.where(i, task.column)}: label {value!r} is neither positive "
                            f"{list(task.positive or ())} nor negative {list(task.negative)} (task {task.name!r})")
        return pos.astype(np.float32)

    def _check_present(self, missing: np.ndarray, ctx: RowContext, task: Task) -> None:
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise DataError(f"{ctx.where(i, task.column)}: missing label for task {task.name!r}")

    def _match(self, values: pa.Array, wanted: Sequence[float | str], ctx: RowContext, task: Task) -> np.ndarray:
        """Whether each cell equals one of ``wanted``: numerically when both are numbers, else as text."""
        numbers = [float(v) for v in wanted if isinstance(v, float)]
        texts = [v for v in wanted if isinstance(v, str)]
        for s in texts:
            with contextlib.suppress(ValueError):
                numbers.append(float(s))
        t = values.type
        if pa.types.is_boolean(t):
            values, t = values.cast(pa.int8()), pa.int8()
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            x = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
            return np.isin(x, numbers)
        if not is_text(t):
            raise DataError(f"{ctx.file.path}: column {task.column!r} has type {t}, which cannot hold labels")
        out = np.asarray(pc.fill_null(pc.is_in(values, value_set=pa.array(texts, pa.string())), False)) if texts \
            else np.zeros(len(values), dtype=bool)
        if numbers:
            out = out | np.isin(try_numbers(values), numbers)
        return out
