"""Errors of a run's surroundings: an output folder that cannot be written, a ``checkpoints`` file, a NaN loss."""

from __future__ import annotations

from pathlib import Path

from .train_helpers import error_lines, train


def test_output_dir_below_a_file_is_a_one_line_error(eval_cache: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = train(blocker / "run", eval_cache, resume=False)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"train.py: error (rank 0): output_dir {blocker / 'run'} cannot be created: Not a directory"
    ]
    assert "Traceback" not in result.stderr and "smes-rec: smes on" not in result.stdout  # before training


def test_checkpoints_path_that_is_a_file(eval_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("oops")
    result = train(run, eval_cache)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"train.py: error (rank 0): output_dir {run}: {run / 'checkpoints'} is a file, not a folder"
    ]
    assert "smes-rec: smes on" not in result.stdout and not (run / "tensorboard").exists()


def test_nan_loss_is_a_clean_stop_with_exit_status_3(eval_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # A dense learning rate of 1e30 (scientific notation, read as a number) blows the weights up after one step.
    result = train(run, eval_cache, "optim.dense_lr=1e30", resume=False)
    assert result.returncode == 3, result.stderr[-3000:]
    (line,) = error_lines(result.stderr)
    assert line.startswith("train.py: stopped (rank 0): non-finite loss at step 2: is_click=nan")
    assert "last good checkpoint is none" in line
    assert "Traceback" not in result.stderr
