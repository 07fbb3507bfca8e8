"""Shards (`shards.py`): bounded shard sizes, a new shard where a column's type changes, no empty shard."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from smes_rec.data.shards import ShardWriter


def test_shards_end_when_full_and_where_the_schema_changes(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, rows_per_file=4, row_group_rows=2) as shards:
        shards.write(pa.table({"a": pa.array(range(6), pa.int64())}))
        shards.write(pa.table({"a": pa.array(["x", "y"])}).to_batches()[0])
    assert [p.name for p in shards.files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_table(p).num_rows for p in shards.files] == [4, 2, 2]
    assert pq.read_table(shards.files[2]).column("a").to_pylist() == ["x", "y"]
    assert pq.ParquetFile(shards.files[0]).metadata.num_row_groups == 2


def test_a_fixed_schema_and_an_exact_fill_leave_no_empty_shard(tmp_path: Path) -> None:
    schema = pa.schema([("a", pa.int64())])
    with ShardWriter(tmp_path, rows_per_file=3, row_group_rows=3, schema=schema) as shards:
        for lo in (0, 3):
            shards.write(pa.table({"a": pa.array(range(lo, lo + 3), pa.int64())}))
    assert [pq.read_table(p).column("a").to_pylist() for p in shards.files] == [[0, 1, 2], [3, 4, 5]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
