"""The TorchX train component validates the whole run config before anything starts, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.launch.helpers import TRAIN, components, run_torchx

TINY = str(REPO_ROOT / "configs" / "tiny.yaml")


def test_bad_set_value_fails_once_before_any_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "-s", "local_cwd", "-cfg", f"log_dir={tmp_path / 'logs'}", TRAIN, "--config", "configs/tiny.yaml",
            "--set", "schedule.max_steps=abc", "--max_retries", "2", "--output_dir", str(out)]
    result = run_torchx(args, timeout=180)
    assert result.returncode == 1, result.output
    message = "run config: --set schedule.max_steps=abc: schedule.max_steps: expected an integer, got 'abc'"
    assert result.output.count(message) == 1, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "logs").exists() and not out.exists()  # no replica was started


def test_whole_config_is_checked_not_only_each_value() -> None:
    with pytest.raises(components().SmesLaunchError, match="max_steps .40. and epochs .3. are both set"):
        components().train(config=TINY, set="schedule.epochs=3")
    app = components().train(config=TINY, set="schedule.max_steps=null,schedule.epochs=3,optim.dense_lr=1e-4")
    assert "optim.dense_lr=1e-4" in app.roles[0].args[1]


def test_config_only_in_the_image_checks_each_override() -> None:
    # Kubernetes: the config path names a file inside the image; each --set is still checked against the schema.
    with pytest.raises(components().SmesLaunchError, match="--set model.num_experts=many: model.num_experts: expected"):
        components().train(config="/image/only.yaml", set="model.num_experts=many")
    components().train(config="/image/only.yaml", set="model.num_experts=32")
