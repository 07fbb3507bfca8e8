"""The paper's baselines train end to end through the real app on the tiny config, and apps/evaluate.py scores them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apps.evaluate import main as evaluate_main
from smes_rec.train.checkpoint import CheckpointManager, load_model_weights
from tests.evaluation.helpers import tiny_config, train_in_process

ARCHS = {
    "home": ("model.arch=home",),
    # Stage 1 for 4 steps, stage 2 for the last 4 (checkpoints at steps 4 and 8).
    "mome": ("model.arch=mome", "model.mome_warmup_steps=4", "model.aux_loss_weight=1.0"),
    "rankmixer": ("model.arch=rankmixer", "model.rankmixer_tokens=4", "model.rankmixer_dim=16"),
    "rankmixer_sparse": ("model.arch=rankmixer", "model.rankmixer_tokens=4", "model.rankmixer_dim=16",
                         "model.rankmixer_sparse=true", "model.aux_loss_weight=1.0"),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-data cache for every arch's run."""
    return tmp_path_factory.mktemp("baseline_cache")


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_baseline_trains_and_evaluates(name: str, tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(run, cache, *ARCHS[name])
    train_in_process(cfg)
    summary = json.loads((run / "final_metrics.json").read_text())
    assert summary["step"] == 8

    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(run), "--split", "valid", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["arch"] == name.removesuffix("_sparse")
    for task, m in metrics["tasks"].items():
        assert m["num_examples"] > 0 and (m["auc"] is None or 0.0 <= m["auc"] <= 1.0), task
    assert metrics["routing"]["num_instances"] > 0
    bound = metrics["routing"]["bound"]
    assert bound["sparse"] is (name == "rankmixer_sparse")

    if name == "mome":  # the schedule's step counter is part of the checkpoint: 8 training forwards
        from smes_rec.models.factory import build_ranker
        from smes_rec.train.data import LoaderSource
        from smes_rec.train.wrapper import TrainWrapper

        data = LoaderSource(cfg.data)
        wrapper = TrainWrapper(build_ranker(cfg.model, data.tables, data.feature_names, data.num_dense,
                                            len(data.task_names), "cpu", task_names=data.task_names),
                               [1.0] * len(data.task_names), 1.0)
        load_model_weights(CheckpointManager(run / "checkpoints").latest(), wrapper)
        arch = wrapper.model.dense_model.arch
        assert arch.step.item() == 8 and arch.stage2().item() == 1.0
        assert not torch.equal(arch.frozen_neuron_0, torch.ones_like(arch.frozen_neuron_0))
