"""A checkpoint written by a 2-process run: evaluated unsharded in one process, sharded on 2 ranks through a model
built without optimizers and the eval pipeline, and by ``Trainer.evaluate`` itself; all the same numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.dist import run_workers
from tests.evaluation.helpers import tiny_config

FIELDS = ("auc", "gauc", "gauc_uniform", "num_groups", "log_loss", "ne", "calibration", "positive_rate",
          "num_examples")


def _train_and_evaluate_worker(rank: int, world_size: int, workdir: Path, cache: str) -> None:
    import torch

    from smes_rec.evaluation.app import EvalConfig, evaluate_checkpoint
    from smes_rec.train.build import Placement, build_for_training
    from smes_rec.train.data import LoaderSource
    from smes_rec.train.distributed import init_distributed
    from smes_rec.train.loop import Trainer
    from smes_rec.utils.config import to_mapping

    cfg = tiny_config(workdir / "run", Path(cache))
    ctx = init_distributed("cpu")
    torch.manual_seed(cfg.seed)
    data = LoaderSource(cfg.data, ctx.rank, ctx.world_size)
    built = build_for_training(cfg.model, data, cfg.optim, Placement(cfg.sharding, ctx.device, cfg.data.batch_size))
    trainer = Trainer(data, built, schedule=cfg.schedule, ctx=ctx, output_dir=workdir / "run",
                      config_record=to_mapping(cfg), progress=False)
    trainer.fit()
    by_trainer = trainer.evaluate("valid")
    if rank == 0:
        (workdir / "trainer_metrics.json").write_text(json.dumps({t: m._asdict() for t, m in by_trainer.items()}))
    evaluate_checkpoint(EvalConfig(checkpoint=str(workdir / "run"), split="valid", out=str(workdir / "sharded"),
                                   mode="sharded", predictions=True, progress=False))


def _same(a: float | None, b: float | None) -> bool:
    a = math.nan if a is None else a
    b = math.nan if b is None else b
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory, eval_cache: Path) -> Path:
    workdir = tmp_path_factory.mktemp("two_ranks")
    run_workers(_train_and_evaluate_worker, 2, workdir, str(eval_cache))
    return workdir


@pytest.fixture(scope="module")
def unsharded(two_rank_run: Path) -> dict:
    from apps.evaluate import main as evaluate_main

    out = two_rank_run / "unsharded"
    assert evaluate_main(["--checkpoint", str(two_rank_run / "run"), "--split", "valid", "--out", str(out),
                          "--no-progress"]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.dist
def test_unsharded_evaluation_equals_the_two_rank_sharded_one(two_rank_run: Path, unsharded: dict) -> None:
    sharded = json.loads((two_rank_run / "sharded" / "metrics.json").read_text())
    assert unsharded["run"]["world_size_trained"] == 2
    assert sharded["run"]["mode"] == "sharded" and sharded["run"]["world_size_evaluated"] == 2
    for task, m in unsharded["tasks"].items():
        for field in FIELDS:
            got = sharded["tasks"][task][field]
            assert _same(got, m[field]), (task, field, got, m[field])
    for key in ("num_instances", "unique_experts_histogram", "selection", "expert_pairs"):
        assert sharded["routing"][key] == unsharded["routing"][key], key
    # Rank 0 gathered both ranks' predictions: every row of the split once.
    import pyarrow.parquet as pq

    assert pq.read_table(two_rank_run / "sharded" / "predictions.parquet").num_rows == unsharded["routing"][
        "num_instances"]


@pytest.mark.dist
def test_unsharded_evaluation_equals_trainer_evaluate(two_rank_run: Path, unsharded: dict) -> None:
    by_trainer = json.loads((two_rank_run / "trainer_metrics.json").read_text())
    for task, m in unsharded["tasks"].items():
        for field in FIELDS:
            assert _same(by_trainer[task][field], m[field]), (task, field, by_trainer[task][field], m[field])
