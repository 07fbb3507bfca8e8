"""apps/train.py end to end: a real run, resume, bad input, and the KuaiRand subset learning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT, SHARED_DATA
from tests.dist import run_workers

TINY = ["--config", str(REPO_ROOT / "configs" / "tiny.yaml"), "--no-progress"]


def _train(tmp_path: Path, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "SMES_REC_CACHE": str(cache or tmp_path / "cache"), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(REPO_ROOT / "apps" / "train.py"), *TINY, *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("override", "message"), [
    ("model.num_expert=4", "unknown key 'model.num_expert'"),
    ("model.num_experts=many", "model.num_experts: expected an integer"),
    ("sharding=grid_shard", "sharding: 'grid_shard' is not one of"),
    ("schedule.max_steps=0", "max_steps"),
    ("model.k_shared=8", "k_shared + k_adaptive"),
])
def test_bad_config_fails_before_training_naming_the_key(tmp_path: Path, override: str, message: str) -> None:
    result = _train(tmp_path, "--set", override, "--set", f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_argument_and_missing_config_are_rejected(tmp_path: Path) -> None:
    result = _train(tmp_path, "--max-steps", "3")
    assert result.returncode == 2 and "unrecognized arguments: --max-steps" in result.stderr
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    missing = subprocess.run([sys.executable, str(REPO_ROOT / "apps" / "train.py"), "--config", "nope.yaml"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "nope.yaml: config file not found" in missing.stderr


def test_cuda_requested_without_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = _train(tmp_path, "--set", "device=cuda", "--set", f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "no CUDA device is available" in result.stderr


def test_train_resume_and_mismatched_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _train(tmp_path, "--set", f"output_dir={run}", "--set", "schedule.max_steps=6",
                   "--set", "schedule.checkpoint_every=3", "--set", "schedule.eval_every=3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Validation after 6 steps" in first.stdout and f"Output folder: {run.resolve()}" in first.stdout
    summary = json.loads((run / "final_metrics.json").read_text())
    assert summary["step"] == 6 and set(summary["valid"]) >= {"is_click", "long_view"}
    assert 0.0 <= summary["valid"]["is_click"]["auc"] <= 1.0
    assert list((run / "tensorboard").iterdir()), "no TensorBoard events"

    again = _train(tmp_path, "--set", f"output_dir={run}")
    assert again.returncode == 2 and "already holds checkpoints: pass --resume" in again.stderr

    resumed = _train(tmp_path, "--set", f"output_dir={run}", "--set", "schedule.max_steps=9", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 6" in resumed.stdout and "Validation after 9 steps" in resumed.stdout

    # Different data shape (the synthetic table sizes follow the number of users): refused before training.
    other = _train(tmp_path, "--set", f"output_dir={run}", "--set", "data.synthetic.num_users=900", "--resume",
                   cache=tmp_path / "cache")
    assert other.returncode == 2, other.stderr[-3000:]
    assert "cannot resume from" in other.stderr and "data_fingerprint.tables" in other.stderr


def _kuairand_worker(rank: int, world_size: int, workdir: Path) -> None:
    from smes_rec.data.config import DataConfig, SplitConfig
    from smes_rec.models.factory import ModelConfig
    from smes_rec.train.build import Placement, build_for_training
    from smes_rec.train.config import OptimConfig, ScheduleConfig
    from smes_rec.train.data import LoaderSource
    from smes_rec.train.distributed import DistContext
    from smes_rec.train.loop import Trainer

    data_cfg = DataConfig(
        schema=str(REPO_ROOT / "configs" / "data" / "kuairand_subset.yaml"), batch_size=256, num_workers=0,
        split=SplitConfig(by="time", valid_start=20220419, test_start=20220420), cache_dir=str(workdir / "cache"),
    )
    torch.manual_seed(0)
    source = LoaderSource(data_cfg, rank, world_size)
    model = ModelConfig(arch="smes", bottom_layers=(64,), expert_layers=(32, 16), tower_layers=(16,), num_experts=8)
    ctx = DistContext(rank, world_size, 0, torch.device("cpu"))
    built = build_for_training(model, source, OptimConfig(), Placement("auto", ctx.device, 256))
    trainer = Trainer(source, built, schedule=ScheduleConfig(max_steps=300, log_every=50, eval_batches=8), ctx=ctx,
                      output_dir=workdir / "run", progress=False)
    metrics = trainer.fit()
    torch.save({"losses": trainer.step_losses, "auc": {k: v.auc for k, v in metrics.items()}}, workdir / "out.pt")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data (the KuaiRand subset) is not present")
def test_kuairand_subset_trains_with_falling_loss(tmp_path: Path) -> None:
    run_workers(_kuairand_worker, 1, tmp_path)
    out = torch.load(tmp_path / "out.pt")
    losses = torch.tensor(out["losses"])
    assert len(losses) == 300
    first, last = losses[:50].mean().item(), losses[-50:].mean().item()
    assert last < 0.9 * first, (first, last)
    assert out["auc"]["is_click"] > 0.6, out["auc"]
