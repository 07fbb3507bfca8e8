"""Statistics fitted on the train split belong to the model: evaluation reuses them whatever files it reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from apps.evaluate import main as evaluate_main
from smes_rec.data.config import DataConfig
from smes_rec.data.fitted import META_KEY, load_fitted_transform
from smes_rec.data.source import DataSource
from smes_rec.train.checkpoint import CheckpointManager
from tests.faults.data_tiny import train_tiny, write_log, write_schema


def _predictions(checkpoint: Path, out: Path, *sets: str) -> dict[str, np.ndarray]:
    args = ["--checkpoint", str(checkpoint), "--split", "valid", "--out", str(out), "--predictions", "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert evaluate_main(args) == 0
    return {k: np.asarray(v) for k, v in pq.read_table(out / "predictions.parquet").to_pydict().items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run on one CSV file; returns (data folder, latest checkpoint)."""
    root = tmp_path_factory.mktemp("fitted")
    data = root / "data"
    data.mkdir()
    write_log(data / "a.csv", 1200, seed=0)
    schema = write_schema(root / "schema.yaml", data, ["a.csv"])
    train_tiny(root / "run", root / "cache", schema)
    latest = CheckpointManager(root / "run" / "checkpoints").latest()
    assert latest is not None
    return data, latest


def test_the_checkpoint_stores_the_train_split_statistics(trained: tuple[Path, Path]) -> None:
    _, checkpoint = trained
    fitted = load_fitted_transform(checkpoint)
    assert fitted is not None
    cfg = DataConfig(**{k: v for k, v in json.loads((checkpoint / "meta.json").read_text())["config"]["data"].items()
                        if k in ("schema", "cache_dir", "batch_size")})
    source = DataSource.open(cfg, fitted)
    x = np.concatenate([source.read(u, "train")[0].column("x").to_numpy() for u in range(len(source.units))])
    mean, std = fitted.dense["x"]
    assert mean == pytest.approx(x.mean(), rel=1e-12) and std == pytest.approx(x.std(), rel=1e-12)
    assert fitted.num_rows == len(x)


def test_evaluating_other_files_uses_the_stored_statistics(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, checkpoint = trained
    reference = _predictions(checkpoint, tmp_path / "ref")
    # The same rows under the same file name (so the same split rows, in the same order), plus a file whose x is
    # 100 times larger: fitting on these files would move the mean and std far away, and every prediction with them.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data / "a.csv", other / "a.csv")
    write_log(other / "c.csv", 600, seed=1, x_scale=100.0)
    scored = _predictions(checkpoint, tmp_path / "other_eval", f"data.data_root={other}", "data.files=[a.csv, c.csv]",
                          f"data.cache_dir={tmp_path / 'fresh_cache'}")
    n = len(reference["pred_click"])
    assert len(scored["pred_click"]) > n
    for task in ("click", "like"):
        np.testing.assert_array_equal(scored[f"pred_{task}"][:n], reference[f"pred_{task}"])
    assert not (tmp_path / "fresh_cache" / "stats").exists()  # nothing was fitted on the files being scored


def test_a_checkpoint_without_a_stored_transform_refits_on_its_own_training_data(
        trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, checkpoint = trained
    reference = _predictions(checkpoint, tmp_path / "ref")
    old = tmp_path / "old" / "checkpoints" / checkpoint.name
    shutil.copytree(checkpoint, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta[META_KEY]
    (old / "meta.json").write_text(json.dumps(meta))
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data / "a.csv", other / "a.csv")
    write_log(other / "c.csv", 600, seed=1, x_scale=100.0)
    with pytest.warns(UserWarning, match="no stored fitted transform .* refitting it on the train split of the "
                                         "checkpoint's own data config"):
        scored = _predictions(old, tmp_path / "old_eval", f"data.data_root={other}", "data.files=[a.csv, c.csv]")
    n = len(reference["pred_click"])
    np.testing.assert_array_equal(scored["pred_click"][:n], reference["pred_click"])
