"""Dataset schemas: how the columns of a tabular log become sparse features, dense features, labels and groups.

A schema is a YAML file loaded strictly (unknown keys, missing required keys and wrong types are errors naming the
key path) into the frozen dataclasses below. Relative paths inside a schema (``files``, ``joins[].path``) resolve
against ``data_root``; a relative ``data_root`` resolves against the directory of the schema file, and a schema
without ``data_root`` uses that directory itself. ``DataConfig.data_root`` overrides it (see ``config.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from smes_rec.utils.config import load_yaml

__all__ = [
    "DEFAULT_NULL_VALUES",
    "DataError",
    "DatasetSchema",
    "DenseFeature",
    "Format",
    "Join",
    "SparseFeature",
    "TableSpec",
    "Task",
    "column_roles",
    "load_schema",
    "with_data_root",
]

Format = Literal["csv", "tsv", "parquet"]
Transform = Literal["none", "log1p", "standardize"]
IdMode = Literal["hash", "vocab", "identity"]

# Feature and table names become KeyedJaggedTensor keys and torch module names, which must not contain dots.
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_NULL_VALUES = ("", "NA", "N/A", "NaN", "nan", "NULL", "null", "None")


class DataError(ValueError):
    """Bad input data; the message names the file, the row (and line for text files) and the column."""


def _check_name(kind: str, name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"{kind} {name!r} must match {_NAME_RE.pattern} (it becomes a KJT key / module name)")


@dataclass(frozen=True)
class SparseFeature:
    """A categorical feature: one embedding-bag lookup per row.

    Attributes:
        name: The feature name (the KJT key).
        column: The source column (from the log or a joined side table).
        dim: The embedding dimension of its table.
        num_embeddings: The number of hash buckets (rows of the table). Optional with ``boundaries``, where it is
            ``len(boundaries) + 1``.
        table: The embedding table name; features naming the same table share it and must agree on
            ``num_embeddings`` and ``dim``. Defaults to ``name``.
        separator: Makes the feature multi-valued: a cell ``"3|7|9"`` with separator ``"|"`` gives three ids.
            Native list columns of Parquet files are multi-valued without it.
        boundaries: Makes the feature a bucketised number: the id of a value ``x`` is the number of boundaries
            ``<= x`` (strictly increasing boundaries), so ``num_embeddings = len(boundaries) + 1``.
        ids: How a value becomes a row of the table. ``hash`` (default): a stable 64-bit hash into
            ``num_embeddings`` buckets (see ``hashing.py``); distinct values may share a bucket. ``vocab``: exact ids
            from a vocabulary fitted on the train split (row 0 is the out-of-vocabulary row; the table has
            ``len(vocabulary) + 1`` rows, so ``num_embeddings`` is not given). ``identity``: the value is an integer
            in ``[0, num_embeddings)`` used as it is (anything else is an error naming file, row and column).
        min_count: With ``vocab``: values seen fewer times in the train split are out of vocabulary (default 1).
        max_size: With ``vocab``: keep at most this many values, the most frequent (default: no limit).

    A missing or empty cell gives an empty bag (length 0); unseen ids are never an error (except with ``identity``).
    """

    name: str
    column: str
    dim: int
    num_embeddings: int | None = None
    table: str | None = None
    separator: str | None = None
    boundaries: tuple[float, ...] | None = None
    ids: IdMode = "hash"
    min_count: int | None = None
    max_size: int | None = None

    def __post_init__(self) -> None:
        _check_name("sparse feature name", self.name)
        if self.ids not in ("hash", "vocab", "identity"):
            raise ValueError(f"ids must be hash, vocab or identity, got {self.ids!r}")
        if self.boundaries is not None and self.ids != "hash":
            raise ValueError("`boundaries` already gives exact ids; `ids` must stay hash (the default)")
        if self.ids != "vocab" and (self.min_count is not None or self.max_size is not None):
            raise ValueError("min_count and max_size are only used with ids: vocab")
        if self.ids == "vocab":
            if self.num_embeddings is not None:
                raise ValueError("with ids: vocab the table size is the fitted vocabulary's (+1 for out-of-vocabulary "
                                 "ids); remove num_embeddings (cap the vocabulary with max_size)")
            if self.min_count is not None and self.min_count < 1:
                raise ValueError(f"min_count must be >= 1, got {self.min_count}")
            if self.max_size is not None and self.max_size < 1:
                raise ValueError(f"max_size must be >= 1, got {self.max_size}")
        if self.table is not None:
            _check_name("table name", self.table)
        if self.dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {self.dim}")
        if self.boundaries is not None:
            if self.separator is not None:
                raise ValueError("`boundaries` and `separator` cannot be combined")
            b = self.boundaries
            if not b or any(not math.isfinite(x) for x in b) or any(x >= y for x, y in itertools.pairwise(b)):
                raise ValueError(f"boundaries must be finite and strictly increasing, got {list(b)}")
            if self.num_embeddings is None:
                object.__setattr__(self, "num_embeddings", len(b) + 1)
            elif self.num_embeddings != len(b) + 1:
                raise ValueError(
                    f"num_embeddings must be len(boundaries) + 1 = {len(b) + 1} with boundaries, got "
                    f"{self.num_embeddings}"
                )
        if self.num_embeddings is None and self.ids != "vocab":
            raise ValueError("num_embeddings is required (except with `boundaries` or ids: vocab)")
        if self.num_embeddings is not None and self.num_embeddings <= 0:
            raise ValueError(f"num_embeddings must be a positive integer, got {self.num_embeddings}")
        if self.separator == "":
            raise ValueError("separator must be a non-empty string")

    @property
    def table_name(self) -> str:
        """The embedding table this feature looks up."""
        return self.table or self.name

    def table_key(self) -> tuple[object, ...]:
        """What features sharing a table must agree on."""
        return (self.num_embeddings, self.dim, self.ids, self.min_count, self.max_size)


@dataclass(frozen=True)
class DenseFeature:
    """A numeric feature, one column of the ``[B, D]`` dense input.

    Attributes:
        name: The feature name.
        column: The source column.
        transform: ``none``, ``log1p`` or ``standardize`` (``(x - mean) / std``).
        fill: The value used for a missing cell (before the transform). Without it a missing cell is an error.
        mean: With ``standardize``: a fixed mean; otherwise it is computed from the training split.
        std: With ``standardize``: a fixed standard deviation (given together with ``mean``).
    """

    name: str
    column: str
    transform: Transform = "none"
    fill: float | None = None
    mean: float | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        _check_name("dense feature name", self.name)
        if self.fill is not None and not math.isfinite(self.fill):
            raise ValueError(f"fill must be a finite number, got {self.fill}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.mean is not None and self.transform != "standardize":
            raise ValueError("mean/std are only used with transform: standardize")
        if self.std is not None and not (self.std > 0 and math.isfinite(self.std)):
            raise ValueError(f"std must be a positive finite number, got {self.std}")


@dataclass(frozen=True)
class Task:
    """A binary task.

    Attributes:
        name: The task name.
        column: The label column.
        positive: The label is 1 when the cell equals one of these (numbers compare numerically, strings as text).
        negative: Optional: the values that mean 0. When given, a cell in neither list is an error.
        threshold: Alternatively, the label is 1 when the cell, a number, exceeds this.
        weight: A constant per-example weight for this task (the ``weights[t]`` row of a batch).
        weight_column: Optional numeric column multiplied into the weight.
    """

    name: str
    column: str
    positive: tuple[float | str, ...] | None = None
    negative: tuple[float | str, ...] | None = None
    threshold: float | None = None
    weight: float = 1.0
    weight_column: str | None = None

    def __post_init__(self) -> None:
        _check_name("task name", self.name)
        if (self.positive is None) == (self.threshold is None):
            raise ValueError("exactly one of `positive` and `threshold` is required")
        if self.positive is not None and not self.positive:
            raise ValueError("positive must list at least one value")
        if self.negative is not None and self.positive is None:
            raise ValueError("`negative` is only used with `positive`")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight must be a non-negative finite number, got {self.weight}")


@dataclass(frozen=True)
class Join:
    """A side table joined to the log on a key column (a left join: rows without a match get missing values).

    Attributes:
        path: The side table file (CSV/TSV/Parquet, optionally ``.gz``), relative to ``data_root``; a glob must
            match exactly one file.
        key: The key column in the log.
        side_key: The key column in the side table (default: the same name). Keys must be unique there.
        columns: The side-table columns to use (default: every column the schema reads that the log lacks). They
            must not clash with log columns.
        delimiter: The CSV delimiter (default: from the file name).
    """

    path: str
    key: str
    side_key: str | None = None
    columns: tuple[str, ...] | None = None
    delimiter: str | None = None

    @property
    def side_column(self) -> str:
        """The key column in the side table."""
        return self.side_key or self.key


class TableSpec(NamedTuple):
    """One embedding table: what an ``EmbeddingBagConfig`` needs."""

    name: str
    num_embeddings: int
    dim: int
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSchema:
    """How to read a tabular data set and turn its rows into batches.

    Attributes:
        tasks: The binary tasks, in the order of the ``[T, B]`` label rows.
        sparse: Categorical features, in KJT key order.
        dense: Numeric features, in the column order of the ``[B, D]`` dense matrix.
        group: The column holding the group id for GAUC (usually the user id). Optional.
        time: The time/date column used by time splits. Optional.
        format: ``csv``, ``tsv`` or ``parquet``; inferred from each file name when absent. ``.gz`` CSV is read too.
        delimiter: The CSV field delimiter (default ``,`` for csv, tab for tsv).
        header: Whether CSV files start with a header row.
        columns: The column names of CSV files without a header (required then, not allowed otherwise).
        strip: Trim whitespace around text cells.
        null_values: Text cells that mean "missing" (an empty cell always does).
        files: Data files or globs, relative to ``data_root``.
        data_root: The directory relative paths resolve against (see the module docstring).
        joins: Side tables joined on a key column.
        description: Free text.
    """

    tasks: tuple[Task, ...]
    sparse: tuple[SparseFeature, ...] = ()
    dense: tuple[DenseFeature, ...] = ()
    group: str | None = None
    time: str | None = None
    format: Format | None = None
    delimiter: str | None = None
    header: bool = True
    columns: tuple[str, ...] | None = None
    strip: bool = False
    null_values: tuple[str, ...] = DEFAULT_NULL_VALUES
    files: tuple[str, ...] = ()
    data_root: str | None = None
    joins: tuple[Join, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("at least one task is required")
        seen: dict[str, str] = {}
        named: tuple[tuple[str, tuple[SparseFeature | DenseFeature | Task, ...]], ...] = (
            ("sparse", self.sparse), ("dense", self.dense), ("tasks", self.tasks))
        for kind, items in named:
            for i, item in enumerate(items):
                if item.name in seen:
                    raise ValueError(f"{kind}[{i}]: name {item.name!r} is already used by {seen[item.name]}")
                seen[item.name] = f"{kind}[{i}]"
        tables: dict[str, tuple[int, SparseFeature]] = {}
        for i, f in enumerate(self.sparse):
            if f.table_name in tables:
                j, g = tables[f.table_name]
                if g.table_key() != f.table_key():
                    raise ValueError(
                        f"sparse[{i}] ({f.name}) shares table {f.table_name!r} with sparse[{j}] ({g.name}) but has "
                        f"num_embeddings/dim/ids/min_count/max_size {'/'.join(map(str, f.table_key()))} instead of "
                        f"{'/'.join(map(str, g.table_key()))}"
                    )
            else:
                tables[f.table_name] = (i, f)
        if self.header and self.columns is not None:
            raise ValueError("`columns` names the columns of header-less files; it needs header: false")
        if not self.header and not self.columns:
            raise ValueError("header: false needs `columns` (the column names)")
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise ValueError("`columns` has duplicate names")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {self.delimiter!r}")
        for k, join in enumerate(self.joins):
            if join.delimiter is not None and len(join.delimiter) != 1:
                raise ValueError(f"joins[{k}].delimiter must be one character, got {join.delimiter!r}")

    # ----------------------------------------------------------------------------------------- views for the model
    @property
    def task_names(self) -> tuple[str, ...]:
        """Task names in label-row order."""
        return tuple(t.name for t in self.tasks)

    @property
    def sparse_feature_names(self) -> tuple[str, ...]:
        """Sparse feature names in KJT key order."""
        return tuple(f.name for f in self.sparse)

    @property
    def dense_feature_names(self) -> tuple[str, ...]:
        """Dense feature names in dense-column order."""
        return tuple(f.name for f in self.dense)

    @property
    def num_dense(self) -> int:
        """D, the width of the dense input."""
        return len(self.dense)

    @property
    def num_tasks(self) -> int:
        """T, the number of tasks."""
        return len(self.tasks)

    def tables(self, vocab_sizes: Mapping[str, int] | None = None) -> tuple[TableSpec, ...]:
        """One entry per embedding table, in order of first use, with the features that look it up.

        Args:
            vocab_sizes: ``table -> rows`` of the ``ids: vocab`` tables (``FittedTransform.vocab_sizes()``): their
                size comes from the fitted vocabulary.

        Raises:
            ValueError: For a vocabulary table missing from ``vocab_sizes``.
        """
        out = []
        for name, fs in self.table_features().items():
            rows = fs[0].num_embeddings
            if fs[0].ids == "vocab":
                if vocab_sizes is None or name not in vocab_sizes:
                    raise ValueError(f"table {name!r} uses ids: vocab; its size comes from the fitted transform")
                rows = vocab_sizes[name]
            out.append(TableSpec(name, rows, fs[0].dim, tuple(f.name for f in fs)))  # type: ignore[arg-type]
        return tuple(out)

    def table_features(self) -> dict[str, list[SparseFeature]]:
        """``table name -> features looking it up``, in order of first use."""
        order: dict[str, list[SparseFeature]] = {}
        for f in self.sparse:
            order.setdefault(f.table_name, []).append(f)
        return order

    @property
    def vocab_tables(self) -> dict[str, list[SparseFeature]]:
        """The ``ids: vocab`` tables and their features: one vocabulary per table is fitted on the train split."""
        return {name: fs for name, fs in self.table_features().items() if fs[0].ids == "vocab"}

    # --------------------------------------------------------------------------------------------- column lookups
    @property
    def dense_to_fit(self) -> tuple[DenseFeature, ...]:
        """The ``standardize`` features without a fixed mean: their statistics come from the train split."""
        return tuple(f for f in self.dense if f.transform == "standardize" and f.mean is None)

    def resolve(self, path: str) -> Path:
        """Resolves a path of the schema against ``data_root``."""
        p = Path(path).expanduser()
        if p.is_absolute() or self.data_root is None:
            return p
        return Path(self.data_root) / p


def load_schema(path: str | Path, data_root: str | Path | None = None) -> DatasetSchema:
    """Loads a schema YAML file strictly and resolves its ``data_root``.

    Args:
        path: The schema file.
        data_root: Overrides the schema's ``data_root`` (relative to the current directory).

    Returns:
        The schema, with ``data_root`` an absolute path.

    Raises:
        ConfigError: Naming the file and key of any schema violation.
    """
    path = Path(path)
    schema = load_yaml(DatasetSchema, path)
    return with_data_root(schema, data_root, base=path.resolve().parent)


def with_data_root(schema: DatasetSchema, data_root: str | Path | None, base: Path) -> DatasetSchema:
    """Returns ``schema`` with an absolute ``data_root``: ``data_root`` if given, else the schema's, against ``base``.

    Args:
        schema: A schema.
        data_root: An override (relative to the current directory), or None.
        base: The directory a relative schema ``data_root`` resolves against (the schema file's directory).

    Returns:
        The schema with ``data_root`` set to an absolute path.
    """
    if data_root is not None:
        root = Path(data_root).expanduser().resolve()
    elif schema.data_root is None:
        root = base
    else:
        root = (base / Path(schema.data_root).expanduser()).resolve()
    return dataclasses.replace(schema, data_root=str(root))


def column_roles(schema: DatasetSchema) -> tuple[dict[str, str], dict[str, str]]:
    """Which columns the schema reads, what for, and whether they are purely numeric.

    Args:
        schema: A schema.

    Returns:
        ``(uses, kinds)``: ``uses[column]`` names the first schema key that reads it (for error messages);
        ``kinds[column]`` is ``"number"`` when every use is numeric (dense, bucketised, threshold, weight), else
        ``"text"``.
    """
    uses: dict[str, str] = {}
    kinds: dict[str, str] = {}

    def add(column: str, use: str, kind: str) -> None:
        uses.setdefault(column, use)
        kinds[column] = "text" if kinds.get(column, kind) == "text" or kind == "text" else "number"

    if schema.group:
        add(schema.group, "group", "text")
    if schema.time:
        add(schema.time, "time", "text")
    for i, f in enumerate(schema.sparse):
        add(f.column, f"sparse[{i}] ({f.name})", "number" if f.boundaries else "text")
    for i, d in enumerate(schema.dense):
        add(d.column, f"dense[{i}] ({d.name})", "number")
    for i, t in enumerate(schema.tasks):
        add(t.column, f"tasks[{i}] ({t.name})", "number" if t.threshold is not None else "text")
        if t.weight_column:
            add(t.weight_column, f"tasks[{i}].weight_column", "number")
    for i, j in enumerate(schema.joins):
        add(j.key, f"joins[{i}].key", "text")
    return uses, kinds
