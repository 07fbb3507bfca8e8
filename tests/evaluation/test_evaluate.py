"""apps/evaluate.py on a tiny trained checkpoint: metrics.json against independent recomputations, and the report."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from apps.evaluate import main as evaluate_main
from smes_rec.evaluation.checkpoint import resolve_checkpoint
from smes_rec.evaluation.report import FIGURES
from smes_rec.metrics import MultiTaskEvaluator
from smes_rec.train.checkpoint import CheckpointManager, load_model_weights


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _close(a: float | None, b: float) -> bool:
    if a is None:
        return math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@pytest.fixture(scope="module")
def evaluated(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's latest checkpoint evaluated on the valid split, with predictions."""
    out = tmp_path_factory.mktemp("eval") / "valid"
    code = evaluate_main(["--checkpoint", str(tiny_run / "checkpoints"), "--split", "valid", "--out", str(out),
                          "--predictions", "--no-progress"])
    assert code == 0
    return out


def test_metrics_equal_a_recomputation_from_the_predictions(evaluated: Path) -> None:
    summary = _metrics(evaluated)
    table = pq.read_table(evaluated / "predictions.parquet").to_pydict()
    tasks = list(summary["tasks"])
    evaluator = MultiTaskEvaluator(tasks)
    evaluator.update(
        torch.tensor(np.array([table[f"pred_{t}"] for t in tasks])),
        torch.tensor(np.array([table[f"label_{t}"] for t in tasks])),
        torch.tensor(np.array([table[f"weight_{t}"] for t in tasks])),
        torch.tensor(table["group_id"]),
    )
    recomputed = evaluator.compute()
    for task in tasks:
        for field, value in recomputed[task]._asdict().items():
            assert _close(summary["tasks"][task][field], value), (task, field, summary["tasks"][task][field], value)
    # The whole split was evaluated, once per row; padding rows are not in the predictions.
    num_rows = len(table["group_id"])
    assert all(summary["tasks"][t]["num_examples"] == num_rows for t in tasks)
    assert summary["routing"]["num_instances"] == num_rows
    # Routing: the |U| histogram is that of the per-row |U| column; every task picks K experts per instance.
    hist = np.bincount(np.asarray(table["num_unique_experts"]), minlength=len(summary["routing"]["expert_pairs"]) + 1)
    assert hist.tolist() == summary["routing"]["unique_experts_histogram"]
    model = summary["model"]
    k = model["k_shared"] + model["k_adaptive"]
    assert np.asarray(summary["routing"]["selection"]).sum() == len(tasks) * k * num_rows
    assert sum(summary["routing"]["expert_pairs"]) == int(np.sum(table["num_unique_experts"]))
    assert k <= summary["routing"]["mean_unique_experts"] <= summary["routing"]["bound"]["max_unique"]


def test_predictions_equal_an_independent_forward_of_the_checkpoint(tiny_run: Path, evaluated: Path) -> None:
    from smes_rec.evaluation.checkpoint import load_run_config
    from smes_rec.models.factory import build_ranker
    from smes_rec.train.data import LoaderSource
    from smes_rec.train.wrapper import TrainWrapper

    checkpoint = CheckpointManager(tiny_run / "checkpoints").latest()
    cfg = load_run_config(CheckpointManager.read_meta(checkpoint))
    data = LoaderSource(cfg.data)
    wrapper = TrainWrapper(build_ranker(cfg.model, data.tables, data.feature_names, data.num_dense,
                                        len(data.task_names), "cpu"), [1.0] * len(data.task_names), 0.0)
    load_model_weights(checkpoint, wrapper)
    wrapper.eval()
    probs, groups = [], []
    with torch.no_grad():
        for batch in data.batches("valid", 0, 0):
            keep = batch.weights.sum(0) > 0
            probs.append(wrapper(batch)[1].probs_TB[:, keep])
            groups.append(batch.group_ids[keep])
    table = pq.read_table(evaluated / "predictions.parquet").to_pydict()
    probs_TN = torch.cat(probs, dim=1)
    expected = np.array([table[f"pred_{t}"] for t in data.task_names])
    np.testing.assert_allclose(probs_TN.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert torch.cat(groups).tolist() == table["group_id"]
    assert int(data.source.split_counts("valid").sum()) == probs_TN.size(1)


def test_report_files_exist_and_reference_the_charts(evaluated: Path) -> None:
    report = (evaluated / "report.md").read_text()
    for name in FIGURES.values():
        png = evaluated / name
        assert png.is_file() and png.stat().st_size > 1000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report
    summary = _metrics(evaluated)
    for task, m in summary["tasks"].items():
        assert f"| {task} | " in report
        assert f"{m['auc']:.4f}" in report
    assert "SMES bound K_s + T*K_a" in report


def test_checkpoint_forms_and_default_output_folder(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    latest = run / "checkpoints" / "step_000000008"
    earlier = run / "checkpoints" / "step_000000004"
    assert resolve_checkpoint(run) == latest
    assert resolve_checkpoint(run / "checkpoints") == latest
    assert resolve_checkpoint(earlier) == earlier
    assert evaluate_main(["--checkpoint", str(earlier), "--split", "valid", "--max-batches", "2", "--no-progress"]) == 0
    summary = _metrics(run / "eval_valid")
    assert summary["run"]["step"] == 4 and summary["run"]["num_batches"] == 2
    assert all(m["num_examples"] <= 2 * 128 for m in summary["tasks"].values())


def test_sharded_mode_in_one_process_matches_unsharded(tiny_run: Path, evaluated: Path, tmp_path: Path) -> None:
    import torch.distributed as dist

    try:
        code = evaluate_main(["--checkpoint", str(tiny_run), "--split", "valid", "--out", str(tmp_path),
                              "--mode", "sharded", "--no-progress"])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert code == 0
    sharded, unsharded = _metrics(tmp_path), _metrics(evaluated)
    assert sharded["run"]["mode"] == "sharded"
    for task, m in unsharded["tasks"].items():
        for field, value in m.items():
            assert _close(sharded["tasks"][task][field], value if value is not None else math.nan), (task, field)
    for key in ("unique_experts_histogram", "selection", "expert_pairs"):
        assert sharded["routing"][key] == unsharded["routing"][key]
