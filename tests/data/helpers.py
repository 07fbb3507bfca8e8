"""Helpers for data tests: write one small table as CSV and Parquet, and schemas for it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from smes_rec.data.config import SyntheticConfig
from smes_rec.data.schema import DatasetSchema, load_schema

# The repository root (tests/data/helpers.py is two levels below it) and ../shared/data relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The session-wide synthetic data of the `synthetic_dir` fixture.
SMALL_SYNTHETIC = SyntheticConfig(num_rows=60_000, num_users=2_000, num_items=5_000, seed=3, rows_per_file=25_000)


def write_schema(path: Path, mapping: dict) -> DatasetSchema:
    """Writes a schema mapping as YAML and loads it back (strictly)."""
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return load_schema(path)


def write_both(table: pa.Table, directory: Path, name: str = "data", row_group_rows: int = 1 << 20) -> None:
    """Writes ``table`` as ``name.csv`` and ``name.parquet``."""
    directory.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, directory / f"{name}.csv")
    pq.write_table(table, directory / f"{name}.parquet", row_group_size=row_group_rows)
