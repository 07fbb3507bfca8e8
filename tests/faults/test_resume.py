"""Resuming: a resume that changes the run is refused listing every key; safe changes and a new world size pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smes_rec.train.resume import resume_differences

from .train_helpers import copy_run, error_lines, train


def test_resume_differences_skip_safe_keys_and_list_the_rest() -> None:
    saved = {"model": {"arch": "smes", "expert_layers": [32, 16]}, "schedule": {"max_steps": 40}, "output_dir": "a",
             "data": {"num_workers": 0, "batch_size": 128, "split": {"seed": 0}}}
    requested = {"model": {"arch": "mmoe", "expert_layers": [32, 8]}, "schedule": {"max_steps": 80}, "output_dir": "b",
                 "data": {"num_workers": 2, "batch_size": 128, "split": {"seed": 1}}, "new_key": 1}
    diffs = resume_differences(saved, requested)
    assert [(d.key, d.saved, d.requested) for d in diffs] == [
        ("data.split.seed", 0, 1),
        ("model.arch", "smes", "mmoe"),
        ("model.expert_layers", [32, 16], [32, 8]),
        ("new_key", "<absent>", 1),
    ]
    assert resume_differences({"tables": [1]}, {"tables": [2]}, "data_fingerprint.")[0].key == "data_fingerprint.tables"


def test_resume_that_changes_model_and_data_is_refused(tiny_run: Path, eval_cache: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    result = train(run, eval_cache, "model.arch=mmoe", "model.num_experts=4", "data.synthetic.num_users=900",
                   "schedule.max_steps=12")
    assert result.returncode == 2, result.stderr[-3000:]
    err = result.stderr
    assert "cannot resume from" in err and "step_000000008" in err
    for line in ("model.arch: checkpoint 'smes', requested 'mmoe'",
                 "model.num_experts: checkpoint 8, requested 4",
                 "data.synthetic.num_users: checkpoint 200, requested 900",
                 "data_fingerprint.tables: checkpoint"):
        assert line in err, err
    assert "schedule.max_steps" not in err.split("A resume may change only")[0]  # a safe key is not a difference
    assert "Traceback" not in err and len(error_lines(err)) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing written


@pytest.mark.dist
def test_safe_changes_and_another_world_size_resume(tiny_run: Path, eval_cache: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    result = train(run, eval_cache, "schedule.max_steps=10", "schedule.log_every=1", "schedule.checkpoint_every=5",
                   "schedule.eval_batches=1", "sharding=row_wise", nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming at step 8" in result.stdout and "Validation after 10 steps" in result.stdout
    assert ("checkpoint step_000000008 was saved by 1 process(es), this run has 2: the weights reshard; optimizer "
            "state and RNG restart fresh") in result.stderr
    summary = json.loads((run / "final_metrics.json").read_text())
    assert summary["step"] == 10 and summary["world_size"] == 2 and summary["run"]["steps"] == 2
