"""Export -> isolated load (torch and fbgemm_gpu only) -> predict, against the checkpoint, for every arch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from smes_rec.metrics.auc import auc, gauc
from smes_rec.models.factory import ArchName
from smes_rec.serving.checkpoint import load_checkpoint
from smes_rec.serving.export import export_checkpoint
from smes_rec.serving.predict import PredictConfig, predict
from smes_rec.serving.scorer import load_scorer
from tests.conftest import REPO_ROOT
from tests.serving.helpers import eager_probs, max_abs_diff, score_isolated, split_requests

ARCHS = typing.get_args(ArchName)  # every arch the factory builds, including ones added later


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_export_matches_the_checkpoint_in_an_isolated_process(
    arch: str, tiny_runs: Callable[[str], Path], tmp_path: Path
) -> None:
    run = tiny_runs(arch)
    manifest = export_checkpoint(run, tmp_path / "pkg", embeddings="fp32")
    assert manifest["model"]["arch"] == arch and manifest["embeddings"] == "fp32"
    loaded = load_checkpoint(run)
    requests = split_requests(load_scorer(tmp_path / "pkg"))
    assert sum(r[0].size(0) for r in requests) > 100
    isolated = score_isolated(tmp_path / "pkg", requests, tmp_path)
    assert isolated["blocked"] == ["smes_rec", "torchrec"] and isolated["loaded"] == []
    assert isolated["example"].shape == (len(manifest["tasks"]), manifest["export_check"]["rows"])
    assert max_abs_diff(isolated["requests"], eager_probs(loaded, requests)) <= 1e-5

    # apps-level prediction: the package and the checkpoint score the same rows alike.
    by_pkg = predict(PredictConfig(model=str(tmp_path / "pkg"), out=str(tmp_path / "pkg.parquet"), split="test",
                                   progress=False))
    predict(PredictConfig(model=str(run), out=str(tmp_path / "ckpt.parquet"), split="test", progress=False))
    a, b = pq.read_table(tmp_path / "pkg.parquet"), pq.read_table(tmp_path / "ckpt.parquet")
    assert by_pkg.rows == a.num_rows == b.num_rows > 100
    assert a.column("row").equals(b.column("row")) and a.column("file").equals(b.column("file"))
    for task in manifest["tasks"]:
        assert np.abs(a.column(f"p_{task}").to_numpy() - b.column(f"p_{task}").to_numpy()).max() <= 1e-5


def test_prediction_sees_the_tensors_training_saw(tiny_runs: Callable[[str], Path], tmp_path: Path) -> None:
    """The frozen transform on raw rows gives the data pipeline's own batches: the same test-split probabilities."""
    from smes_rec.serving.module import ServingModule

    run = tiny_runs("smes")
    loaded = load_checkpoint(run)
    model = ServingModule(loaded.ranker, loaded.data.feature_names).eval()
    by_pipeline = []
    with torch.no_grad():
        for batch in loaded.data.batches("test", 0, 0):
            kjt = batch.sparse_features
            real = batch.group_ids >= 0  # padding rows of the last batch have group -1
            by_pipeline.append(model(batch.dense_features, kjt.values(), kjt.lengths())[:, real])
    pipeline_TN = torch.cat(by_pipeline, dim=1)
    predict(PredictConfig(model=str(run), out=str(tmp_path / "p.parquet"), split="test", progress=False))
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == pipeline_TN.size(1)
    for t, task in enumerate(loaded.data.task_names):
        ours = np.sort(table.column(f"p_{task}").to_numpy())
        theirs = np.sort(pipeline_TN[t].numpy())
        assert np.abs(ours - theirs).max() <= 1e-6


def test_int8_export_keeps_auc_and_gauc(tiny_runs: Callable[[str], Path], tmp_path: Path) -> None:
    run = tiny_runs("smes")
    manifest = export_checkpoint(run, tmp_path / "int8")  # the default: row-wise int8 embeddings
    assert manifest["embeddings"] == "int8"
    schema = load_scorer(tmp_path / "int8").transform.schema
    keep = [schema.group or "user_id", *dict.fromkeys(t.column for t in schema.tasks)]
    for model, out in ((tmp_path / "int8", "int8.parquet"), (run, "ckpt.parquet")):
        predict(PredictConfig(model=str(model), out=str(tmp_path / out), split="test", keep=tuple(keep),
                              progress=False))
    q, c = pq.read_table(tmp_path / "int8.parquet"), pq.read_table(tmp_path / "ckpt.parquet")
    groups = torch.from_numpy(c.column(keep[0]).to_numpy().astype(np.int64))
    gauc_checked = 0
    for task in schema.tasks:
        labels = torch.from_numpy(c.column(task.column).to_numpy().astype(np.float32))
        positives = int(labels.sum())
        assert 0 < positives < len(labels), task.name
        p_int8, p_ckpt = (torch.from_numpy(t.column(f"p_{task.name}").to_numpy()) for t in (q, c))
        assert float((p_int8 - p_ckpt).abs().max()) <= 1e-3, task.name
        # AUC moves in steps of 1 / (positives * negatives), below 0.001 for every task here.
        assert abs(float(auc(p_int8, labels)) - float(auc(p_ckpt, labels))) <= 1e-3, task.name
        # GAUC averages AUCs of groups of ~6 rows: one swapped pair moves a group by >= 1/9. On a 600-row split
        # only tasks with many positives resolve 0.001 (docs/serving.md reports all tasks on real data).
        if positives >= 100:
            g_int8, g_ckpt = gauc(p_int8, labels, groups), gauc(p_ckpt, labels, groups)
            assert abs(float(g_int8.value) - float(g_ckpt.value)) <= 1e-3, task.name
            gauc_checked += 1
    assert gauc_checked >= 2


def test_parity_benchmark_reports_deltas_and_routing_changes(tiny_runs: Callable[[str], Path]) -> None:
    """benchmarks/serving_parity.py on a tiny SMES run: fp32 is exact and switches no routing; int8 is counted."""
    run = tiny_runs("smes")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "serving_parity.py"), "--checkpoint",
                           str(run), "--split", "test"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = int(re.search(r"test split, (\d+) rows", proc.stdout).group(1))  # type: ignore[union-attr]
    tasks = [line for line in proc.stdout.splitlines()  # the per-task table: 10 cells, deltas in e-notation
             if line.startswith("| ") and line.count("|") == 11 and "e+" in line]
    assert tasks, proc.stdout
    for line in tasks:
        fp32_max_dp = float(line.strip("|").split("|")[4])
        assert fp32_max_dp <= 1e-5, line
    changes = {line.strip("|").split("|")[0].strip(): [c.strip() for c in line.strip("|").split("|")]
               for line in proc.stdout.splitlines() if re.match(r"\| (fp32|int8) \| \d+ \|", line)}
    assert changes["fp32"][1] == changes["int8"][1] == str(rows)
    assert changes["fp32"][2] == "0 (0.00%)" and float(changes["fp32"][4]) <= 1e-5
    changed_int8 = int(changes["int8"][2].split()[0])
    assert 0 <= changed_int8 <= rows
    assert float(changes["int8"][4]) <= 1e-3  # rows that keep their experts move by the int8 step only
