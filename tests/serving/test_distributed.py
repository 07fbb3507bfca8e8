"""A checkpoint saved by two processes exports and serves like any other; prediction splits across two processes."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from smes_rec.serving.checkpoint import load_checkpoint
from smes_rec.serving.export import export_checkpoint
from smes_rec.serving.predict import PredictConfig, predict
from smes_rec.serving.scorer import load_scorer
from tests.dist import run_workers
from tests.serving.helpers import MODEL_OVERRIDES, eager_probs, max_abs_diff, score_isolated, split_requests


def _train_worker(rank: int, world_size: int, workdir: Path, cache: str) -> None:
    from smes_rec.train.app import run
    from tests.evaluation.helpers import tiny_config

    run(tiny_config(workdir / "run", Path(cache), *MODEL_OVERRIDES, "schedule.max_steps=4",
                    "schedule.checkpoint_every=4"), progress=False)


def _predict_worker(rank: int, world_size: int, workdir: Path, model: str, out: str) -> None:
    outcome = predict(PredictConfig(model=model, out=out, split="test", keep=("user_id",), batch_size=100,
                                    unit_rows=1000, progress=False))
    (workdir / f"rows_rank{rank}.txt").write_text(f"{outcome.rows} {outcome.total_rows}")


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory, serving_cache: Path) -> Path:
    workdir = tmp_path_factory.mktemp("serving_two_ranks")
    run_workers(_train_worker, 2, workdir, str(serving_cache))
    return workdir / "run"


@pytest.mark.dist
def test_two_process_checkpoint_exports_with_fp32_parity(two_rank_run: Path, tmp_path: Path) -> None:
    manifest = export_checkpoint(two_rank_run, tmp_path / "pkg", embeddings="fp32")
    assert manifest["source"]["world_size"] == 2
    requests = split_requests(load_scorer(tmp_path / "pkg"))
    isolated = score_isolated(tmp_path / "pkg", requests, tmp_path)
    assert isolated["loaded"] == []
    assert max_abs_diff(isolated["requests"], eager_probs(load_checkpoint(two_rank_run), requests)) <= 1e-5

    # Two prediction processes write one file equal to the one-process output (same rows, same order).
    one = tmp_path / "one.parquet"
    predict(PredictConfig(model=str(tmp_path / "pkg"), out=str(one), split="test", keep=("user_id",),
                          batch_size=100, unit_rows=1000, progress=False))
    two = tmp_path / "two.parquet"
    run_workers(_predict_worker, 2, tmp_path / "workers", str(tmp_path / "pkg"), str(two))
    a, b = pq.read_table(one), pq.read_table(two)
    assert a.num_rows > 100 and a.equals(b)
    counts = [tuple(map(int, (tmp_path / "workers" / f"rows_rank{r}.txt").read_text().split())) for r in (0, 1)]
    assert all(c[0] > 0 for c in counts) and sum(c[0] for c in counts) == a.num_rows == counts[0][1]
    assert not (tmp_path / "two.parquet.parts").exists()
