"""Configuration: scientific notation, errors that blame the --set value, schedule.epochs, one seed, run timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smes_rec.train.app import TrainConfig
from smes_rec.utils.config import ConfigError, check_overrides, load_yaml, yaml_load
from tests.conftest import REPO_ROOT

from .train_helpers import error_lines, train

TINY = REPO_ROOT / "configs" / "tiny.yaml"


@pytest.mark.parametrize(("text", "value"), [
    ("1e-3", 1e-3), ("1E-4", 1e-4), ("1.0e30", 1e30), ("1.0e+30", 1e30), ("-2.5E+2", -250.0), (".5", 0.5),
    ("3", 3), ("1_000", 1000), (".inf", float("inf")),
])
def test_scientific_notation_is_a_number(text: str, value: float) -> None:
    parsed = yaml_load(f"x: {text}")["x"]
    assert parsed == value and isinstance(parsed, type(value))


@pytest.mark.parametrize("text", ["1e", "e5", "1e-", "'1e-3'", "abc", "1.2.3"])
def test_strings_stay_strings(text: str) -> None:
    assert isinstance(yaml_load(f"x: {text}")["x"], str)


def test_scientific_notation_in_a_file_and_in_set(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(TINY.read_text() + "optim: {dense_lr: 1e-3, embedding_lr: 5E-2}\n")
    cfg = load_yaml(TrainConfig, config, ["model.aux_loss_weight=1e-2"])
    assert (cfg.optim.dense_lr, cfg.optim.embedding_lr, cfg.model.aux_loss_weight) == (1e-3, 5e-2, 1e-2)


def test_errors_blame_the_set_value_not_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml(TrainConfig, TINY, ["schedule.max_steps=abc"])
    assert str(info.value) == "--set schedule.max_steps=abc: schedule.max_steps: expected an integer, got 'abc'"
    with pytest.raises(ConfigError) as info:  # a check over the section names both sources
        load_yaml(TrainConfig, TINY, ["schedule.epochs=2"])
    assert str(info.value).startswith(f"{TINY}, --set schedule.epochs=2: schedule: max_steps (40) and epochs (2)")
    with pytest.raises(ConfigError) as info:  # a section check names the override that changed the section
        load_yaml(TrainConfig, TINY, ["schedule.log_every=0"])
    assert "--set schedule.log_every=0" in str(info.value)
    with pytest.raises(ConfigError, match=r"^--set model.expert_layers=\[4,x\]: model.expert_layers\[1\]"):
        check_overrides(TrainConfig, ["model.expert_layers=[4,x]"])
    check_overrides(TrainConfig, ["optim.dense_lr=1e-4", "schedule.epochs=3", "data.split={by: time}"])


def test_set_error_from_the_app(tmp_path: Path, eval_cache: Path) -> None:
    result = train(tmp_path / "run", eval_cache, "optim.dense_lr=fast", resume=False)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "train.py: config error: --set optim.dense_lr=fast: optim.dense_lr: expected a number, got 'fast'"
    ]


def test_epochs_or_max_steps_exactly_one() -> None:
    with pytest.raises(ConfigError, match="max_steps .* and epochs .* are both set: set exactly one"):
        load_yaml(TrainConfig, TINY, ["schedule.epochs=1"])
    with pytest.raises(ConfigError, match="neither max_steps nor epochs is set"):
        load_yaml(TrainConfig, TINY, ["schedule.max_steps=null"])
    cfg = load_yaml(TrainConfig, TINY, ["schedule.max_steps=null", "schedule.epochs=2"])
    assert (cfg.schedule.max_steps, cfg.schedule.epochs) == (None, 2)


def test_one_seed_sets_data_order_unless_data_seed_is_given() -> None:
    assert load_yaml(TrainConfig, TINY, ["seed=7"]).data.seed == 7
    assert load_yaml(TrainConfig, TINY, ["seed=7", "data.seed=3"]).data.seed == 3


def test_epoch_run_reports_time_steps_epochs_and_throughput(tmp_path: Path, eval_cache: Path) -> None:
    run = tmp_path / "run"
    # 6000 synthetic rows, about 80% train, batches of 1024: 4 batches per epoch.
    result = train(run, eval_cache, "schedule.max_steps=null", "schedule.epochs=2", "data.batch_size=1024",
                   "schedule.checkpoint_every=0", resume=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "final_metrics.json").read_text())
    info = summary["run"]
    per_epoch = info["steps_per_epoch"]
    assert per_epoch >= 1 and summary["step"] == info["steps"] == 2 * per_epoch and info["epochs"] == 2.0
    assert info["examples"] == info["steps"] * 1024
    assert 0 < info["train_s"] <= info["elapsed_s"]
    assert info["examples_per_s"] == pytest.approx(info["examples"] / info["train_s"])
    assert (f"This run: {info['steps']} steps (2.00 epochs of {per_epoch} steps) in {info['elapsed_s']:.1f} s"
            in result.stdout)
    assert f"{info['examples_per_s']:.0f} examples/s" in result.stdout
