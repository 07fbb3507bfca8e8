"""The training application: ``run`` (set up the output folder and data, build, resume, train, report).

The run config, :class:`~smes_rec.train.config.TrainConfig`, lives in ``train/config.py`` (importable from here).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from smes_rec.data.fitted import load_fitted_transform
from smes_rec.evaluation.report import metrics_table
from smes_rec.metrics import TaskMetrics
from smes_rec.train.build import Placement, build_for_training
from smes_rec.train.checkpoint import CheckpointManager
from smes_rec.train.config import TrainConfig
from smes_rec.train.data import LoaderSource
from smes_rec.train.distributed import DistContext, from_rank0, init_distributed
from smes_rec.train.lock import RunLock, RunLockedError
from smes_rec.train.loop import Trainer
from smes_rec.utils.config import to_mapping
from smes_rec.utils.files import write_json

__all__ = ["OutputDirError", "TrainConfig", "run"]


class OutputDirError(ValueError):
    """The output folder cannot hold the run (not writable, or a path in it is a file)."""


def _prepare_output(output: Path) -> None:
    """Creates the output folder; raises :class:`OutputDirError` (one line) when the run could not write there."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"output_dir {output} cannot be created: {e.strerror or e}") from None
    for name in ("checkpoints", "tensorboard"):
        if (output / name).exists() and not (output / name).is_dir():
            raise OutputDirError(f"output_dir {output}: {output / name} is a file, not a folder")
    probe = output / f".write_test.{time.time_ns()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputDirError(f"output_dir {output} is not writable: {e.strerror or e}") from None


def _lock_output(output: Path) -> RunLock | None:
    """Rank 0 prepares and locks the output folder; every rank raises the same error if that failed.

    Returns:
        The held lock on rank 0, None elsewhere.
    """
    locks: list[RunLock] = []

    def prepare_and_lock() -> str | None:
        try:
            _prepare_output(output)
            lock = RunLock(output)
            lock.acquire()
        except (OutputDirError, RunLockedError) as e:
            return str(e)
        except OSError as e:
            return f"output_dir {output}: cannot create the lock file: {e.strerror or e}"
        locks.append(lock)
        return None

    problem = from_rank0(prepare_and_lock)
    if problem is not None:
        raise OutputDirError(problem)
    return locks[0] if locks else None


def run(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, TaskMetrics]:
    """Trains (or resumes) a run and returns the final validation metrics; rank 0 prints a summary.

    Args:
        cfg: The run config.
        resume: Continue from the latest complete checkpoint in ``output_dir`` (start fresh if there is none).
        progress: Show a progress bar on rank 0.

    Returns:
        Per-task validation metrics.

    Raises:
        OutputDirError: The output folder cannot be written, ``checkpoints`` in it is a file, or another run
            holds its lock (naming pid, host and start time), on every rank before anything is trained.
        FileExistsError: ``output_dir`` already holds checkpoints and ``resume`` is False.
        ResumeMismatchError: A resume changes the model, the features, the data or another protected setting.
        NonFiniteLossError: Training produced a NaN or infinite loss.
    """
    started = time.perf_counter()
    ctx = init_distributed(cfg.device)
    output = Path(cfg.output_dir)
    lock = _lock_output(output)
    try:
        if not resume and CheckpointManager(output / "checkpoints").step_folders():
            raise FileExistsError(
                f"{output} already holds checkpoints: pass --resume to continue that run, or choose another output_dir"
            )
        return _train(cfg, ctx, output, resume, progress, started)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, ctx: DistContext, output: Path, resume: bool, progress: bool,
           started: float) -> dict[str, TaskMetrics]:
    torch.manual_seed(cfg.seed)
    # A resumed run keeps the transform fitted at its start (stored in the checkpoint), whatever the files hold now.
    # Found (and verified) once: the same checkpoint gives the transform here and the state in Trainer.restore.
    point = CheckpointManager(output / "checkpoints").resume_point(_say_on(ctx)) if resume else None
    fitted = load_fitted_transform(point) if point is not None else None
    data = LoaderSource(cfg.data, ctx.rank, ctx.world_size, fitted)
    record = to_mapping(cfg)
    steps_per_epoch = data.num_batches("train")
    built = build_for_training(cfg.model, data, cfg.optim, Placement(cfg.sharding, ctx.device, cfg.data.batch_size))
    trainer = Trainer(data, built, schedule=cfg.schedule, ctx=ctx, output_dir=output, config_record=record,
                      progress=progress, fitted=data.fitted)
    resumed = point is not None and trainer.restore(point, verify=False)
    first_step = trainer.step
    if ctx.rank == 0:
        print(f"smes-rec: {cfg.model.arch} on {ctx.world_size} process(es), {ctx.device}; "
              f"{'resuming at step ' + str(trainer.step) if resumed else 'starting at step 0'}", flush=True)
    metrics = trainer.fit()
    if ctx.rank == 0:
        examples = trainer.examples_trained * ctx.world_size  # every rank trains batches of the same size
        run_info = {
            "elapsed_s": time.perf_counter() - started,
            "train_s": trainer.train_seconds,
            "steps": trainer.step - first_step,
            "epochs": (trainer.step - first_step) / steps_per_epoch,
            "examples": examples,
            "examples_per_s": examples / max(trainer.train_seconds, 1e-9),
            "steps_per_epoch": steps_per_epoch,
        }
        summary: dict[str, Any] = {
            "step": trainer.step,
            "epoch": trainer.epoch + trainer.position / steps_per_epoch,
            "world_size": ctx.world_size,
            "run": run_info,
            "config": record,
            "valid": {task: m._asdict() for task, m in metrics.items()},
        }
        write_json(output / "final_metrics.json", summary, default=float)
        print(f"\nValidation after {trainer.step} steps:\n{metrics_table(metrics)}\n", flush=True)
        print(f"This run: {run_info['steps']} steps ({run_info['epochs']:.2f} epochs of {steps_per_epoch} steps) in "
              f"{run_info['elapsed_s']:.1f} s ({run_info['train_s']:.1f} s training incl. validation and "
              f"checkpoints), {run_info['examples_per_s']:.0f} examples/s; now at step {trainer.step}, epoch "
              f"{summary['epoch']:.2f}", flush=True)
        print(f"Output folder: {output.resolve()}", flush=True)
    return metrics


def _say_on(ctx: DistContext) -> Callable[[str], None]:
    """Prints a ``smes-rec:`` line to stderr on rank 0 only (as the trainer does)."""
    def say(message: str) -> None:
        if ctx.rank == 0:
            print(f"smes-rec: {message}", file=sys.stderr, flush=True)
    return say
