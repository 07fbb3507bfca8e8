"""Prediction inputs: sharing work across ranks, files without labels, bad rows and columns, package integrity."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from smes_rec.data.schema import DataError
from smes_rec.serving.export import export_checkpoint
from smes_rec.serving.package import read_manifest, verify_package
from smes_rec.serving.predict import PredictConfig, predict, rank_share


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_rank_share_is_an_ordered_balanced_partition(world_size: int) -> None:
    rng = np.random.default_rng(world_size)
    for _ in range(50):
        counts = rng.integers(0, 40, size=rng.integers(0, 12)).tolist()
        shares = [rank_share(counts, r, world_size) for r in range(world_size)]
        assert [i for s in shares for i in s] == list(range(len(counts)))  # every item once, in order
        total = sum(counts)
        for r, s in enumerate(shares):  # each item's middle row lies in its rank's equal share of the rows
            for i in s:
                middle = sum(counts[:i]) + counts[i] / 2
                assert r * total / world_size <= middle <= (r + 1) * total / world_size or total == 0
    equal = [rank_share([10] * 8, r, world_size) for r in range(world_size)]
    assert max(len(s) for s in equal) - min(len(s) for s in equal) <= 1


@pytest.fixture(scope="module")
def package(tiny_runs: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("predict_pkg") / "pkg"
    export_checkpoint(tiny_runs("smes"), out, embeddings="fp32")
    return out


def _log_rows(package: Path, n: int) -> pa.Table:
    """The first ``n`` rows of the run's first log file (the columns the model reads, labels included)."""
    data_root = Path(read_manifest(package)["data"]["cache_dir"])
    first = sorted(data_root.rglob("log/part-*.parquet"))[0]
    return pq.read_table(first).slice(0, n)


def test_csv_without_labels_or_with_bad_labels_scores_like_the_parquet_with_them(package: Path, tmp_path: Path) -> None:
    table = _log_rows(package, 300)
    tasks = read_manifest(package)["tasks"]
    pq.write_table(table, tmp_path / "with_labels.parquet")
    unlabeled = table.drop_columns([c for c in tasks if c in table.column_names])
    assert len(unlabeled.column_names) < len(table.column_names)
    pacsv.write_csv(unlabeled, tmp_path / "no_labels.csv")
    # Labels are not read when scoring: even unparseable label cells change nothing.
    garbage = table
    for t in tasks:
        if t in garbage.column_names:
            garbage = garbage.set_column(garbage.column_names.index(t), t, pa.array(["oops"] * garbage.num_rows))
    pacsv.write_csv(garbage, tmp_path / "garbage_labels.csv")
    for name in ("with_labels.parquet", "no_labels.csv", "garbage_labels.csv"):
        predict(PredictConfig(model=str(package), out=str(tmp_path / f"{name}.out.parquet"),
                              data=(str(tmp_path / name),), keep=("user_id",), batch_size=64, progress=False))
    a, b = (pq.read_table(tmp_path / f"{n}.out.parquet") for n in ("with_labels.parquet", "no_labels.csv"))
    assert a.column_names == ["file", "row", "user_id", *(f"p_{t}" for t in tasks)]
    assert a.column("row").to_pylist() == list(range(300)) == b.column("row").to_pylist()
    c = pq.read_table(tmp_path / "garbage_labels.csv.out.parquet")
    for t in tasks:
        assert np.abs(a.column(f"p_{t}").to_numpy() - b.column(f"p_{t}").to_numpy()).max() <= 1e-6
        assert np.abs(a.column(f"p_{t}").to_numpy() - c.column(f"p_{t}").to_numpy()).max() <= 1e-6


def test_bad_cell_names_file_row_and_column(package: Path, tmp_path: Path) -> None:
    table = _log_rows(package, 50)
    dense_column = json.loads((package / "transform" / "transform.json").read_text())["schema"]["dense"]
    log_dense = [f["column"] for f in dense_column if f["column"] in table.column_names]
    assert log_dense, "the synthetic log has dense columns"
    col = log_dense[0]
    cells = [str(v) for v in table.column(col).to_pylist()]
    cells[16] = "not-a-number"
    bad = table.set_column(table.column_names.index(col), col, pa.array(cells))
    pacsv.write_csv(bad, tmp_path / "bad.csv")
    with pytest.raises(DataError, match=rf"bad\.csv: row 17 \(line 18\), column '{col}'"):
        predict(PredictConfig(model=str(package), out=str(tmp_path / "o.parquet"), data=(str(tmp_path / "bad.csv"),),
                              progress=False))
    with pytest.raises(DataError, match="--keep column 'nope' is not in the file"):
        predict(PredictConfig(model=str(package), out=str(tmp_path / "o.parquet"), data=(str(tmp_path / "bad.csv"),),
                              keep=("nope",), progress=False))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        predict(PredictConfig(model=str(package), out=str(tmp_path / "o.parquet"), data=(str(tmp_path / "*.tsv"),),
                              progress=False))
    assert not (tmp_path / "o.parquet").exists()


def test_package_manifest_lists_every_file_and_catches_changes(package: Path, tmp_path: Path) -> None:
    manifest = read_manifest(package)
    files = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files and {"model.pt", "example_inputs.pt", "transform/transform.json"} <= files
    assert manifest["source"]["step"] == 40 and manifest["versions"]["torch"] == torch.__version__
    assert manifest["export_check"]["max_abs_diff_vs_checkpoint"] <= 1e-5
    verify_package(package)
    copy = tmp_path / "pkg"
    import shutil

    shutil.copytree(package, copy)
    (copy / "transform" / "transform.json").write_text((copy / "transform" / "transform.json").read_text() + " ")
    with pytest.raises(ValueError, match=r"changed transform/transform.json"):
        verify_package(copy)
