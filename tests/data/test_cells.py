"""Files and cells (`files.py`, `cells.py`): CSV and Parquet agree, files larger than a unit stream correctly, text
variants, and bad input."""

from __future__ import annotations

import datetime
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from smes_rec.data import files
from smes_rec.data.cells import iter_batches
from smes_rec.data.config import DataConfig, SplitConfig
from smes_rec.data.files import FileInfo
from smes_rec.data.loader import build_dataloader
from smes_rec.data.schema import DataError
from smes_rec.data.source import DataSource
from smes_rec.utils.config import ConfigError
from tests.data.helpers import write_both, write_schema


def _table(n: int, seed: int = 0) -> pa.Table:
    """Mixed types with missing values: int and text ids, multi-valued text, floats, 0/1 labels."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, 50, n)
    tags = ["|".join(str(t) for t in rng.integers(0, 9, k)) for k in rng.integers(0, 4, n)]
    price = rng.lognormal(2, 1, n)
    missing = rng.random(n) < 0.1
    return pa.table({
        "row": pa.array(np.arange(n)),
        "item": pa.array(item, mask=rng.random(n) < 0.05),
        "city": pa.array([f"c{v}" for v in rng.integers(0, 7, n)]),
        "tags": pa.array(tags),
        "price": pa.array(price, mask=missing),
        "click": pa.array(rng.integers(0, 2, n)),
        "rating": pa.array(rng.random(n) * 5),
    })


SCHEMA = {
    "files": ["data.parquet"],
    "group": "row",
    "tasks": [
        {"name": "click", "column": "click", "positive": [1], "negative": [0]},
        {"name": "good", "column": "rating", "threshold": 2.5},
    ],
    "sparse": [
        {"name": "item", "column": "item", "num_embeddings": 64, "dim": 4},
        {"name": "city", "column": "city", "num_embeddings": 16, "dim": 4},
        {"name": "tags", "column": "tags", "num_embeddings": 32, "dim": 4, "separator": "|"},
        {"name": "price_bucket", "column": "price", "dim": 4, "boundaries": [5, 10, 20]},
    ],
    "dense": [
        {"name": "price", "column": "price", "transform": "log1p", "fill": 0},
        {"name": "price_std", "column": "price", "transform": "standardize", "fill": 1},
    ],
}


def _batches(schema_path: Path, files: list[str], which: str = "train", **cfg) -> list:
    base = {"batch_size": 32, "num_workers": 0, "cache_dir": str(schema_path.parent / "cache"), **cfg}
    config = DataConfig(schema=str(schema_path), files=tuple(files), **base)
    return list(build_dataloader(config, which))


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.sparse_features.keys() == y.sparse_features.keys()
        assert torch.equal(x.sparse_features.values(), y.sparse_features.values())
        assert torch.equal(x.sparse_features.lengths(), y.sparse_features.lengths())
        assert torch.equal(x.sparse_features.offsets(), y.sparse_features.offsets())
        for name in ("dense_features", "labels", "weights", "group_ids"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name


def test_csv_and_parquet_give_identical_batches(tmp_path: Path) -> None:
    write_both(_table(700), tmp_path, row_group_rows=64)
    schema = tmp_path / "schema.yaml"
    write_schema(schema, SCHEMA)
    # Same unit sizes on both sides (CSV line runs = Parquet row groups), so even the shuffled order is the same.
    parquet = _batches(schema, ["data.parquet"], csv_unit_rows=64, shuffle=True, seed=5)
    csv = _batches(schema, ["data.csv"], csv_unit_rows=64, shuffle=True, seed=5)
    _assert_same(parquet, csv)
    assert len(parquet) == int(700 * 0.8) // 32 or abs(len(parquet) - 700 * 0.8 / 32) < 3
    # Shuffled: rows are not in file order.
    rows = torch.cat([b.group_ids for b in parquet]).tolist()
    assert rows != sorted(rows)


def test_csv_larger_than_a_unit_streams_every_row_once_in_order(tmp_path: Path) -> None:
    table = _table(1000, seed=1)
    write_both(table, tmp_path)
    schema = tmp_path / "schema.yaml"
    write_schema(schema, SCHEMA)
    whole = _batches(schema, ["data.parquet"], which="all", shuffle=False, batch_size=40)
    units = _batches(schema, ["data.csv"], which="all", shuffle=False, batch_size=40, csv_unit_rows=37,
                     block_rows=120)
    _assert_same(whole, units)
    assert torch.cat([b.group_ids for b in units]).tolist() == list(range(1000))


def test_gzip_csv_with_checkpoints_and_several_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table(600, seed=2)
    write_both(table, tmp_path)
    text = (tmp_path / "data.csv").read_bytes()
    cut = text.index(b"\n", len(text) // 2) + 1
    (tmp_path / "data.csv.gz").write_bytes(gzip.compress(text[:cut]) + gzip.compress(text[cut:]))
    monkeypatch.setattr(files, "_GZ_CHECKPOINT", 2048)  # many zlib checkpoints for a small file
    monkeypatch.setattr(files, "_GZ_READ", 512)
    schema = tmp_path / "schema.yaml"
    write_schema(schema, SCHEMA)
    plain = _batches(schema, ["data.parquet"], which="all", shuffle=False, batch_size=50)
    cfg = DataConfig(schema=str(schema), files=("data.csv.gz",), batch_size=50, num_workers=0,
                     cache_dir=str(tmp_path / "cache"), shuffle=False, csv_unit_rows=45)
    source = DataSource.open(cfg)
    gz = list(build_dataloader(cfg, "all", source=source))
    _assert_same(plain, gz)
    assert len(source.file_cache) > 0  # the scan left the line index and zlib states for the reads
    checkpoints = source.file_cache.gzip_checkpoints(str(tmp_path / "data.csv.gz"))
    assert len(checkpoints) > 5


def test_text_variants(tmp_path: Path) -> None:
    """Header-less TSV with CRLF, padded cells, blank trailing lines and no final line break."""
    rows = ["1\t a \t3.5\t1", "2\tb\t\t0", "3\t a\t7\t1"]
    (tmp_path / "x.tsv").write_bytes(("\r\n".join(rows) + "\r\n\r\n\n").encode())
    (tmp_path / "y.tsv").write_bytes("\n".join(rows).encode())
    schema = tmp_path / "schema.yaml"
    write_schema(schema, {
        "header": False, "columns": ["id", "tag", "v", "y"], "strip": True, "group": "id",
        "tasks": [{"name": "y", "column": "y", "positive": [1]}],
        "sparse": [{"name": "tag", "column": "tag", "num_embeddings": 1 << 20, "dim": 4}],
        "dense": [{"name": "v", "column": "v", "fill": -1}],
    })
    for name in ("x.tsv", "y.tsv"):
        (batch,) = _batches(schema, [name], which="all", shuffle=False, batch_size=3)
        assert batch.group_ids.tolist() == [1, 2, 3]
        assert batch.dense_features[:, 0].tolist() == [3.5, -1.0, 7.0]
        ids = batch.sparse_features.values().tolist()
        assert ids[0] == ids[2] != ids[1]  # " a " and " a" strip to the same id
        assert batch.labels.tolist() == [[1, 0, 1]]


# ----------------------------------------------------------------------------------------------------- bad input
BAD_SCHEMA = {
    "files": ["bad.csv"],
    "group": "user",
    "tasks": [
        {"name": "click", "column": "click", "positive": [1], "negative": [0]},
        {"name": "good", "column": "rating", "threshold": 3},
    ],
    "sparse": [{"name": "item", "column": "item", "num_embeddings": 100, "dim": 4}],
    "dense": [{"name": "price", "column": "price", "transform": "log1p"}],
}


def _bad_csv(tmp_path: Path, bad_row: int, **cells: str) -> Path:
    """200 good rows (data rows 1..200) with the cells of data row ``bad_row`` replaced."""
    header = "user,item,price,click,rating"
    lines = [header]
    for r in range(1, 201):
        row = {"user": str(r % 17), "item": f"i{r}", "price": str(r * 1.5), "click": str(r % 2), "rating": "4"}
        if r == bad_row:
            row.update(cells)
        lines.append(",".join(row[c] for c in header.split(",") if row.get(c) is not None))
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"price": "abc"}, "column 'price': 'abc' is not a number"),
        ({"price": "-5"}, "column 'price': value -5.0 gives nan after transform 'log1p'"),
        ({"price": "inf"}, "column 'price': value inf gives inf after transform 'log1p'"),
        ({"price": ""}, "column 'price': missing value for dense feature 'price' (set `fill`"),
        ({"click": "yes"}, "column 'click': label 'yes' is neither positive [1.0] nor negative [0.0]"),
        ({"click": ""}, "column 'click': missing label for task 'click'"),
        ({"rating": "high"}, "column 'rating': 'high' is not a number"),
        ({"user": ""}, "column 'user': missing group id"),
    ],
)
def test_bad_cells_name_file_row_and_column(tmp_path: Path, cells: dict, message: str) -> None:
    path = _bad_csv(tmp_path, 150, **cells)
    schema = tmp_path / "schema.yaml"
    write_schema(schema, BAD_SCHEMA)
    with pytest.raises(DataError) as e:
        _batches(schema, ["bad.csv"], which="all", csv_unit_rows=64, batch_size=16)
    assert f"{path}: row 150 (line 151)" in str(e.value)
    assert message in str(e.value)


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    path = _bad_csv(tmp_path, 99, rating=None)
    schema = tmp_path / "schema.yaml"
    write_schema(schema, BAD_SCHEMA)
    with pytest.raises(DataError) as e:
        _batches(schema, ["bad.csv"], which="all", csv_unit_rows=64, batch_size=16)
    assert f"{path}: row 99 (line 100): expected 5 fields, got 4" in str(e.value)


def test_out_of_vocabulary_ids_are_never_errors(tmp_path: Path) -> None:
    _bad_csv(tmp_path, 10, item="never-seen-before-\u00e9\u00e8")
    schema = tmp_path / "schema.yaml"
    write_schema(schema, BAD_SCHEMA)
    batches = _batches(schema, ["bad.csv"], which="all", batch_size=50)
    ids = torch.cat([b.sparse_features.values() for b in batches])
    assert len(ids) == 200 and int(ids.min()) >= 0 and int(ids.max()) < 100


def test_missing_columns(tmp_path: Path) -> None:
    _bad_csv(tmp_path, 1)
    schema = tmp_path / "schema.yaml"
    write_schema(schema, {**BAD_SCHEMA, "dense": [{"name": "weight", "column": "weight_kg", "fill": 0}]})
    with pytest.raises(ConfigError) as e:
        _batches(schema, ["bad.csv"], which="all")
    assert "dense[0] (weight): column 'weight_kg' is not in" in str(e.value) and "bad.csv" in str(e.value)
    # A later file lacking a column the first one has.
    write_schema(schema, BAD_SCHEMA)
    (tmp_path / "more.csv").write_text("user,item,price,click\n1,a,2,1\n")
    with pytest.raises(DataError) as e:
        _batches(schema, ["bad.csv", "more.csv"], which="all")
    assert f"{tmp_path / 'more.csv'}: missing column 'rating' (used by tasks[1] (good))" in str(e.value)


def test_parquet_bad_cells_name_row_and_column(tmp_path: Path) -> None:
    table = pa.table({"user": [1, 2, 3], "item": ["a", "b", "c"], "price": ["1.5", "2", "cheap"],
                      "click": [1, 0, 1], "rating": [4.0, 1.0, 5.0]})
    pq.write_table(table, tmp_path / "bad.parquet")
    schema = tmp_path / "schema.yaml"
    write_schema(schema, {**BAD_SCHEMA, "files": ["bad.parquet"]})
    with pytest.raises(DataError) as e:
        _batches(schema, ["bad.parquet"], which="all", batch_size=3)
    assert f"{tmp_path / 'bad.parquet'}: row 3, column 'price': 'cheap' is not a number" in str(e.value)


def test_side_table_join_and_its_errors(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("user,item,click\n1,a,1\n2,b,0\n9,c,1\n1,d,0\n")
    (tmp_path / "users.csv").write_text("user_id,age,city\n1,30,x\n2,,y\n3,50,z\n")
    schema = tmp_path / "schema.yaml"
    mapping = {
        "files": ["log.csv"], "group": "user",
        "joins": [{"path": "users.csv", "key": "user", "side_key": "user_id"}],
        "tasks": [{"name": "click", "column": "click", "positive": [1]}],
        "sparse": [{"name": "city", "column": "city", "num_embeddings": 1 << 20, "dim": 4},
                   {"name": "item", "column": "item", "num_embeddings": 8, "dim": 4}],
        "dense": [{"name": "age", "column": "age", "fill": -1}],
    }
    write_schema(schema, mapping)
    (batch,) = _batches(schema, ["log.csv"], which="all", shuffle=False, batch_size=4)
    # User 9 has no match and user 2 has no age: both take `fill`; no match also gives an empty city bag.
    assert batch.dense_features[:, 0].tolist() == [30, -1, -1, 30]
    assert batch.sparse_features["city"].lengths().tolist() == [1, 1, 0, 1]
    city = batch.sparse_features["city"].values().tolist()
    assert city[0] == city[2] != city[1]
    (tmp_path / "users.csv").write_text("user_id,age,city\n1,30,x\n2,40,y\n1,50,z\n")
    with pytest.raises(DataError) as e:
        _batches(schema, ["log.csv"], which="all", batch_size=4)
    assert f"{tmp_path / 'users.csv'}: row 3 (line 4), column 'user_id': join key '1' already appears in row 1" \
        in str(e.value)
    mapping["dense"] = [{"name": "age", "column": "age"}]
    (tmp_path / "users.csv").write_text("user_id,age,city\n1,30,x\n2,40,y\n")
    write_schema(schema, mapping)
    with pytest.raises(DataError) as e:
        _batches(schema, ["log.csv"], which="all", batch_size=4)
    assert f"{tmp_path / 'log.csv'}: row 3 (line 4), column 'age': missing value" in str(e.value)
    assert "joins[0]" in str(e.value)


def test_split_by_time(tmp_path: Path) -> None:
    n = 300
    table = pa.table({"row": np.arange(n), "day": 20220401 + np.arange(n) % 10, "click": np.arange(n) % 2})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=50)
    schema = tmp_path / "schema.yaml"
    write_schema(schema, {"files": ["t.parquet"], "group": "row", "time": "day",
                          "tasks": [{"name": "click", "column": "click", "positive": [1]}]})
    split = SplitConfig(by="time", valid_start=20220408, test_start=20220410)
    seen = {}
    for name in ("train", "valid", "test"):
        batches = _batches(schema, ["t.parquet"], which=name, batch_size=10, split=split, shuffle=False)
        rows = [r for b in batches for r in b.group_ids.tolist() if r >= 0]
        seen[name] = rows
        days = table.column("day").to_numpy()[rows]
        lo, hi = {"train": (0, 20220408), "valid": (20220408, 20220410), "test": (20220410, 10**9)}[name]
        assert ((days >= lo) & (days < hi)).all()
    assert len(seen["train"]) == 210 and len(seen["valid"]) == 60 and len(seen["test"]) == 30


def test_split_by_a_date_column_and_a_bound_that_is_no_date(tmp_path: Path) -> None:
    n = 40
    days = [datetime.date(2022, 4, 1) + datetime.timedelta(days=int(d)) for d in np.arange(n) % 10]
    pq.write_table(pa.table({"row": np.arange(n), "day": pa.array(days, pa.date32()), "click": np.arange(n) % 2}),
                   tmp_path / "d.parquet")
    schema = tmp_path / "schema.yaml"
    write_schema(schema, {"files": ["d.parquet"], "group": "row", "time": "day",
                          "tasks": [{"name": "click", "column": "click", "positive": [1]}]})
    valid = _batches(schema, ["d.parquet"], which="valid", batch_size=4, shuffle=False,
                     split=SplitConfig(by="time", valid_start="2022-04-08", test_start="2022-04-10"))
    rows = [r for b in valid for r in b.group_ids.tolist() if r >= 0]
    assert sorted(rows) == [r for r in range(n) if r % 10 in (7, 8)]
    with pytest.raises(ConfigError, match=r"cannot compare 'next week' with column 'day' of type date32"):
        _batches(schema, ["d.parquet"], which="valid", batch_size=4, shuffle=False,
                 split=SplitConfig(by="time", valid_start="next week"))


def test_parquet_list_columns_are_multi_valued(tmp_path: Path) -> None:
    table = pa.table({
        "hist": pa.array([[1, 2], [], None, [3, None]], pa.list_(pa.int64())),
        "words": pa.array([["a"], ["b", "a"], [], None], pa.list_(pa.string())),
        "y": [1, 0, 1, 0],
    })
    pq.write_table(table, tmp_path / "l.parquet")
    schema = tmp_path / "schema.yaml"
    write_schema(schema, {
        "files": ["l.parquet"], "tasks": [{"name": "y", "column": "y", "positive": [1]}],
        "sparse": [{"name": "hist", "column": "hist", "num_embeddings": 1 << 30, "dim": 4},
                   {"name": "words", "column": "words", "num_embeddings": 1 << 30, "dim": 4}],
    })
    (batch,) = _batches(schema, ["l.parquet"], which="all", shuffle=False, batch_size=4)
    kjt = batch.sparse_features
    assert kjt["hist"].lengths().tolist() == [2, 0, 0, 1]  # a null list and a null element are missing
    assert kjt["words"].lengths().tolist() == [1, 2, 0, 0]
    hist, words = kjt["hist"].values().tolist(), kjt["words"].values().tolist()
    assert len(set(hist)) == 3 and words[0] == words[2] != words[1]
    assert batch.group_ids.tolist() == [0, 0, 0, 0]  # no group column


@pytest.mark.parametrize("bad_line", [3, 150])
def test_streaming_conversion_names_the_line_of_a_row_with_too_many_fields(tmp_path: Path, bad_line: int) -> None:
    path = tmp_path / "log.csv"
    lines = ["a,b", *(f"{i},{i}" for i in range(bad_line + 10))]
    lines[bad_line - 1] = "1,2,3"  # line numbers count the header
    path.write_text("\n".join(lines) + "\n")
    info = FileInfo(str(path), "log.csv", "csv", False, ",", True, ("a", "b"), len(lines) - 1,
                    path.stat().st_size, 0)
    with pytest.raises(DataError) as e:
        for _ in iter_batches(info, None, {"a": "number", "b": "number"}, (), batch_rows=1000):
            pass
    assert f"{path}: line {bad_line}: expected 2 fields, got 3" in str(e.value)
