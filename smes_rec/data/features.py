"""Row processing: from an Arrow table of raw cells to hashed ids, dense features, labels, weights and groups.

Everything here is vectorised (pyarrow.compute and numpy over whole chunks) and runs in DataLoader workers. Every
error names the file, the row (and line for text files) and the column, through a ``RowContext``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm)
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from smes_rec.data.fitted import FittedTransform
from smes_rec.data.hashing import bucketize_ids, canonical_ids, fmix64, group_ids, hash_ids
from smes_rec.data.readers import FileInfo, RowContext, column_roles, read_side_table, resolve_join, side_table_columns
from smes_rec.data.schema import DataError, DatasetSchema, DenseFeature, SparseFeature, Task, infer_format
from smes_rec.data.vocab import Vocabulary
from smes_rec.utils.config import ConfigError

__all__ = ["ColumnPlan", "Columns", "FeatureProcessor", "SideTable", "parse_numbers", "raw_dense"]

_NUMBER_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(inf|infinity|nan)$"


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


# -------------------------------------------------------------------------------------------------- cell parsing
def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _clean_text(values: pa.Array, strip: bool, null_values: Sequence[str]) -> pa.Array:
    """Trims (optionally) and turns empty text and ``null_values`` into nulls."""
    if strip:
        values = pc.utf8_trim_whitespace(values)
    missing = pc.is_in(values, value_set=pa.array(sorted({"", *null_values}), type=values.type))
    return pc.if_else(missing, pa.scalar(None, values.type), values)


def parse_numbers(values: pa.Array | pa.ChunkedArray, ctx: RowContext, column: str,
                  null_values: Sequence[str] = ("",)) -> np.ndarray:
    """Converts a column to float64, with NaN for missing cells (whitespace around numbers is ignored).

    Args:
        values: ``[N]`` cells of a numeric, boolean, text or dictionary type.
        ctx: Where the rows come from (for errors).
        column: The column name (for errors).
        null_values: Text cells that mean "missing" (empty text always does).

    Returns:
        ``[N]`` float64.

    Raises:
        DataError: For a cell that is not a number, naming file, row and column.
    """
    values = _as_array(values)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    t = values.type
    if pa.types.is_null(t):
        return np.full(len(values), np.nan)
    if pa.types.is_boolean(t):
        values, t = values.cast(pa.int8()), pa.int8()
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    if _is_text(t):
        text = _clean_text(values, True, null_values)
        try:
            return pc.fill_null(text.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER_TEXT, ignore_case=True), True)
            i = int(np.flatnonzero(~np.asarray(ok))[0])
            raise DataError(f"{ctx.where(i, column)}: {values[i].as_py()!r} is not a number") from None
    raise DataError(f"{ctx.file.path}: column {column!r} has type {t}, which cannot be read as numbers")


def _try_numbers(text: pa.Array) -> np.ndarray:
    """float64 of text cells that are numbers, NaN elsewhere (no errors)."""
    ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER_TEXT, ignore_case=True), False)
    out = np.full(len(text), np.nan)
    idx = np.flatnonzero(np.asarray(ok))
    if len(idx):
        out[idx] = text.take(pa.array(idx)).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return out


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


# --------------------------------------------------------------------------------------------------------- joins
@dataclass(frozen=True)
class ColumnPlan:
    """Where each column the schema reads comes from.

    Attributes:
        log_columns: Columns read from the data files.
        join_columns: Per join, the side-table columns it adds.
        uses: ``column -> first schema key that reads it``.
        kinds: ``column -> "number" | "text"``.
    """

    log_columns: tuple[str, ...]
    join_columns: tuple[tuple[str, ...], ...]
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
        taken: dict[str, str] = {}
        for i, j in enumerate(schema.joins):
            if j.key not in present:
                raise ConfigError(f"joins[{i}].key: column {j.key!r} is not in {source} (columns: "
                                  f"{list(file_columns)})")
            path = resolve_join(schema, j, i)
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
        return ColumnPlan(log, tuple(join_cols), dict(uses), dict(kinds))


def _join_hash(key: np.ndarray, is_int: np.ndarray) -> np.ndarray:
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
        processor: The feature processor (for parsing and hashing the side-table columns).
    """

    def __init__(self, schema: DatasetSchema, plan: ColumnPlan, index: int, processor: FeatureProcessor) -> None:
        join = schema.joins[index]
        self.join, self.index = join, index
        self.columns = plan.join_columns[index]
        kinds = {c: plan.kinds.get(c, "text") for c in self.columns}
        kinds[join.side_column] = "text"
        table, self.path = read_side_table(schema, join, index, [join.side_column, *self.columns], kinds)
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
            h = _join_hash(key, is_int)
            order = np.argsort(h, kind="stable")
            self._sorted, self._order = h[order], order
            if len(h) and (self._sorted[1:] == self._sorted[:-1]).any():
                self._duplicate(table, h, ctx)
        self.table = table
        # Precomputed features, each with a trailing empty/missing row at index n.
        self.sparse: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
        for f in schema.sparse:
            if f.column in self.columns and processor.can_process(f):
                lengths, values = processor.sparse(f, table.column(f.column), ctx)
                single = bool((lengths == 1).all())
                self.sparse[f.name] = (np.append(lengths, np.int32(0)), values, single)
        self.numbers: dict[str, np.ndarray] = {}
        for f in schema.dense:
            if f.column in self.columns and f.column not in self.numbers:
                x = parse_numbers(table.column(f.column), ctx, f.column, null_values=schema.null_values)
                self.numbers[f.column] = np.append(x, np.nan)

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
        h = _join_hash(key, is_int)
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
        self.schema, self.plan = schema, plan
        self.fitted = fitted
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
        self.sides = [SideTable(schema, plan, i, self) for i in range(len(schema.joins))]
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
        for d, f in enumerate(self.schema.dense):
            side = self._side_of.get(f.column)
            if side is not None:
                raw = pa.array(side.numbers[f.column][side_rows[side.index]], from_pandas=True)
                try:
                    dense[:, d] = self.dense(f, raw, ctx)
                except DataError as e:
                    raise DataError(f"{e} [column from joins[{side.index}] {side.path}; keys without a match are "
                                    "missing]") from None
            else:
                dense[:, d] = self.dense(f, table.column(f.column), ctx)

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
        values = _as_array(values)
        t = values.type
        if pa.types.is_dictionary(t) and _is_text(t.value_type):
            cleaned = _clean_text(values.dictionary, self.schema.strip, self.schema.null_values)
            return pa.DictionaryArray.from_arrays(values.indices, cleaned)
        if _is_text(t):
            return _clean_text(values, self.schema.strip, self.schema.null_values)
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
        values = _as_array(values)
        n = len(values)
        if f.boundaries:
            x = parse_numbers(values, ctx, f.column, null_values=self.schema.null_values)
            ok = ~np.isnan(x)
            ids = torch.bucketize(torch.from_numpy(x[ok]), self._boundaries[f.name], right=True)
            return ok.astype(np.int32), ids.numpy().astype(np.int64)
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
        values = _as_array(values)
        t = values.type
        if f.separator is not None or pa.types.is_list(t) or pa.types.is_large_list(t):
            if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
                text = values.dictionary_decode() if pa.types.is_dictionary(t) else values
                if not _is_text(text.type):
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
        values = _as_array(values)
        if task.threshold is not None:
            x = parse_numbers(values, ctx, task.column, null_values=self.schema.null_values)
            self._check_present(np.isnan(x), ctx, task)
            return (x > task.threshold).astype(np.float32)
        values = self.clean_cells(values)
        if _is_text(values.type):
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
        if not _is_text(t):
            raise DataError(f"{ctx.file.path}: column {task.column!r} has type {t}, which cannot hold labels")
        out = np.asarray(pc.fill_null(pc.is_in(values, value_set=pa.array(texts, pa.string())), False)) if texts \
            else np.zeros(len(values), dtype=bool)
        if numbers:
            out = out | np.isin(_try_numbers(values), numbers)
        return out
