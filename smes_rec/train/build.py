"""Building the model: the ranker with its losses, sharded with DistributedModelParallel, with or without optimizers.

Training builds the sharded model with its fused embedding optimizer and the dense optimizer
(:func:`build_for_training`); evaluation builds the same sharded model without any optimizer
(:func:`build_for_eval`) and loads a checkpoint's weights into it; serving and one-process evaluation use the
unsharded :func:`build_train_wrapper`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.optim.keyed import CombinedOptimizer

from smes_rec.models.factory import ModelConfig, build_ranker
from smes_rec.models.sparse import TableSpec
from smes_rec.train.config import OptimConfig
from smes_rec.train.sharding import ShardingName, apply_embedding_optimizer, make_dense_optimizer, shard_model
from smes_rec.train.wrapper import TrainWrapper

__all__ = ["DataShape", "Placement", "TrainModel", "build_for_eval", "build_for_training", "build_train_wrapper"]


class DataShape(Protocol):
    """The shape of the data a model is built for."""

    task_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    tables: tuple[TableSpec, ...]
    num_dense: int


class Placement(NamedTuple):
    """Where and how the embedding tables are sharded.

    Attributes:
        sharding: Embedding sharding type, or ``auto`` (the planner chooses).
        device: This rank's device.
        batch_size: Per-rank batch size (the planner's cost model).
    """

    sharding: ShardingName
    device: torch.device
    batch_size: int


class TrainModel(NamedTuple):
    """The sharded model and the one optimizer that steps it (fused embedding + dense)."""

    model: DistributedModelParallel
    optimizer: CombinedOptimizer


def build_train_wrapper(model_cfg: ModelConfig, data: DataShape, embedding_device: str) -> TrainWrapper:
    """The ranker for ``data``'s shape wrapped with its losses (``loss_weights`` default to 1 per task).

    Args:
        model_cfg: The model.
        data: The data shape (tasks, tables, features).
        embedding_device: Where the embedding tables live: ``meta`` before sharding, ``cpu`` for unsharded use.

    Returns:
        The unsharded :class:`TrainWrapper`.

    Raises:
        ValueError: ``model.loss_weights`` does not have one entry per task.
    """
    num_tasks = len(data.task_names)
    if model_cfg.loss_weights is not None and len(model_cfg.loss_weights) != num_tasks:
        raise ValueError(f"model.loss_weights has {len(model_cfg.loss_weights)} entries for {num_tasks} tasks")
    return TrainWrapper(
        build_ranker(model_cfg, data.tables, data.feature_names, data.num_dense, num_tasks, embedding_device,
                     task_names=data.task_names),
        model_cfg.loss_weights or [1.0] * num_tasks,
        model_cfg.aux_loss_weight,
    )


def build_for_training(model_cfg: ModelConfig, data: DataShape, optim: OptimConfig, placement: Placement) -> TrainModel:
    """The sharded model with its fused embedding optimizer, and the combined optimizer with materialised state.

    Args:
        model_cfg: The model.
        data: The data shape.
        optim: The optimizers.
        placement: Sharding, device and batch size.

    Returns:
        The :class:`TrainModel`.
    """
    wrapper = build_train_wrapper(model_cfg, data, "meta")
    apply_embedding_optimizer(wrapper, optim.embedding, optim.embedding_lr)  # fused into the tables' backward
    model = shard_model(wrapper, data.tables, placement.sharding, placement.device, placement.batch_size)
    optimizer = make_dense_optimizer(model, optim.dense, optim.dense_lr)
    # Materialise lazy optimizer state (a zero-gradient step: parameters do not move) so that every checkpoint,
    # even one at step 0, holds the same optimizer keys a restore expects.
    optimizer.init_state()
    return TrainModel(model, optimizer)


def build_for_eval(model_cfg: ModelConfig, data: DataShape, placement: Placement) -> DistributedModelParallel:
    """The sharded model without optimizers (its weights are meant to be loaded from a checkpoint).

    Args:
        model_cfg: The model.
        data: The data shape.
        placement: Sharding, device and batch size (any world size: checkpoints reshard on load).

    Returns:
        The DistributedModelParallel module, in eval mode.
    """
    wrapper = build_train_wrapper(model_cfg, data, "meta")
    return shard_model(wrapper, data.tables, placement.sharding, placement.device, placement.batch_size).eval()
