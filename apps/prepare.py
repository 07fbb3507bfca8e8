"""Data preparation: validate a schema against data files, convert CSV to Parquet shards, write the synthetic data.

Usage (from the repository root):

    python apps/prepare.py validate --schema configs/data/kuairand_subset.yaml
    python apps/prepare.py convert --schema configs/data/kuairand.yaml --out outputs/data/kuairand_parquet
    python apps/prepare.py synthetic --out outputs/data/synthetic --num-rows 1000000

``validate`` runs every row through the same processing as training (so any bad row fails here, naming file, row and
column) and prints per-column, per-feature and per-task statistics. ``convert`` streams CSV/TSV (also gzipped, and
with quoted line breaks) into Parquet shards with small row groups, converts the side tables too, and writes a
``schema.yaml`` for the shards next to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from smes_rec.data.cells import INT64_TEXT, iter_batches, parse_numbers, read_side_table
from smes_rec.data.config import SyntheticConfig
from smes_rec.data.features import FeatureProcessor
from smes_rec.data.files import RowContext, resolve_join, side_table_columns
from smes_rec.data.hashing import bucketize_ids, canonical_ids
from smes_rec.data.schema import DEFAULT_NULL_VALUES, DataError, load_schema
from smes_rec.data.shards import ShardWriter
from smes_rec.data.source import DataSource
from smes_rec.data.synthetic import generate
from smes_rec.utils.config import ConfigError, to_mapping


# --------------------------------------------------------------------------------------------------- validate
def validate(schema_path: str, files: Sequence[str] = (), data_root: str | None = None,
             max_rows: int | None = None, out=sys.stdout) -> int:
    """Processes the data through the schema and prints statistics.

    Missing counts are taken after ``strip`` and ``null_values`` (printed, with a note when they are the default):
    the column table and the feature tables count the same cells. Hashed features whose distinct values share
    buckets get a warning with the count.

    Args:
        schema_path: The schema file.
        files: Data files overriding the schema's.
        data_root: Overrides the schema's data root.
        max_rows: Stop after this many rows.
        out: Where to print.

    Returns:
        The number of rows processed.

    Raises:
        ConfigError, DataError: For a bad schema or bad data.
    """
    schema = load_schema(schema_path, data_root)
    source = DataSource.from_schema(schema, files)
    print(f"schema  {schema_path}", file=out)
    for info in source.files:
        print(f"file    {info.path}  ({info.format}{', gzip' if info.gzip else ''}, {info.num_rows:,} rows, "
              f"{len(info.column_names)} columns)", file=out)
    for i, j in enumerate(schema.joins):
        print(f"join    {resolve_join(schema, j, i)} on {j.key}", file=out)
    default = schema.null_values == DEFAULT_NULL_VALUES
    print(f"nulls   text cells {list(schema.null_values)} are missing values"
          + (" (the default null_values; set `null_values` in the schema if one of them is a real category, "
             "e.g. NA)" if default else " (the schema's null_values)"), file=out)
    if source.num_rows == 0:
        print("rows    0: the data files hold no data rows (header only); nothing to validate", file=out)
        return 0
    # Fitted on every row read here (validate has no train split), so every row goes through the pipeline.
    fitted = source.fit_transform("all")
    processor = FeatureProcessor(schema, source.plan, fitted)
    sizes = {t.name: t.num_embeddings for t in schema.tables(fitted.vocab_sizes())}
    col_stats = {c: _ColumnStats(source.kinds.get(c, "text")) for c in source.plan.log_columns}
    n_sparse = len(schema.sparse)
    ids_per_row = np.zeros(n_sparse)
    empty_rows = np.zeros(n_sparse, dtype=np.int64)
    buckets = [np.zeros(min(sizes[f.table_name], 1 << 24), dtype=bool) for f in schema.sparse]
    hashed = {i: np.zeros(0, np.uint64) for i, f in enumerate(schema.sparse) if f.ids == "hash" and not f.boundaries}
    dense_missing = np.zeros(schema.num_dense, dtype=np.int64)
    dense_sum = np.zeros(schema.num_dense)
    dense_sq = np.zeros(schema.num_dense)
    dense_min = np.full(schema.num_dense, np.inf)
    dense_max = np.full(schema.num_dense, -np.inf)
    positives = np.zeros(schema.num_tasks)
    groups: set[int] = set()
    rows = 0
    for u in range(len(source.units)):
        table, ctx = source.read(u, "all")
        if max_rows is not None and rows + table.num_rows > max_rows:
            table, ctx = source.read(u, "all", 0, max_rows - rows)
        cols = processor(table, ctx)  # first: a bad row stops here with the error training would raise
        for c, st in col_stats.items():
            st.update(processor.clean_cells(table.column(c)), ctx, c, schema.null_values)
        for f, (lengths, values) in enumerate(zip(cols.lengths, cols.values, strict=True)):
            ids_per_row[f] += lengths.sum()
            empty_rows[f] += (lengths == 0).sum()
            buckets[f][values[values < len(buckets[f])]] = True
            if f in hashed and len(hashed[f]) < _MAX_DISTINCT:
                feat = schema.sparse[f]
                hashed[f] = np.union1d(hashed[f], processor.sparse_hashes(feat, processor.cells(feat.column, table)))
        for d, feat in enumerate(schema.dense):
            raw = parse_numbers(processor.cells(feat.column, table), ctx, feat.column, schema.null_values)
            dense_missing[d] += int(np.isnan(raw).sum())
        dense_sum += cols.dense.sum(0, dtype=np.float64)
        dense_sq += (cols.dense.astype(np.float64) ** 2).sum(0)
        if len(cols.dense):
            dense_min = np.minimum(dense_min, cols.dense.min(0))
            dense_max = np.maximum(dense_max, cols.dense.max(0))
        positives += cols.labels.sum(1, dtype=np.float64)
        if len(groups) < 10_000_000:
            groups.update(np.unique(cols.group_ids).tolist())
        rows += table.num_rows
        if max_rows is not None and rows >= max_rows:
            break
    print(f"rows    {rows:,}" + (f"  groups {len(groups):,}" if schema.group else "  (no group column)"), file=out)
    print("\nlog columns (missing: empty or null_values cells, after strip)", file=out)
    print(f"  {'column':<28}{'kind':<8}{'missing':>10}{'distinct':>12}  range / mean", file=out)
    for c, st in col_stats.items():
        kind = "number" if st.kind == "number" else "id"
        print(f"  {c:<28}{kind:<8}{st.missing:>10,}{st.distinct_text():>12}  {st.summary()}", file=out)
    print("\nsparse features (missing: rows with an empty bag)", file=out)
    print(f"  {'feature':<28}{'table':<24}{'ids':<10}{'rows':>10}{'used':>10}{'ids/row':>9}{'missing':>10}",
          file=out)
    for f, feat in enumerate(schema.sparse):
        mode = "bucket" if feat.boundaries else feat.ids
        print(f"  {feat.name:<28}{feat.table_name:<24}{mode:<10}{sizes[feat.table_name]:>10,}"
              f"{int(buckets[f].sum()):>10,}{ids_per_row[f] / rows:>9.2f}{int(empty_rows[f]):>10,}", file=out)
    warnings = []
    for f, h in hashed.items():
        feat = schema.sparse[f]
        used = len(np.unique(bucketize_ids(h, sizes[feat.table_name])))
        if used < len(h):
            more = "+" if len(h) >= _MAX_DISTINCT else ""
            warnings.append(f"warning: hashing merges {len(h) - used:,}{more} distinct values of sparse feature "
                            f"{feat.name!r} (column {feat.column!r}): {len(h):,}{more} distinct values land in "
                            f"{used:,} of {sizes[feat.table_name]:,} buckets; `ids: vocab` (or `ids: identity` for "
                            "small integer ids) gives exact ids")
    print("\ndense features (after transform; missing: cells before `fill`)", file=out)
    print(f"  {'feature':<28}{'transform':<12}{'missing':>10}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}",
          file=out)
    for d, feat in enumerate(schema.dense):
        mean = dense_sum[d] / rows
        std = np.sqrt(max(dense_sq[d] / rows - mean**2, 0.0))
        print(f"  {feat.name:<28}{feat.transform:<12}{int(dense_missing[d]):>10,}{mean:>10.4g}{std:>10.4g}"
              f"{dense_min[d]:>10.4g}{dense_max[d]:>10.4g}", file=out)
    print("\ntasks", file=out)
    print(f"  {'task':<28}{'column':<24}{'positives':>12}{'rate':>10}", file=out)
    for t, task in enumerate(schema.tasks):
        print(f"  {task.name:<28}{task.column:<24}{int(positives[t]):>12,}{positives[t] / rows:>10.4%}", file=out)
    if warnings:
        print("", file=out)
        for w in warnings:
            print(w, file=out)
    return rows


_MAX_DISTINCT = 2_000_000  # distinct values tracked per hashed feature for the collision warning


class _ColumnStats:
    """Streaming statistics of one raw column (cells cleaned as the features see them)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows = self.missing = 0
        self.lo, self.hi, self.total, self.count = np.inf, -np.inf, 0.0, 0
        self.distinct: set[int] | None = set()

    def update(self, values: pa.Array, ctx: RowContext, column: str, null_values: Sequence[str]) -> None:
        self.rows += len(values)
        if self.kind == "number":
            x = parse_numbers(values, ctx, column, null_values)
            self.missing += int(np.isnan(x).sum())
            x = x[~np.isnan(x)]
            if len(x):
                self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
                self.total += float(x.sum())
                self.count += len(x)
        if self.distinct is not None or self.kind != "number":
            key, _, valid = canonical_ids(values)
            if self.kind != "number":
                self.missing += int((~valid).sum())
            if self.distinct is not None:
                self.distinct.update(np.unique(key[valid]).tolist())
                if len(self.distinct) > 1_000_000:
                    self.distinct = None

    def distinct_text(self) -> str:
        return f"{len(self.distinct):,}" if self.distinct is not None else ">1,000,000"

    def summary(self) -> str:
        if self.kind == "number" and self.count:
            return f"[{self.lo:.6g}, {self.hi:.6g}]  mean {self.total / self.count:.6g}"
        return ""


# ---------------------------------------------------------------------------------------------------- convert
def _narrow(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """Stores text columns whose cells are all integers as int64 (ids read faster that way; hashing agrees)."""
    arrays = []
    for col in batch.columns:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        all_ints = (pa.types.is_string(col.type) and len(col) and col.null_count < len(col)
                    and pc.all(pc.fill_null(pc.match_substring_regex(col, INT64_TEXT), True)).as_py())
        if all_ints:
            col = pc.cast(pc.utf8_trim_whitespace(col), pa.int64())
        arrays.append(col)
    return type(batch).from_arrays(arrays, names=batch.schema.names)


def convert(schema_path: str, out_dir: str, files: Sequence[str] = (), data_root: str | None = None,
            rows_per_file: int = 1_000_000, row_group_rows: int = 16384) -> Path:
    """Converts a data set (CSV/TSV, gzipped or not, or Parquet) into Parquet shards plus a schema for them.

    Args:
        schema_path: The schema file.
        out_dir: The output directory.
        files: Data files overriding the schema's.
        data_root: Overrides the schema's data root.
        rows_per_file: Rows per shard (a shard also ends where a column's type changes).
        row_group_rows: Rows per Parquet row group (small groups let ranks and workers split the data finely).

    Returns:
        The path of the schema written for the shards.
    """
    schema = load_schema(schema_path, data_root)
    source = DataSource.from_schema(schema, files)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out, rows_per_file, row_group_rows) as shards:  # a shard also ends where a type changes
        for info in source.files:
            for _, batch in iter_batches(info, None, source.kinds, schema.null_values, row_group_rows):
                shards.write(_narrow(batch))
    joins = []
    for i, j in enumerate(schema.joins):
        path = resolve_join(schema, j, i)
        names = side_table_columns(path, j.delimiter)
        table = read_side_table(path, j, i, names, source.kinds, schema.null_values)
        name = f"side-{i}-{Path(path).name.split('.')[0]}.parquet"
        pq.write_table(_narrow(table), out / name)
        joins.append(dataclasses.replace(j, path=name, delimiter=None))
    converted = dataclasses.replace(schema, format="parquet", files=("part-*.parquet",), data_root=None,
                                    joins=tuple(joins), delimiter=None, header=True, columns=None)
    mapping = to_mapping(converted)
    mapping = {k: v for k, v in mapping.items() if v is not None}
    schema_out = out / "schema.yaml"
    schema_out.write_text(f"# Written by apps/prepare.py convert from {schema_path}\n"
                          + yaml.safe_dump(mapping, sort_keys=False, width=120))
    return schema_out


# ------------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """The command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p_val = sub.add_parser("validate", help="check data against a schema and print statistics", allow_abbrev=False)
    p_conv = sub.add_parser("convert", help="convert a data set to Parquet shards", allow_abbrev=False)
    for p in (p_val, p_conv):
        p.add_argument("--schema", required=True, help="the schema YAML file")
        p.add_argument("--files", nargs="*", default=(), help="data files or globs (default: the schema's)")
        p.add_argument("--data-root", default=None, help="override the schema's data_root")
    p_val.add_argument("--max-rows", type=int, default=None, help="stop after this many rows")
    p_conv.add_argument("--out", required=True, help="output directory")
    p_conv.add_argument("--rows-per-file", type=int, default=1_000_000)
    p_conv.add_argument("--row-group-rows", type=int, default=16384)
    p_syn = sub.add_parser("synthetic", help="write the synthetic data set", allow_abbrev=False)
    p_syn.add_argument("--out", required=True, help="output directory")
    for field in dataclasses.fields(SyntheticConfig):
        kind = {"kind": dict(choices=["kuairand_like", "heterogeneous"]), "relatedness": dict(type=float),
                "segment_shift": dict(type=float)}.get(field.name, dict(type=int))
        p_syn.add_argument(f"--{field.name.replace('_', '-')}", default=field.default, **kind)
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            validate(args.schema, args.files, args.data_root, args.max_rows)
        elif args.command == "convert":
            path = convert(args.schema, args.out, args.files, args.data_root, args.rows_per_file,
                           args.row_group_rows)
            print(f"wrote {path.parent} (schema: {path})")
        else:
            try:
                cfg = SyntheticConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticConfig)})
            except ValueError as e:  # a bad generator parameter: say which, without a traceback
                print(f"error: synthetic: {e}", file=sys.stderr)
                return 1
            files = generate(args.out, cfg, progress=True)
            print(f"wrote {len(files)} log file(s) and side tables to {args.out}")
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # an unreadable or unwritable file: the message names it, no traceback
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
