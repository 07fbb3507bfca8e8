"""The data CLI: validate prints statistics or a precise error; convert writes equivalent Parquet shards."""

from __future__ import annotations

import gzip
import importlib.util
import io
from pathlib import Path

import torch

from smes_rec.data.config import DataConfig
from smes_rec.data.loader import build_dataloader
from tests.data.helpers import REPO_ROOT, write_schema

_spec = importlib.util.spec_from_file_location("prepare", REPO_ROOT / "apps" / "prepare.py")
prepare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare)

SCHEMA = {
    "files": ["log.csv.gz"],
    "group": "user",
    "joins": [{"path": "users.csv", "key": "user"}],
    "tasks": [{"name": "click", "column": "click", "positive": ["yes"], "negative": ["no"]}],
    "sparse": [{"name": "item", "column": "item", "num_embeddings": 64, "dim": 4},
               {"name": "tags", "column": "tags", "num_embeddings": 16, "dim": 4, "separator": ";"},
               {"name": "city", "column": "city", "num_embeddings": 16, "dim": 4}],
    "dense": [{"name": "price", "column": "price", "transform": "standardize", "fill": 0}],
}


def _write(tmp_path: Path, bad: bool = False, quoted_newline: bool = True) -> Path:
    rows = ["user,item,tags,price,click"]
    for r in range(300):
        click = "yes" if r % 3 == 0 else "no"
        if bad and r == 250:
            click = "maybe"
        # A quoted field with a line break: the streaming converter handles it.
        tags = '"a;b\nc"' if r == 5 and quoted_newline else f"t{r % 4};t{r % 7}"
        rows.append(f"{r % 20},item{r % 30},{tags},{r * 0.5},{click}")
    (tmp_path / "log.csv.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    (tmp_path / "users.csv").write_text("user,city\n" + "\n".join(f"{u},c{u % 3}" for u in range(20)) + "\n")
    path = tmp_path / "schema.yaml"
    write_schema(path, SCHEMA)
    return path


def test_validate_prints_statistics(tmp_path: Path) -> None:
    path = _write(tmp_path, quoted_newline=False)
    out = io.StringIO()
    rows = prepare.validate(str(path), out=out)
    text = out.getvalue()
    assert rows == 300
    assert "rows    300  groups 20" in text
    assert "  click                       click                            100  33.3333%" in text
    assert "price" in text and "standardize" in text


def test_validate_reports_bad_rows(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, bad=True, quoted_newline=False)
    assert prepare.main(["validate", "--schema", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'log.csv.gz'}: row 251 (line 252), column 'click': label 'maybe' is neither" in err
    # A quoted line break: the indexed reader refuses the file and points to `convert`.
    path = _write(tmp_path)
    assert prepare.main(["validate", "--schema", str(path)]) == 1
    err = capsys.readouterr().err
    assert "convert the file to Parquet" in err and str(tmp_path / "log.csv.gz") in err


def test_convert_writes_equivalent_parquet(tmp_path: Path) -> None:
    path = _write(tmp_path)
    out = tmp_path / "parquet"
    assert prepare.main(["convert", "--schema", str(path), "--out", str(out), "--row-group-rows", "64",
                         "--rows-per-file", "128"]) == 0
    shards = sorted(out.glob("part-*.parquet"))
    assert len(shards) == 3 and (out / "schema.yaml").exists() and list(out.glob("side-0-*.parquet"))
    converted = list(build_dataloader(DataConfig(schema=str(out / "schema.yaml"), batch_size=50, num_workers=0,
                                                 shuffle=False, cache_dir=str(tmp_path / "c")), "all"))
    assert len(converted) == 6
    tags = torch.cat([b.sparse_features["tags"].lengths() for b in converted])
    assert tags[5] == 2 and bool((tags[torch.arange(300) != 5] == 2).all())  # "a;b\nc" splits into "a", "b\nc"
    labels = torch.cat([b.labels[0] for b in converted])
    assert labels.tolist() == [1.0 if r % 3 == 0 else 0.0 for r in range(300)]
    assert torch.cat([b.group_ids for b in converted]).tolist() == [r % 20 for r in range(300)]
    city = torch.cat([b.sparse_features["city"].values() for b in converted])
    assert len(city) == 300 and len(torch.unique(city)) == 3


def test_synthetic_command_writes_the_heterogeneous_kind_and_names_a_bad_knob(tmp_path: Path, capsys) -> None:
    import pyarrow.parquet as pq

    args = ["synthetic", "--out", str(tmp_path / "h"), "--num-rows", "3000", "--num-users", "100", "--num-items",
            "300", "--kind", "heterogeneous", "--relatedness", "-0.5", "--num-segments", "2"]
    assert prepare.main(args) == 0
    assert pq.read_table(tmp_path / "h" / "log").num_rows == 3000
    assert prepare.main([*args[:3], "--segment-shift", "1.5"]) == 1
    assert "segment_shift must be in [0, 1], got 1.5" in capsys.readouterr().err
