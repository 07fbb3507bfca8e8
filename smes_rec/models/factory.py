"""Builds archs and the full ranker from a typed model config (leaf modules take plain arguments)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from smes_rec.models.multitask import MultiTaskModel
from smes_rec.models.ranker import Ranker
from smes_rec.models.sparse import SparseArch, TableSpec, make_embedding_bag_collection
from smes_rec.modules import MLP, DenseMoEArch, MMoEArch, PLEArch, SharedBottomArch, SMESArch, TaskTowers

__all__ = ["ArchName", "ModelConfig", "build_arch", "build_ranker"]

ArchName = Literal["smes", "naive_topk", "mmoe", "omoe", "ple", "shared_bottom"]


@dataclass(frozen=True)
class ModelConfig:
    """The model: shared bottom -> multi-task arch -> towers.

    Attributes:
        arch: ``smes``; ``naive_topk`` (SMES with k_shared=0 and k_adaptive=k_shared+k_adaptive, the same K);
            ``mmoe``; ``omoe`` (one-gate dense MoE); ``ple``; ``shared_bottom``.
        bottom_layers: Shared-bottom MLP widths over ``[pooled embeddings, dense features]``.
        expert_layers: Widths of every expert (and of SharedBottom's shared MLP); the last is H.
        tower_layers: Hidden widths of every task tower.
        num_experts: E for SMES, naive top-K, MMoE and OMoE.
        k_shared: K_s (SMES).
        k_adaptive: K_a (SMES).
        task_weights: Stage-I task weights w_t (SMES); uniform when omitted.
        ple_shared_experts: Shared experts per PLE level.
        ple_task_experts: Experts per task and PLE level.
        ple_levels: PLE levels.
        loss_weights: lambda_t per task; 1 for every task when omitted.
        aux_loss_weight: beta, the weight of the load-balancing loss.
    """

    arch: ArchName = "smes"
    bottom_layers: tuple[int, ...] = (256,)
    expert_layers: tuple[int, ...] = (128, 64)
    tower_layers: tuple[int, ...] = (32,)
    num_experts: int = 16
    k_shared: int = 2
    k_adaptive: int = 1
    task_weights: tuple[float, ...] | None = None
    ple_shared_experts: int = 2
    ple_task_experts: int = 1
    ple_levels: int = 1
    loss_weights: tuple[float, ...] | None = None
    aux_loss_weight: float = 0.01

    def __post_init__(self) -> None:
        if self.aux_loss_weight < 0:
            raise ValueError(f"aux_loss_weight must be >= 0, got {self.aux_loss_weight}")


def build_arch(cfg: ModelConfig, in_features: int, num_tasks: int) -> nn.Module:
    """The dense multi-task arch named by ``cfg.arch``."""
    layers = list(cfg.expert_layers)
    if cfg.arch == "smes":
        return SMESArch(in_features, num_tasks, cfg.num_experts, cfg.k_shared, cfg.k_adaptive, layers,
                        task_weights=cfg.task_weights)
    if cfg.arch == "naive_topk":
        return SMESArch(in_features, num_tasks, cfg.num_experts, 0, cfg.k_shared + cfg.k_adaptive, layers)
    if cfg.arch == "mmoe":
        return MMoEArch(in_features, num_tasks, cfg.num_experts, layers)
    if cfg.arch == "omoe":
        return DenseMoEArch(in_features, num_tasks, cfg.num_experts, layers)
    if cfg.arch == "ple":
        return PLEArch(in_features, num_tasks, cfg.ple_shared_experts, cfg.ple_task_experts, layers,
                       num_levels=cfg.ple_levels)
    if cfg.arch == "shared_bottom":
        return SharedBottomArch(in_features, num_tasks, layers)
    raise ValueError(f"unknown arch {cfg.arch!r}")


def build_ranker(
    cfg: ModelConfig,
    tables: Sequence[TableSpec],
    feature_names: Sequence[str],
    num_dense: int,
    num_tasks: int,
    embedding_device: torch.device | str = "meta",
) -> Ranker:
    """The full ranker; its embeddings on the meta device by default (DMP materialises the shards).

    Args:
        cfg: The model config.
        tables: Embedding tables.
        feature_names: Sparse features in the order they are concatenated.
        num_dense: D, the number of dense features.
        num_tasks: T.
        embedding_device: Where to allocate embedding weights (``cpu`` for an unsharded model).

    Returns:
        The :class:`~smes_rec.models.ranker.Ranker`.
    """
    if cfg.task_weights is not None and len(cfg.task_weights) != num_tasks:
        raise ValueError(f"model.task_weights has {len(cfg.task_weights)} entries but the data has {num_tasks} tasks")
    sparse = SparseArch(make_embedding_bag_collection(tables, embedding_device), feature_names)
    bottom = MLP(sparse.out_features + num_dense, cfg.bottom_layers)
    arch = build_arch(cfg, bottom.out_features, num_tasks)
    towers = TaskTowers(num_tasks, arch.out_features, cfg.tower_layers)
    return Ranker(sparse, MultiTaskModel(bottom, arch, towers))
