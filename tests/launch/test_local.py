"""Local launches with ``torchx run -s local_cwd``: one node x 2 processes, 2 nodes x 1 process (c10d rendezvous
on localhost), and crash survival (a SIGKILLed worker, torchrun restarts the group, training resumes).

The stand-in tests exercise the launch mechanics with ``tests/launch/standin.py``; the app tests run the real
``apps/train.py`` / ``apps/evaluate.py`` on ``configs/tiny.yaml`` (a missing app or config fails them).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

from .helpers import (
    EVALUATE,
    STANDIN,
    TRAIN,
    descendants,
    finish,
    free_port,
    launch,
    process_cmdline,
    process_env,
    read_records,
    run_torchx,
)

pytestmark = pytest.mark.dist


def _path_without_venv() -> str:
    """PATH as CI has it: without the virtual environment's bin (the components must find torchrun anyway)."""
    venv_bin = os.path.dirname(sys.executable)
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)


def _standin_train(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    config = tmp_path / "config.yaml"
    config.write_text("seed: 1\n")
    command = ["run", "-s", "local_cwd", "-cfg", f"log_dir={tmp_path / 'logs'}", TRAIN, "--script", STANDIN,
               "--config", str(config), *args]
    full_env = {"STANDIN_RECORD_DIR": str(tmp_path / "records"), "PATH": _path_without_venv(), **(env or {})}
    return run_torchx(command, full_env, timeout=timeout), config


# ---- launch mechanics, with the stand-in app ---------------------------------------------------------------------


def test_one_node_two_processes(tmp_path: Path) -> None:
    result, config = _standin_train(tmp_path, "-j", "1x2", "--set", "schedule.max_steps=5,data.sizes=[3,4]",
                                    "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.output
    records = read_records(tmp_path / "records")
    assert sorted(r["env"]["RANK"] for r in records) == ["0", "1"]
    for record in records:
        assert record["env"]["WORLD_SIZE"] == "2" and record["env"]["LOCAL_WORLD_SIZE"] == "2"
        assert record["argv"] == ["--config", str(config), "--set", "schedule.max_steps=5", "--set", "data.sizes=[3,4]",
                                  "--set", f"output_dir={tmp_path / 'out'}", "--resume"]
        assert record["cwd"] == str(REPO_ROOT)
        # torchrun and python come from the environment that runs torchx, although PATH does not name it.
        assert Path(record["executable"]).parent == Path(sys.executable).parent


def test_two_nodes_one_process_rendezvous_on_localhost(tmp_path: Path) -> None:
    result, _ = _standin_train(tmp_path, "-j", "2x1", "--rdzv_port", str(free_port()),
                               env={"STANDIN_ALLREDUCE": "1"})
    assert result.returncode == 0, result.output
    records = read_records(tmp_path / "records")
    assert sorted((r["env"]["GROUP_RANK"], r["env"]["RANK"]) for r in records) == [("0", "0"), ("1", "1")]
    for record in records:
        assert record["env"]["WORLD_SIZE"] == "2" and record["env"]["LOCAL_WORLD_SIZE"] == "1"
        assert record["allreduce_sum"] == 1.0  # 0 + 1 over a gloo group built from the c10d rendezvous


def test_killed_worker_restarts_the_group_with_resume(tmp_path: Path) -> None:
    # Each attempt forms a gloo group first: a restarted group must be able to form it again.
    result, _ = _standin_train(tmp_path, "-j", "1x2", "--max_retries", "1",
                               env={"STANDIN_CRASH_RANK": "1", "STANDIN_SLEEP": "1", "STANDIN_ALLREDUCE": "1",
                                    "LOGLEVEL": "INFO"})
    assert result.returncode == 0, result.output
    assert "will restart worker group" in result.output
    records = read_records(tmp_path / "records")
    attempts = sorted((r["env"]["TORCHELASTIC_RESTART_COUNT"], r["env"]["RANK"]) for r in records)
    # First attempt: both ranks start and rank 1 is SIGKILLed; second attempt: the whole group runs again.
    assert attempts == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    assert all(r["args"]["resume"] and r["allreduce_sum"] == 1.0 for r in records)


def test_killed_worker_fails_the_job_without_retries(tmp_path: Path) -> None:
    result, _ = _standin_train(tmp_path, "-j", "1x2", env={"STANDIN_CRASH_RANK": "1", "STANDIN_SLEEP": "1"})
    assert result.returncode != 0
    assert "Signal 9 (SIGKILL)" in result.output
    assert all(r["env"]["TORCHELASTIC_RESTART_COUNT"] == "0" for r in read_records(tmp_path / "records"))


@pytest.mark.slow
def test_two_nodes_killed_worker_restarts_both_nodes(tmp_path: Path) -> None:
    # The healthy node must still be running when the rendezvous notices the restarting one (about a second).
    result, _ = _standin_train(tmp_path, "-j", "2x1", "--max_retries", "1", "--rdzv_port", str(free_port()),
                               env={"STANDIN_CRASH_RANK": "1", "STANDIN_SLEEP": "4", "STANDIN_ALLREDUCE": "1"})
    assert result.returncode == 0, result.output
    records = read_records(tmp_path / "records")
    by_rank = {rank: [r for r in records if r["env"]["RANK"] == rank] for rank in ("0", "1")}
    assert len(by_rank["0"]) == 2 and len(by_rank["1"]) == 2  # both nodes ran their worker twice
    assert all(r["allreduce_sum"] == 1.0 for r in records)


def test_evaluate_passes_arguments(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoints" / "step_3"
    checkpoint.mkdir(parents=True)
    result = run_torchx(
        ["run", "-s", "local_cwd", "-cfg", f"log_dir={tmp_path / 'logs'}", EVALUATE, "--script", STANDIN,
         "--checkpoint", str(checkpoint), "--split", "valid", "--out", str(tmp_path / "eval"), "--set", "seed=2"],
        {"STANDIN_RECORD_DIR": str(tmp_path / "records"), "PATH": _path_without_venv()},
    )
    assert result.returncode == 0, result.output
    (record,) = read_records(tmp_path / "records")
    assert record["argv"] == ["--checkpoint", str(checkpoint), "--split", "valid", "--out", str(tmp_path / "eval"),
                              "--set", "seed=2"]


# ---- the real apps ------------------------------------------------------------------------------------------------

TINY = "configs/tiny.yaml"
# Long enough for a kill after the first checkpoint to land mid-run, short enough for CI.
TINY_OVERRIDES = "schedule.max_steps=80,schedule.checkpoint_every=20"
APP_TIMEOUT = 300
# Metrics that measure the run, not the model; they may differ between an interrupted and an uninterrupted run.
# The "run" section of final_metrics.json describes the last process's run (its timing, its steps since a resume).
RUN_DEPENDENT_KEY = re.compile(r"^run\.|time|sec|duration|elapsed|throughput|qps|per_s|restart|resum|wall",
                               re.IGNORECASE)


def _train_args(output_dir: Path, log_dir: Path, *extra: str) -> list[str]:
    return ["run", "-s", "local_cwd", "-cfg", f"log_dir={log_dir}", TRAIN, "--config", TINY,
            "--set", TINY_OVERRIDES, "--output_dir", str(output_dir), *extra]


def _checkpoints(output_dir: Path) -> list[Path]:
    """Entries of OUTPUT_DIR/checkpoints, oldest step first (numbers in names compare as numbers)."""
    root = output_dir / "checkpoints"
    entries = list(root.iterdir()) if root.is_dir() else []
    return sorted(entries, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def _final_metrics(output_dir: Path) -> dict[str, float]:
    """Numeric leaves of final_metrics.json, without the run-dependent ones (timings)."""
    flat: dict[str, float] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not RUN_DEPENDENT_KEY.search(key):
            flat[key] = float(value)

    walk(json.loads((output_dir / "final_metrics.json").read_text()), "")
    assert flat, "final_metrics.json holds no numbers"
    return flat


def _checkpoint_tensors(checkpoint: Path, scratch: Path) -> dict[str, object]:
    """Every tensor in a checkpoint folder, by file and key: torch.distributed.checkpoint data (converted through
    ``dcp_to_torch_save``) and ``*.pt`` files."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    scratch.mkdir(parents=True, exist_ok=True)
    states: dict[str, object] = {}
    for metadata in sorted(checkpoint.rglob(".metadata")):
        converted = scratch / f"dcp{len(states)}.pt"
        dcp_to_torch_save(metadata.parent, converted)
        states[f"dcp:{metadata.parent.relative_to(checkpoint)}"] = torch.load(converted, weights_only=False)
    for file in sorted(checkpoint.rglob("*.pt")):
        states[str(file.relative_to(checkpoint))] = torch.load(file, weights_only=False, map_location="cpu")
    tensors: dict[str, object] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}/{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")

    walk(states, "")
    assert tensors, f"no tensors found in checkpoint {checkpoint}"
    return tensors


def _differing_tensors(ours: Path, theirs: Path, scratch: Path) -> list[str]:
    """Keys whose tensors differ between two checkpoints (after checking both hold the same keys)."""
    import torch

    a, b = _checkpoint_tensors(ours, scratch / "ours"), _checkpoint_tensors(theirs, scratch / "theirs")
    assert a.keys() == b.keys(), f"{ours.name}: different contents: {sorted(a.keys() ^ b.keys())[:10]}"
    return [key for key in a if not torch.equal(a[key], b[key])]


def _is_rng_state(key: str) -> bool:
    return re.search(r"(^|/)rng[^/]*\.pt", key) is not None


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 1x2 training run on the tiny config; its output directory."""
    root = tmp_path_factory.mktemp("uninterrupted")
    result = run_torchx(_train_args(root / "out", root / "logs", "-j", "1x2"), timeout=APP_TIMEOUT)
    assert result.returncode == 0, result.output
    return root / "out"


def _kill_a_worker_after_first_checkpoint(proc, output_dir: Path, deadline: float) -> int:
    """SIGKILLs the rank-1 training process of the first attempt once a checkpoint is complete; returns its pid.

    A checkpoint counts as complete once a second entry appears in OUTPUT_DIR/checkpoints (the next checkpoint
    has begun, in a temporary name or in place), whatever the app's naming.
    """
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("the job ended before a worker could be killed: make TINY_OVERRIDES longer")
        if len(_checkpoints(output_dir)) >= 2:
            for pid in descendants(proc.pid):
                env = process_env(pid)
                if (env.get("RANK") == "1" and env.get("TORCHELASTIC_RESTART_COUNT") == "0"
                        and any(arg.endswith("apps/train.py") for arg in process_cmdline(pid))):
                    os.kill(pid, signal.SIGKILL)
                    return pid
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared in time")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run with ``--max_retries 1``, one worker SIGKILLed mid-run; its output directory."""
    root = tmp_path_factory.mktemp("interrupted")
    output_dir = root / "out"
    proc = launch(_train_args(output_dir, root / "logs", "-j", "1x2", "--max_retries", "1"), {"LOGLEVEL": "INFO"})
    _kill_a_worker_after_first_checkpoint(proc, output_dir, time.monotonic() + APP_TIMEOUT)
    result = finish(proc, APP_TIMEOUT)
    assert result.returncode == 0, result.output
    assert "will restart worker group" in result.output, "torchrun did not restart the worker group"
    assert re.search(r"resuming at step [1-9]\d*", result.output), "the restarted run did not resume from a checkpoint"
    return output_dir


def test_train_one_node_two_processes_then_evaluate(uninterrupted: Path, tmp_path: Path) -> None:
    assert (uninterrupted / "final_metrics.json").exists()
    checkpoints = _checkpoints(uninterrupted)
    assert checkpoints, "training wrote no checkpoint"
    result = run_torchx(
        ["run", "-s", "local_cwd", "-cfg", f"log_dir={tmp_path / 'logs'}", EVALUATE,
         "--checkpoint", str(checkpoints[-1]), "--out", str(tmp_path / "eval")],
        timeout=APP_TIMEOUT,
    )
    assert result.returncode == 0, result.output
    assert any((tmp_path / "eval").iterdir()), "evaluate wrote nothing to --out"


def test_train_two_nodes_one_process(tmp_path: Path) -> None:
    args = _train_args(tmp_path / "out", tmp_path / "logs", "-j", "2x1", "--rdzv_port", str(free_port()))
    result = run_torchx(args, timeout=APP_TIMEOUT)
    assert result.returncode == 0, result.output
    assert _final_metrics(tmp_path / "out")


def test_killed_worker_resumes_to_the_same_weights_and_metrics(
    uninterrupted: Path, interrupted: Path, tmp_path: Path
) -> None:
    # The same checkpoints, none half-written or left over, each with the same model and optimizer state.
    assert [p.name for p in _checkpoints(interrupted)] == [p.name for p in _checkpoints(uninterrupted)]
    for ours, theirs in zip(_checkpoints(interrupted), _checkpoints(uninterrupted), strict=True):
        different = [k for k in _differing_tensors(ours, theirs, tmp_path / ours.name) if not _is_rng_state(k)]
        assert not different, f"{ours.name}: tensors differ: {different[:10]}"
    ours, theirs = _final_metrics(interrupted), _final_metrics(uninterrupted)
    assert ours.keys() == theirs.keys()
    different = {k: (ours[k], theirs[k]) for k in ours
                 if not (ours[k] == theirs[k] or (math.isnan(ours[k]) and math.isnan(theirs[k])))}
    assert not different, f"final_metrics.json differs (interrupted, uninterrupted): {different}"


def test_killed_worker_resumes_the_same_random_stream(uninterrupted: Path, interrupted: Path, tmp_path: Path) -> None:
    """The RNG state saved in every checkpoint matches too, so random layers (dropout) would also resume exactly."""
    for ours, theirs in zip(_checkpoints(interrupted), _checkpoints(uninterrupted), strict=True):
        different = [k for k in _differing_tensors(ours, theirs, tmp_path / ours.name) if _is_rng_state(k)]
        assert not different, f"{ours.name}: RNG state differs: {different}"
