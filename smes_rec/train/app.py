"""The training application: a typed run config, and ``run`` (set up, resume, train, report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from smes_rec.data.config import DataConfig
from smes_rec.data.fitted import load_fitted_transform
from smes_rec.metrics import TaskMetrics
from smes_rec.models.factory import ModelConfig
from smes_rec.train.checkpoint import CheckpointManager
from smes_rec.train.data import LoaderSource
from smes_rec.train.distributed import init_distributed
from smes_rec.train.loop import OptimConfig, ScheduleConfig, Trainer, metrics_table
from smes_rec.train.sharding import ShardingName
from smes_rec.utils.config import to_mapping
from smes_rec.utils.files import write_json

__all__ = ["TrainConfig", "run"]


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Attributes:
        data: Data set, split and batching (see ``smes_rec.data.config.DataConfig``).
        model: The model (see ``smes_rec.models.factory.ModelConfig``).
        sharding: Embedding sharding: auto, table_wise, row_wise, column_wise, table_column_wise, data_parallel.
        optim: Optimizers.
        schedule: Steps, logging, validation and checkpoints.
        output_dir: Checkpoints, TensorBoard logs and final metrics go here.
        seed: Seeds model initialisation.
        device: auto (CUDA when available), cpu or cuda.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sharding: ShardingName = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    output_dir: str = "runs/smes"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


def run(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, TaskMetrics]:
    """Trains (or resumes) a run and returns the final validation metrics; rank 0 prints a summary.

    Args:
        cfg: The run config.
        resume: Continue from the latest complete checkpoint in ``output_dir`` (start fresh if there is none).
        progress: Show a progress bar on rank 0.

    Returns:
        Per-task validation metrics.

    Raises:
        FileExistsError: ``output_dir`` already holds checkpoints and ``resume`` is False.
    """
    ctx = init_distributed(cfg.device)
    output = Path(cfg.output_dir)
    if not resume and CheckpointManager(output / "checkpoints").latest() is not None:
        raise FileExistsError(
            f"{output} already holds checkpoints: pass --resume to continue that run, or choose another output_dir"
        )
    torch.manual_seed(cfg.seed)
    # A resumed run keeps the transform fitted at its start (stored in the checkpoint), whatever the files hold now.
    latest = CheckpointManager(output / "checkpoints").latest() if resume else None
    fitted = load_fitted_transform(latest) if latest is not None else None
    data = LoaderSource(cfg.data, ctx.rank, ctx.world_size, fitted)
    record = to_mapping(cfg)
    trainer = Trainer(data, cfg.model, cfg.optim, cfg.schedule, cfg.sharding, cfg.data.batch_size, output, ctx,
                      config_record=record, progress=progress, fitted=data.fitted)
    resumed = resume and trainer.restore()
    if ctx.rank == 0:
        print(f"smes-rec: {cfg.model.arch} on {ctx.world_size} process(es), {ctx.device}; "
              f"{'resuming at step ' + str(trainer.step) if resumed else 'starting at step 0'}", flush=True)
    metrics = trainer.fit()
    if ctx.rank == 0:
        summary: dict[str, Any] = {
            "step": trainer.step,
            "world_size": ctx.world_size,
            "config": record,
            "valid": {task: m._asdict() for task, m in metrics.items()},
        }
        write_json(output / "final_metrics.json", summary, default=float)
        print(f"\nValidation after {trainer.step} steps:\n{metrics_table(metrics)}\n", flush=True)
        print(f"Output folder: {output.resolve()}", flush=True)
    return metrics
