"""An opened data set: schema, scanned files and units, split assignment, dense statistics, and row reading.

``DataSource`` is built once per process (rank) from a ``DataConfig`` and handed (pickled or forked) to the
DataLoader workers, which build their own feature processor and side tables lazily.

The fitted transform (``fitted.py``): for every ``standardize`` feature without ``mean``/``std`` in the schema, the
mean and (population) standard deviation of the filled raw values over the *train* split, and for every ``ids:
vocab`` table its vocabulary, are fitted in one streaming pass, in file and unit order (dense statistics merged with
Chan's parallel formula in float64). The pass is deterministic, so every rank gets bit-identical numbers; the result
is cached as JSON under ``cache_dir/stats`` keyed by the schema's fitted features, the files (name, size, mtime), the
side tables and the split, and one process per machine computes it while the others wait for the file. Training
stores it in every checkpoint; evaluation and scoring pass it to ``DataSource.open`` and fit nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smes_rec.data.cache import cache_key, default_cache_dir, locked
from smes_rec.data.config import SPLITS, DataConfig, SplitConfig
from smes_rec.data.features import ColumnPlan, FeatureProcessor, parse_numbers
from smes_rec.data.fitted import FittedTransform, TransformError
from smes_rec.data.hashing import fmix64, hash_text
from smes_rec.data.readers import FileInfo, RowContext, Unit, read_unit, resolve_files, resolve_join, scan_file
from smes_rec.data.schema import DataError, DatasetSchema, DenseFeature, load_schema, with_data_root
from smes_rec.data.vocab import VocabCounter
from smes_rec.utils.config import ConfigError

__all__ = ["DataSource"]

_SPLIT_NAMES = (*SPLITS, "all")


def _stem(name: str) -> str:
    """A data file's name without ``.gz`` and its format suffix."""
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".parquet", ".pq"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


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
    ) -> None:
        self.schema, self.files, self.units, self.plan = schema, files, units, plan
        self.split, self.cache_dir = split, cache_dir
        self.time_column = (split.column or schema.time) if split.by == "time" else None
        self.read_columns = plan.log_columns + tuple(
            c for c in [self.time_column] if c is not None and c not in plan.log_columns
        )
        self.kinds = dict(plan.kinds)
        if self.time_column:
            self.kinds[self.time_column] = plan.kinds.get(self.time_column, "text")
        self._counts: dict[str, np.ndarray] = {}
        self._fitted = fitted
        self._processor: FeatureProcessor | None = None
        self._split_salt = fmix64(np.array([split.seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_processor"] = None  # rebuilt in each worker
        return state

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def open(cls, cfg: DataConfig, fitted: FittedTransform | None = None) -> DataSource:
        """Opens the data set a ``DataConfig`` names (generating the synthetic data on first use).

        Args:
            cfg: The data config.
            fitted: The transform fitted at training (evaluation, scoring): used as it is, nothing is fitted.
                None: fitted on this data's train split when first needed (training).

        Returns:
            The data source.
        """
        cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
        if cfg.schema == "synthetic":
            from smes_rec.data.synthetic import ensure_synthetic, synthetic_schema

            root = ensure_synthetic(cfg.synthetic, cache_dir)
            schema = with_data_root(synthetic_schema(cfg.synthetic), cfg.data_root or root, base=Path.cwd())
        else:
            schema = load_schema(cfg.schema, cfg.data_root)
        return cls.from_schema(schema, cfg.files, cfg.split, cache_dir, cfg.csv_unit_rows, fitted)

    @classmethod
    def from_schema(
        cls,
        schema: DatasetSchema,
        files: Sequence[str] = (),
        split: SplitConfig | None = None,
        cache_dir: Path | None = None,
        unit_rows: int = 65536,
        fitted: FittedTransform | None = None,
    ) -> DataSource:
        """Scans the files of a loaded schema.

        Args:
            schema: A schema with an absolute ``data_root`` (as ``load_schema`` returns).
            files: Overrides ``schema.files``.
            split: The split (default: random 0.8/0.1/0.1).
            cache_dir: The cache directory (default: ``default_cache_dir()``).
            unit_rows: Lines per CSV unit.
            fitted: The transform fitted at training; None: fit it on the train split when first needed.

        Returns:
            The data source.

        Raises:
            ConfigError: For missing files or columns.
            DataError: For unreadable files.
            TransformError: When ``fitted`` lacks statistics or a vocabulary the schema needs.
        """
        split = split or SplitConfig()
        infos, units = [], []
        for i, (path, name) in enumerate(resolve_files(schema, files)):
            info, us = scan_file(path, name, i, schema, unit_rows)
            infos.append(info)
            units.extend(us)
        plan = ColumnPlan.build(schema, infos[0].column_names, infos[0].path)
        time_column = (split.column or schema.time) if split.by == "time" else None
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
        return cls(schema, tuple(infos), tuple(units), plan, split, cache_dir or default_cache_dir(), fitted)

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
                         self.schema.null_values)

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
            # A seeded hash of (file name without format suffixes, row): stable across processes, machines, file
            # lists, and a CSV file vs the same rows as Parquet.
            base = fmix64(hash_text(pa.array([_stem(info.name)]))[:1] ^ self._split_salt)[0]
            rows = np.arange(unit.row_start, unit.row_start + unit.num_rows, dtype=np.uint64)
            u01 = (fmix64(rows + base) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
            bounds = np.cumsum(self.split.fractions)[:2]
            return np.searchsorted(bounds, u01, side="right").astype(np.int8)
        assert self.time_column is not None
        if table is None or self.time_column not in table.column_names:
            table = self.read_unit(u, [self.time_column])
        ctx = RowContext(info, np.arange(unit.row_start, unit.row_start + unit.num_rows))
        return self._time_assign(table.column(self.time_column), ctx)

    def _time_assign(self, values: pa.ChunkedArray | pa.Array, ctx: RowContext) -> np.ndarray:
        col = self.time_column
        vs, ts = self.split.valid_start, self.split.test_start
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if isinstance(vs, float):
            x = parse_numbers(values, ctx, col, null_values=self.schema.null_values)
            missing = np.isnan(x)
            out = (x >= vs).astype(np.int8)
            if ts is not None:
                out += (x >= ts).astype(np.int8)
        else:
            t = values.type
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                values = pc.utf8_trim_whitespace(values)
                lo, hi = pa.scalar(vs, t), pa.scalar(ts, t) if ts is not None else None
            elif pa.types.is_temporal(t):
                try:
                    lo = pa.scalar(vs).cast(t)
                    hi = pa.scalar(ts).cast(t) if ts is not None else None
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise ConfigError(f"split.valid_start/test_start: cannot compare {vs!r} with column {col!r} of "
                                      f"type {t}: {e}") from None
            else:
                raise ConfigError(f"split.valid_start: {vs!r} is text but column {col!r} holds {t}; give a number")
            missing = np.asarray(pc.is_null(values))
            out = np.asarray(pc.fill_null(pc.greater_equal(values, lo), False)).astype(np.int8)
            if hi is not None:
                out += np.asarray(pc.fill_null(pc.greater_equal(values, hi), False)).astype(np.int8)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise DataError(f"{ctx.where(i, col)}: missing time value (needed by the time split)")
        return out

    def _time_counts_from_stats(self, u: int) -> np.ndarray | None:
        """Counts from Parquet row-group min/max when a whole row group falls in one split."""
        unit = self.units[u]
        info = self.files[unit.file]
        vs, ts = self.split.valid_start, self.split.test_start
        if info.format != "parquet" or not isinstance(vs, float):
            return None
        from smes_rec.data.readers import _parquet_file

        meta = _parquet_file(info.path).metadata
        idx = info.column_names.index(self.time_column)
        stats = meta.row_group(unit.start).column(idx).statistics
        if stats is None or not stats.has_min_max or stats.null_count:
            return None
        lo, hi = stats.min, stats.max
        if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
            return None
        out = np.zeros(3, dtype=np.int64)
        if hi < vs:
            out[0] = unit.num_rows
        elif lo >= vs and (ts is None or hi < ts):
            out[1] = unit.num_rows
        elif ts is not None and lo >= ts:
            out[2] = unit.num_rows
        else:
            return None
        return out

    # ------------------------------------------------------------------------------------------ fitted transform
    def fitted_transform(self) -> FittedTransform:
        """What the train split fits (``standardize`` statistics, vocabularies): the one given to ``open``, else
        fitted once and cached (see the module doc)."""
        if self._fitted is not None:
            return self._fitted
        schema = self.schema
        if not schema.dense_to_fit and not schema.vocab_tables:
            self._fitted = FittedTransform()
            return self._fitted
        joins = []
        for i, j in enumerate(schema.joins):
            p = resolve_join(schema, j, i)
            st = os.stat(p)
            joins.append((asdict(j), st.st_size, st.st_mtime_ns))
        key = cache_key({
            "version": 2,
            "dense": [(f.name, f.column, f.fill) for f in schema.dense_to_fit],
            "vocab": [(t, [asdict(f) for f in fs]) for t, fs in schema.vocab_tables.items()],
            "files": [(f.name, f.size, f.mtime_ns) for f in self.files],
            "joins": joins,
            "split": asdict(self.split),
            "null_values": schema.null_values,
            "strip": schema.strip,
        })
        path = self.cache_dir / "stats" / f"{key}.json"
        if not path.exists():
            with locked(path):
                if not path.exists():
                    fitted = self.fit_transform()
                    tmp = path.with_suffix(f".tmp{os.getpid()}")
                    tmp.write_text(json.dumps(fitted.to_dict(), indent=1))
                    os.replace(tmp, path)
        self._fitted = FittedTransform.from_dict(json.loads(path.read_text()), source=str(path))
        return self._fitted

    def fit_transform(self, split: str = "train") -> FittedTransform:
        """One streaming pass over ``split`` fitting the transform (no cache).

        Dense statistics: the mean and population standard deviation of the filled raw values, merged unit by unit
        in float64 (Chan et al.); a constant column gets ``std = 1``. Vocabularies: see ``vocab.py``.

        Raises:
            DataError: When the split has no rows to fit on.
        """
        schema = self.schema
        todo = schema.dense_to_fit
        vocab_tables = schema.vocab_tables
        processor = FeatureProcessor(schema, self.plan, None)  # fits nothing, processes nothing fitted
        wanted = ({f.column for f in todo} | {f.column for fs in vocab_tables.values() for f in fs}
                  | {j.key for j in schema.joins} | {self.time_column})
        log_needed = [c for c in self.read_columns if c in wanted]
        acc = {f.name: (0, 0.0, 0.0) for f in todo}  # count, mean, M2
        counters = {t: VocabCounter() for t in vocab_tables}
        counts = self.split_counts(split)
        for u in range(len(self.units)):
            if counts[u] == 0:
                continue
            table, ctx = self.read(u, split, table=self.read_unit(u, log_needed))
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
                for f in fs:
                    counters[t].add(processor.id_cells(f, processor.cells(f.column, table))[0])
        rows = int(counts.sum())
        if rows == 0 and (todo or vocab_tables):
            what = ", ".join([*(f"dense feature {f.name!r}" for f in todo), *(f"vocabulary {t!r}" for t in counters)])
            raise DataError(f"the {split} split has no rows to fit {what} on ({len(self.files)} file(s): "
                            f"{', '.join(f.path for f in self.files[:3])}{' ...' if len(self.files) > 3 else ''})")
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
