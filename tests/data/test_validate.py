"""apps/prepare.py validate: hash collisions, missing counts that agree, visible null_values, header-only files."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.data.helpers import write_schema
from tests.data.test_features import documented_bucket
from tests.data.test_prepare import prepare


def _validate(schema: Path) -> tuple[int, str]:
    out = io.StringIO()
    rows = prepare.validate(str(schema), out=out)
    return rows, out.getvalue()


def _row(text: str, section: str, name: str) -> list[str]:
    """The cells of the line starting with ``name`` in the statistics table whose title starts with ``section``."""
    block = text.split(f"\n{section}", 1)[1].split("\n\n", 1)[0]
    (line,) = [line for line in block.splitlines() if line.startswith(f"  {name} ")]
    return line.split()


def test_hash_collisions_are_counted_exactly(tmp_path: Path) -> None:
    values = [f"cat{i}" for i in range(43)]
    lines = ["tab,ok"] + [f"{v},1" for v in values for _ in range(2)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    sparse = [{"name": "tab", "column": "tab", "num_embeddings": 64, "dim": 4},
              {"name": "tab_exact", "column": "tab", "dim": 4, "ids": "vocab"}]
    schema = tmp_path / "s.yaml"
    write_schema(schema, {"files": ["d.csv"], "tasks": [{"name": "ok", "column": "ok", "positive": [1]}],
                          "sparse": sparse})
    rows, text = _validate(schema)
    assert rows == 86
    used = len({documented_bucket(v, 64) for v in values})  # the documented hash, written out
    assert used < 43
    assert (f"warning: hashing merges {43 - used} distinct values of sparse feature 'tab' (column 'tab'): 43 "
            f"distinct values land in {used} of 64 buckets") in text
    assert _row(text, "sparse", "tab")[3:5] == ["64", str(used)]
    assert _row(text, "sparse", "tab_exact")[2:5] == ["vocab", "44", "43"]  # 43 values + the out-of-vocabulary row
    assert "tab_exact" not in text.split("warning:", 1)[1]


def test_missing_counts_agree_and_the_default_null_values_are_shown(tmp_path: Path) -> None:
    # "NA" (and " NA " once stripped) is missing under the default null_values, whatever the file format.
    city = ["NA", " NA ", "", "paris", "NA", "rome", None, "NULL"]
    table = pa.table({"city": pa.array(city, pa.string()), "price": pa.array(["1", "NA", "3", " 4", "", "6", "7", "8"]),
                      "ok": [1, 0, 1, 0, 1, 0, 1, 0]})
    pq.write_table(table, tmp_path / "d.parquet")
    prices, oks = table["price"].to_pylist(), table["ok"].to_pylist()
    (tmp_path / "d.csv").write_text("city,price,ok\n" + "".join(
        f"{'' if c is None else c},{p},{o}\n" for c, p, o in zip(city, prices, oks, strict=True)))
    for name in ("d.parquet", "d.csv"):
        schema = tmp_path / f"s_{name}.yaml"
        write_schema(schema, {"files": [name], "strip": True,
                              "tasks": [{"name": "ok", "column": "ok", "positive": [1]}],
                              "sparse": [{"name": "city", "column": "city", "num_embeddings": 16, "dim": 4}],
                              "dense": [{"name": "price", "column": "price", "fill": 0}]})
        _, text = _validate(schema)
        assert "are missing values (the default null_values; set `null_values` in the schema" in text
        assert "'NA'" in text.split("nulls", 1)[1].splitlines()[0]
        assert _row(text, "log", "city")[2] == "6", name  # column table: NA, " NA ", "", NA, null, NULL
        assert _row(text, "sparse", "city")[-1] == "6", name  # feature table: the same cells give empty bags
        assert _row(text, "log", "price")[2] == _row(text, "dense", "price")[2] == "2", name


def test_explicit_null_values_keep_na_as_a_category(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("city,ok\nNA,1\nparis,0\n,1\n")
    schema = tmp_path / "s.yaml"
    write_schema(schema, {"files": ["d.csv"], "null_values": [""],
                          "tasks": [{"name": "ok", "column": "ok", "positive": [1]}],
                          "sparse": [{"name": "city", "column": "city", "num_embeddings": 16, "dim": 4}]})
    _, text = _validate(schema)
    assert "text cells [''] are missing values (the schema's null_values)" in text
    assert _row(text, "log", "city")[2] == "1" and _row(text, "sparse", "city")[-1] == "1"


def test_header_only_file_reports_zero_rows_plainly(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("city,x,ok\n")
    schema = tmp_path / "s.yaml"
    write_schema(schema, {"files": ["d.csv"], "tasks": [{"name": "ok", "column": "ok", "positive": [1]}],
                          "sparse": [{"name": "city", "column": "city", "num_embeddings": 16, "dim": 4}],
                          "dense": [{"name": "x", "column": "x", "transform": "standardize"}]})
    rows, text = _validate(schema)
    assert rows == 0
    assert "rows    0: the data files hold no data rows (header only)" in text
    assert not re.search(r"\binf\b", text)
