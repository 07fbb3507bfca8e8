"""A truncated or corrupt file is an error naming the file in every reader, never fewer rows."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smes_rec.data.cells import iter_batches, read_side_table
from smes_rec.data.files import resolve_join
from smes_rec.data.schema import DataError
from smes_rec.data.source import DataSource
from tests.data.helpers import write_schema

ROWS = 4000


def _lines(start: int, stop: int) -> bytes:
    return "".join(f"{i},item{i % 97},{i % 2}\n" for i in range(start, stop)).encode()


def gzip_cut_at_line_boundary(path: Path) -> int:
    """A gzip CSV whose deflate stream stops (no end block, no trailer) right after a complete line: decompressing
    what is there gives whole lines, half of them. Returns the number of data rows it had."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    head = c.compress(b"user,item,click\n" + _lines(0, ROWS // 2)) + c.flush(zlib.Z_FULL_FLUSH)
    path.write_bytes(head)  # the rest (more lines, the final block and the gzip trailer) is lost
    assert zlib.decompressobj(31).decompress(head).endswith(b"\n")
    return ROWS


def gzip_cut_mid_member(path: Path, members: int = 1) -> None:
    """A gzip CSV (``members`` gzip members back to back) cut in the middle of its last member."""
    per = ROWS // members
    parts = [zlib.compress((b"user,item,click\n" if m == 0 else b"") + _lines(m * per, (m + 1) * per), wbits=31)
             for m in range(members)]
    last = parts[-1]
    path.write_bytes(b"".join(parts[:-1]) + last[: len(last) // 2])


def corrupt_parquet(path: Path) -> None:
    """A Parquet file with zeroed bytes inside its second row group (the footer is intact)."""
    n = 20000
    t = pa.table({"user": np.arange(n), "item": [f"item{i % 97}" for i in range(n)], "click": np.arange(n) % 2})
    pq.write_table(t, path, row_group_size=n // 4)
    data = bytearray(path.read_bytes())
    rg = pq.ParquetFile(path).metadata.row_group(1).column(1)
    start = rg.data_page_offset + 64
    data[start : start + 512] = bytes(512)
    path.write_bytes(bytes(data))


def _schema(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "schema.yaml"
    write_schema(path, {"files": [name], "group": "user",
                        "tasks": [{"name": "click", "column": "click", "positive": [1]}],
                        "sparse": [{"name": "item", "column": "item", "num_embeddings": 64, "dim": 4}]})
    return path


def _read_all(tmp_path: Path, name: str) -> int:
    from smes_rec.data.schema import load_schema

    source = DataSource.from_schema(load_schema(_schema(tmp_path, name)))
    return sum(source.read_unit(u).num_rows for u in range(len(source.units)))


@pytest.mark.parametrize("make", ["line_boundary", "mid_member", "second_member"])
def test_truncated_gzip_csv_is_an_error_in_every_reader(tmp_path: Path, make: str) -> None:
    path = tmp_path / "log.csv.gz"
    if make == "line_boundary":
        gzip_cut_at_line_boundary(path)
    else:
        gzip_cut_mid_member(path, members=1 if make == "mid_member" else 2)
    with pytest.raises(DataError, match=rf"{path}: the gzip data ends early \(a truncated or incomplete file\)"):
        _read_all(tmp_path, path.name)
    from smes_rec.data.files import FileInfo

    info = FileInfo(str(path), path.name, "csv", True, ",", True, ("user", "item", "click"), 0, 0, 0)
    with pytest.raises(DataError, match=rf"{path}: after data row \d+: cannot be read \(a truncated or corrupt file"):
        list(iter_batches(info, None, {}, ("",)))


def test_truncated_gzip_side_table_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("user,item,click\n1,a,1\n")
    gzip_cut_mid_member(tmp_path / "users.csv.gz")
    from smes_rec.data.schema import Join, load_schema

    schema = load_schema(_schema(tmp_path, "log.csv"))
    join = Join("users.csv.gz", "user")
    path = resolve_join(schema, join, 0)
    with pytest.raises(DataError, match=r"users.csv.gz: (cannot read the header line|cannot be read)"):
        read_side_table(path, join, 0, ["user", "item"], {}, schema.null_values)


def test_intact_multi_member_gzip_reads_every_row(tmp_path: Path) -> None:
    per = ROWS // 2
    parts = [zlib.compress((b"user,item,click\n" if m == 0 else b"") + _lines(m * per, (m + 1) * per), wbits=31)
             for m in range(2)]
    (tmp_path / "log.csv.gz").write_bytes(b"".join(parts))
    assert _read_all(tmp_path, "log.csv.gz") == ROWS


def test_corrupt_parquet_is_an_error_naming_file_and_row_group(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    corrupt_parquet(path)
    with pytest.raises(DataError, match=rf"{path}: row group 1 \(rows 5001..10000\) cannot be read, the file is "
                                        "corrupt"):
        _read_all(tmp_path, path.name)
    from smes_rec.data.files import FileInfo

    info = FileInfo(str(path), path.name, "parquet", False, "", False, ("user", "item", "click"), 0, 0, 0)
    with pytest.raises(DataError, match=rf"{path}: after data row 5000: cannot be read, the file is corrupt"):
        list(iter_batches(info, None, {}, ("",), batch_rows=5000))
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(path.read_bytes()[:-100])  # the footer is gone
    with pytest.raises(DataError, match=rf"{cut}: not a readable Parquet file"):
        _read_all(tmp_path, cut.name)
