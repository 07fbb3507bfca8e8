"""An opened data set: schema, scanned files and units, column plan, split assignment, fitted transform, and row
reading.

``DataSource`` is built once per process (rank) from a ``DataConfig`` and handed (pickled or forked) to the
DataLoader workers, which build their own feature processor and side tables lazily. It composes the steps of the
flow: ``schema.py`` (load) → ``files.py`` (list, scan into units) → ``joins.py`` (column plan) → ``cells.py`` (read
units) → ``splits.py`` (which rows belong to a split) → ``features.py`` (process); the transform is fitted on the
train split by ``fitting.py``. Training stores it in every checkpoint; evaluation and scoring pass it to
``DataSource.open`` and fit nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from smes_rec.data.cache import default_cache_dir
from smes_rec.data.cells import read_unit
from smes_rec.data.config import SPLITS, DataConfig, SplitConfig
from smes_rec.data.features import FeatureProcessor
from smes_rec.data.files import FileCache, FileInfo, RowContext, Unit, resolve_files, scan_file
from smes_rec.data.fitted import FittedTransform, TransformError
from smes_rec.data.fitting import fit_columns, fit_transform, load_or_fit, stats_path
from smes_rec.data.joins import ColumnPlan
from smes_rec.data.schema import DataError, DatasetSchema, load_schema, with_data_root
from smes_rec.data.splits import random_split, time_split, time_split_from_stats
from smes_rec.data.synthetic import ensure_synthetic, synthetic_schema
from smes_rec.utils.config import ConfigError

__all__ = ["DataSource"]

_SPLIT_NAMES = (*SPLITS, "all")


class DataSource:
    """A data set ready to be read by units.

    Use ``DataSource.open(cfg)`` or ``DataSource.from_schema(schema, ...)``.

    Attributes:
        schema: The schema (absolute ``data_root``).
        files: The scanned files.
        units: All units of all files, file by file.
        plan: Which columns come from the log and which from side tables.
        split: The split configuration.
        cache_dir: Where statistics are cached.
        file_cache: Line indexes, gzip states and open Parquet files of its files (bounded; see ``files.py``).
    """

    def __init__(
        self,
        schema: DatasetSchema,
        files: tuple[FileInfo, ...],
        units: tuple[Unit, ...],
        plan: ColumnPlan,
        split: SplitConfig,
        cache_dir: Path,
        fitted: FittedTransform | None = None,
        file_cache: FileCache | None = None,
    ) -> None:
        self.schema, self.files, self.units, self.plan = schema, files, units, plan
        self.file_cache = file_cache if file_cache is not None else FileCache()
        self.split, self.cache_dir = split, cache_dir
        self.time_column = _time_column(split, schema)
        self.read_columns = plan.log_columns + tuple(
            c for c in [self.time_column] if c is not None and c not in plan.log_columns
        )
        self.kinds = dict(plan.kinds)
        if self.time_column:
            self.kinds[self.time_column] = plan.kinds.get(self.time_column, "text")
        self._counts: dict[str, np.ndarray] = {}
        self._fitted = fitted
        self._processor: FeatureProcessor | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_processor"] = None  # rebuilt in each worker
        return state

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def open(cls, cfg: DataConfig, fitted: FittedTransform | None = None,
             file_cache: FileCache | None = None) -> DataSource:
        """Opens the data set a ``DataConfig`` names (generating the synthetic data on first use).

        Args:
            cfg: The data config.
            fitted: The transform fitted at training (evaluation, scoring): used as it is, nothing is fitted.
                None: fitted on this data's train split when first needed (training).
            file_cache: A cache to share with other sources of the same files (default: a new one).

        Returns:
            The data source.
        """
        cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
        if cfg.schema == "synthetic":
            root = ensure_synthetic(cfg.synthetic, cache_dir)
            schema = with_data_root(synthetic_schema(cfg.synthetic), cfg.data_root or root, base=Path.cwd())
        else:
            schema = load_schema(cfg.schema, cfg.data_root)
        return cls.from_schema(schema, cfg.files, cfg.split, cache_dir, cfg.csv_unit_rows, fitted, file_cache)

    @classmethod
    def from_schema(
        cls,
        schema: DatasetSchema,
        files: Sequence[str] = (),
        split: SplitConfig | None = None,
        cache_dir: Path | None = None,
        unit_rows: int = 65536,
        fitted: FittedTransform | None = None,
        file_cache: FileCache | None = None,
    ) -> DataSource:
        """Scans the files of a loaded schema.

        Args:
            schema: A schema with an absolute ``data_root`` (as ``load_schema`` returns).
            files: Overrides ``schema.files``.
            split: The split (default: random 0.8/0.1/0.1).
            cache_dir: The cache directory (default: ``default_cache_dir()``).
            unit_rows: Lines per CSV unit.
            fitted: The transform fitted at training; None: fit it on the train split when first needed.
            file_cache: Where scanning leaves what reading needs again (default: a new ``FileCache``).

        Returns:
            The data source.

        Raises:
            ConfigError: For missing files or columns.
            DataError: For unreadable files.
            TransformError: When ``fitted`` lacks statistics or a vocabulary the schema needs.
        """
        split = split or SplitConfig()
        file_cache = file_cache if file_cache is not None else FileCache()
        infos: list[FileInfo] = []
        units: list[Unit] = []
        for i, (path, name) in enumerate(resolve_files(schema, files)):
            info, us = scan_file(path, name, i, schema, unit_rows, file_cache)
            infos.append(info)
            units.extend(us)
        plan = ColumnPlan.build(schema, infos[0].column_names, infos[0].path)
        time_column = _time_column(split, schema)
        if split.by == "time" and not time_column:
            raise ConfigError("split.column: a time split needs a column (set split.column or `time` in the schema)")
        for info in infos:
            present = set(info.column_names)
            for c in (*plan.log_columns, *([time_column] if time_column else [])):
                if c not in present:
                    use = plan.uses.get(c, "split.column")
                    raise DataError(f"{info.path}: missing column {c!r} (used by {use}); the file has columns "
                                    f"{list(info.column_names)}")
        if fitted is not None:  # it must hold everything the schema fits
            missing = [f"dense feature {f.name!r}" for f in schema.dense_to_fit if f.name not in fitted.dense]
            missing += [f"vocabulary of table {t!r}" for t in schema.vocab_tables if t not in fitted.vocabularies]
            if missing:
                raise TransformError(f"the fitted transform has no {', no '.join(missing)}: the schema fits more than "
                                     "the model was trained with")
        return cls(schema, tuple(infos), tuple(units), plan, split, cache_dir or default_cache_dir(), fitted,
                   file_cache)

    # ----------------------------------------------------------------------------------------------- processing
    @property
    def processor(self) -> FeatureProcessor:
        """The feature processor (side tables loaded, dense statistics resolved), built once per process."""
        if self._processor is None:
            self._processor = FeatureProcessor(self.schema, self.plan, self.fitted_transform())
        return self._processor

    @property
    def num_rows(self) -> int:
        """Rows in all files."""
        return sum(u.num_rows for u in self.units)

    def read_unit(self, u: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Reads unit ``u`` (the log columns the schema and the split need, or ``columns``)."""
        unit = self.units[u]
        return read_unit(self.files[unit.file], unit, columns or self.read_columns, self.kinds,
                         self.schema.null_values, self.file_cache)

    def read(self, u: int, split: str, start: int = 0, stop: int | None = None,
             table: pa.Table | None = None) -> tuple[pa.Table, RowContext]:
        """Reads rows ``[start, stop)`` of the rows of unit ``u`` that belong to ``split`` (log columns only).

        Args:
            u: The unit.
            split: ``train``, ``valid``, ``test`` or ``all``.
            start: First row, counted among the unit's rows of the split.
            stop: End row (None: all).
            table: The unit's table if already read.

        Returns:
            The table and where its rows come from.
        """
        unit = self.units[u]
        table = table if table is not None else self.read_unit(u)
        rows = self.split_rows(u, split, table)[start:stop]
        if len(rows) != table.num_rows:
            table = table.take(pa.array(rows))
        return table, RowContext(self.files[unit.file], unit.row_start + rows)

    # ---------------------------------------------------------------------------------------------------- splits
    def split_rows(self, u: int, split: str, table: pa.Table | None = None) -> np.ndarray:
        """The local row indices of unit ``u`` that belong to ``split`` (``all``: every row)."""
        if split not in _SPLIT_NAMES:
            raise ValueError(f"split must be one of {list(_SPLIT_NAMES)}, got {split!r}")
        n = self.units[u].num_rows
        if split == "all":
            return np.arange(n)
        return np.flatnonzero(self._assign(u, table) == SPLITS.index(split))

    def split_counts(self, split: str) -> np.ndarray:
        """Rows of ``split`` in each unit (computed once; a time split reads only the time column)."""
        if split not in self._counts:
            if split == "all":
                self._counts[split] = np.array([u.num_rows for u in self.units], dtype=np.int64)
            else:
                counts = np.zeros((len(self.units), 3), dtype=np.int64)
                for u in range(len(self.units)):
                    counts[u] = self._unit_counts(u)
                for s, name in enumerate(SPLITS):
                    self._counts[name] = counts[:, s]
        return self._counts[split]

    def _unit_counts(self, u: int) -> np.ndarray:
        quick = self._time_counts_from_stats(u) if self.time_column else None
        if quick is not None:
            return quick
        return np.bincount(self._assign(u, None), minlength=3)

    def _assign(self, u: int, table: pa.Table | None) -> np.ndarray:
        """``[n]`` int8 split index (0 train, 1 valid, 2 test) of each row of unit ``u``."""
        unit = self.units[u]
        info = self.files[unit.file]
        if self.split.by == "random":
            return random_split(info.name, unit.row_start, unit.num_rows, self.split)
        assert self.time_column is not None
        if table is None or self.time_column not in table.column_names:
            table = self.read_unit(u, [self.time_column])
        ctx = RowContext(info, np.arange(unit.row_start, unit.row_start + unit.num_rows))
        return time_split(table.column(self.time_column), ctx, self.time_column, self.split, self.schema.null_values)

    def _time_counts_from_stats(self, u: int) -> np.ndarray | None:
        """Counts from Parquet row-group min/max when a whole row group falls in one split."""
        unit = self.units[u]
        info = self.files[unit.file]
        if info.format != "parquet" or self.time_column is None:
            return None
        meta = self.file_cache.parquet_file(info.path).metadata
        return time_split_from_stats(meta, unit.start, info.column_names.index(self.time_column), unit.num_rows,
                                     self.split)

    # ------------------------------------------------------------------------------------------ fitted transform
    def fitted_transform(self) -> FittedTransform:
        """What the train split fits (``standardize`` statistics, vocabularies): the one given to ``open``, else
        fitted once and cached on disk (see ``fitting.py``)."""
        if self._fitted is None:
            if not self.schema.dense_to_fit and not self.schema.vocab_tables:
                self._fitted = FittedTransform()
            else:
                path = stats_path(self.cache_dir, self.schema, self.plan, self.files, self.split)
                self._fitted = load_or_fit(path, self.fit_transform)
        return self._fitted

    def fit_transform(self, split: str = "train") -> FittedTransform:
        """One streaming pass over ``split`` fitting the transform (no cache; see ``fitting.fit_transform``).

        Raises:
            DataError: When the split has no rows to fit on.
        """
        return fit_transform(self.schema, self.plan, self._chunks(split), split, self.files)

    def _chunks(self, split: str) -> Iterator[tuple[pa.Table, RowContext]]:
        """The rows of ``split``, unit by unit, with only the columns fitting reads."""
        wanted = fit_columns(self.schema) | {self.time_column}
        columns = [c for c in self.read_columns if c in wanted]
        counts = self.split_counts(split)
        for u in range(len(self.units)):
            if counts[u]:
                yield self.read(u, split, table=self.read_unit(u, columns))


def _time_column(split: SplitConfig, schema: DatasetSchema) -> str | None:
    """The column a time split reads (``split.column``, else the schema's ``time``); None for a random split."""
    return (split.column or schema.time) if split.by == "time" else None
