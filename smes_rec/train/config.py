"""A training run's typed settings: the run (data, model, sharding, optimizers, schedule), as frozen dataclasses
loaded strictly from YAML (``utils/config.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from smes_rec.data.config import DataConfig
from smes_rec.models.factory import ModelConfig
from smes_rec.train.sharding import EmbeddingOptimizer, ShardingName

__all__ = ["OptimConfig", "ScheduleConfig", "TrainConfig"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizers.

    Attributes:
        embedding: Fused embedding optimizer (CPU supports rowwise_adagrad, adagrad and sgd).
        embedding_lr: Its learning rate.
        dense: Optimizer of every other parameter (and of data-parallel tables).
        dense_lr: Its learning rate.
    """

    embedding: EmbeddingOptimizer = "rowwise_adagrad"
    embedding_lr: float = 0.05
    dense: Literal["adam", "adagrad", "sgd"] = "adam"
    dense_lr: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("embedding_lr", "dense_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ScheduleConfig:
    """How long to train and how often to log, validate and checkpoint (all in optimizer steps).

    Attributes:
        max_steps: Total optimizer steps (set this or ``epochs``, not both).
        epochs: Train until this many passes over the train split are complete (set this or ``max_steps``).
        log_every: TensorBoard scalars and the progress bar's postfix; also how often the ranks compare losses
            (the NaN/inf guard, one collective per interval, and before every validation and checkpoint).
        eval_every: Validate every this many steps (0: only at the end).
        eval_batches: Validation batches per rank (None: the whole split).
        checkpoint_every: Save every this many steps (0: only at the end).
        keep_last: Complete checkpoints to keep.
    """

    max_steps: int | None = None
    epochs: int | None = None
    log_every: int = 50
    eval_every: int = 0
    eval_batches: int | None = None
    checkpoint_every: int = 0
    keep_last: int = 3

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError(f"max_steps ({self.max_steps}) and epochs ({self.epochs}) are both set: set exactly one "
                             "(null the other, e.g. --set schedule.max_steps=null)")
        if self.max_steps is None and self.epochs is None:
            raise ValueError("neither max_steps nor epochs is set: set exactly one of them")
        if (self.max_steps is not None and self.max_steps < 1) or (self.epochs is not None and self.epochs < 1):
            raise ValueError(f"max_steps / epochs must be >= 1, got {self.max_steps} / {self.epochs}")
        if self.log_every < 1 or self.keep_last < 1:
            raise ValueError("log_every and keep_last must be >= 1")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("eval_every and checkpoint_every must be >= 0")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ValueError(f"eval_batches must be >= 1 or null, got {self.eval_batches}")


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
        seed: Seeds model initialisation, and the data order unless ``data.seed`` is set.
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

    def __post_init__(self) -> None:
        if self.data.seed is None:  # one seed for initialisation and data order
            object.__setattr__(self, "data", replace(self.data, seed=self.seed))
