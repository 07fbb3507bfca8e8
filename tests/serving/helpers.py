"""Tiny trained runs, request tensors from a run's test split, and the isolated (torch-only) scoring process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from smes_rec.serving.checkpoint import LoadedCheckpoint
from smes_rec.serving.predict import work_items
from smes_rec.serving.rows import RowReader, request_tensors
from smes_rec.serving.scorer import Scorer
from tests.evaluation.helpers import tiny_config, train_in_process

ISOLATED = Path(__file__).with_name("isolated_score.py")
# A smaller model than configs/tiny.yaml.
MODEL_OVERRIDES = ("model.bottom_layers=[32]", "model.expert_layers=[16,8]", "model.tower_layers=[8]",
                   "model.num_experts=8")


def train_tiny(out: Path, cache: Path, arch: str, steps: int = 4) -> Path:
    """Trains a tiny run of ``arch`` in this process (``steps`` steps, one checkpoint); returns its output folder."""
    train_in_process(tiny_config(out, cache, f"model.arch={arch}", *MODEL_OVERRIDES, f"schedule.max_steps={steps}",
                                 f"schedule.checkpoint_every={steps}"))
    return out


def split_requests(scorer: Scorer, batch_size: int = 128) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The run's test split as serving requests, built by the prediction pipeline (frozen transform)."""
    from smes_rec.serving.predict import PredictConfig

    reader = RowReader(scorer.transform)
    requests = []
    for w in work_items(PredictConfig(model="-", out="-", split="test"), scorer):
        chunk = reader.read(w.file, w.unit, w.select)
        n = len(chunk.rows)
        requests += [request_tensors(chunk.columns, s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    return requests


def eager_probs(loaded: LoadedCheckpoint, requests: list) -> list[torch.Tensor]:
    """The checkpoint model's probabilities for requests."""
    from smes_rec.serving.module import ServingModule

    model = ServingModule(loaded.ranker, loaded.data.feature_names).eval()
    with torch.no_grad():
        return [model(*r) for r in requests]


def score_isolated(package: Path, requests: list, workdir: Path) -> dict:
    """Scores ``requests`` with ``package`` in a fresh ``python -I`` that can import only torch and fbgemm_gpu."""
    req, out = workdir / "requests.pt", workdir / "isolated_out.pt"
    torch.save(requests, req)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-I", str(ISOLATED), str(package), str(req), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


def max_abs_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b) and len(a) > 0
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def as_numpy(table, column: str) -> np.ndarray:
    return table.column(column).to_numpy()
