"""Builds archs and the full ranker from a typed model config (leaf modules take plain arguments)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from smes_rec.models.multitask import MultiTaskModel
from smes_rec.models.ranker import Ranker
from smes_rec.models.sparse import SparseArch, TableSpec, make_embedding_bag_collection
from smes_rec.modules import (
    MLP,
    DenseMoEArch,
    HoMEArch,
    HoMEExperts,
    MMoEArch,
    MoMEArch,
    MoMEMasks,
    PLEArch,
    RankMixerArch,
    RankMixerShape,
    SharedBottomArch,
    SMESArch,
    SparseMoE,
    TaskTowers,
)

__all__ = [
    "Arch", "ArchName", "ModelConfig", "build_arch", "build_ranker", "default_task_categories",
    "rankmixer_column_order",
]

ArchName = Literal["smes", "naive_topk", "mmoe", "omoe", "ple", "shared_bottom", "home", "mome", "rankmixer"]
# Every arch build_arch can return: each maps h_BD to an ArchOutput and has an int ``out_features`` (H).
Arch = SMESArch | MMoEArch | DenseMoEArch | PLEArch | SharedBottomArch | HoMEArch | MoMEArch | RankMixerArch

# Substrings that mark a task as watch-time-like (HoME's default "passive" category 0).
WATCH_TIME_MARKERS = ("view", "play", "watch", "stay", "duration")


@dataclass(frozen=True)
class ModelConfig:
    """The model: shared bottom -> multi-task arch -> towers.

    Attributes:
        arch: ``smes``; ``naive_topk`` (SMES with k_shared=0 and k_adaptive=k_shared+k_adaptive, the same K);
            ``mmoe``; ``omoe`` (one-gate dense MoE); ``ple``; ``shared_bottom``; ``home``; ``mome``;
            ``rankmixer`` (its sparse-MoE variant with ``rankmixer_sparse``). docs/baselines.md lists their choices.
        bottom_layers: Shared-bottom MLP widths over ``[pooled embeddings, dense features]`` (ignored by
            ``rankmixer``, which tokenises the pooled embeddings themselves: its bottom is the identity).
        expert_layers: Widths of every expert (and of SharedBottom's shared MLP); the last is H.
        tower_layers: Hidden widths of every task tower.
        num_experts: E for SMES, naive top-K, MMoE and OMoE.
        k_shared: K_s (SMES).
        k_adaptive: K_a (SMES).
        task_weights: Stage-I task weights w_t (SMES); uniform when omitted.
        ple_shared_experts: Shared experts per PLE level.
        ple_task_experts: Experts per task and PLE level.
        ple_levels: PLE levels.
        home_task_categories: HoME's category index per task (``0..C-1``); derived from the task names when
            omitted (:func:`default_task_categories`).
        home_meta_shared: HoME meta-layer experts shared by all categories.
        home_meta_per_category: HoME meta-layer experts per category.
        home_task_shared: HoME task-layer experts shared by all tasks.
        home_task_per_category: HoME task-layer experts per category.
        home_task_specific: HoME task-layer experts per task (under the self-gate).
        home_lora_rank: Rank of HoME's feature gates.
        home_shared_meta_sees_all: HoME's shared meta gate mixes all meta experts (CGC style), not only the shared.
        mome_warmup_steps: MoME stage 1 (neuron masks) length in training steps; stage 2 follows. MoME uses
            ``num_experts`` experts over a base network of ``expert_layers``.
        mome_sigma: MoME's Gaussian gate noise.
        mome_lambda_neuron: lambda_1 of MoME's stage-1 L0 surrogate.
        mome_lambda_expert: lambda_2 of MoME's stage-2 L0 surrogate.
        mome_binary_eval: Binarise MoME's expert masks at evaluation.
        rankmixer_tokens: N, RankMixer's tokens (and mixing heads).
        rankmixer_dim: D, the token width (the task representation width).
        rankmixer_ffn_ratio: k, per-token FFN hidden width ``k * D``.
        rankmixer_layers: L, RankMixer blocks.
        rankmixer_groups: Groups of sparse feature names, concatenated in this order before chunking (features
            not listed follow in schema order, dense features last); omitted keeps the schema order.
        rankmixer_sparse: Use the sparse-MoE variant (per-token experts, ReLU routing, DTSI).
        rankmixer_experts: J, experts per token (sparse variant).
        rankmixer_expert_ratio: Expert hidden width ``ratio * D`` (sparse variant).
        rankmixer_target_sparsity: Fraction of zero inference gates the adaptive lambda aims at.
        rankmixer_lambda: Initial lambda of the L1 sparsity loss.
        rankmixer_lambda_rate: Multiplicative step of the adaptive lambda.
        rankmixer_infer_weight: alpha, the inference router's share of the training-time gates.
        loss_weights: lambda_t per task; 1 for every task when omitted.
        aux_loss_weight: beta, the weight of the arch's auxiliary loss (SMES: load balancing; MoME: its
            lambda-weighted L0 surrogates; sparse RankMixer: its adaptive-lambda L1 loss; those two already carry
            their own lambda, so beta = 1 applies it as the paper states).
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
    # The baselines' defaults are their spec dataclasses' own (one source; the flat fields keep YAML keys simple).
    home_task_categories: tuple[int, ...] | None = None
    home_meta_shared: int = HoMEExperts.meta_shared
    home_meta_per_category: int = HoMEExperts.meta_per_category
    home_task_shared: int = HoMEExperts.task_shared
    home_task_per_category: int = HoMEExperts.task_per_category
    home_task_specific: int = HoMEExperts.task_specific
    home_lora_rank: int = HoMEExperts.lora_rank
    home_shared_meta_sees_all: bool = HoMEExperts.shared_meta_sees_all
    mome_warmup_steps: int = MoMEMasks.warmup_steps
    mome_sigma: float = MoMEMasks.sigma
    mome_lambda_neuron: float = MoMEMasks.lambda_neuron
    mome_lambda_expert: float = MoMEMasks.lambda_expert
    mome_binary_eval: bool = MoMEMasks.binary_eval
    rankmixer_tokens: int = RankMixerShape.num_tokens
    rankmixer_dim: int = RankMixerShape.model_dim
    rankmixer_ffn_ratio: int = RankMixerShape.ffn_ratio
    rankmixer_layers: int = RankMixerShape.num_layers
    rankmixer_groups: tuple[tuple[str, ...], ...] | None = None
    rankmixer_sparse: bool = False
    rankmixer_experts: int = SparseMoE.num_experts
    rankmixer_expert_ratio: int = SparseMoE.expert_ratio
    rankmixer_target_sparsity: float = SparseMoE.target_sparsity
    rankmixer_lambda: float = SparseMoE.lambda_init
    rankmixer_lambda_rate: float = SparseMoE.lambda_rate
    rankmixer_infer_weight: float = SparseMoE.infer_weight
    loss_weights: tuple[float, ...] | None = None
    aux_loss_weight: float = 0.01

    def __post_init__(self) -> None:
        if self.aux_loss_weight < 0:
            raise ValueError(f"aux_loss_weight must be >= 0, got {self.aux_loss_weight}")
        # The chosen arch's settings are checked here, so a bad value fails while the config loads.
        specs = {"home": (self.home_experts,), "mome": (self.mome_masks,),
                 "rankmixer": (self.rankmixer_shape, self.rankmixer_moe)}
        for make in specs.get(self.arch, ()):
            try:
                make()
            except ValueError as e:
                raise ValueError(f"{self.arch}_* settings: {e}") from None
        if self.arch == "home" and self.home_task_categories and min(self.home_task_categories) < 0:
            raise ValueError(f"home_task_categories must be >= 0, got {list(self.home_task_categories)}")

    def home_experts(self) -> HoMEExperts:
        """HoME's expert counts from the ``home_*`` fields."""
        return HoMEExperts(meta_shared=self.home_meta_shared, meta_per_category=self.home_meta_per_category,
                           task_shared=self.home_task_shared, task_per_category=self.home_task_per_category,
                           task_specific=self.home_task_specific, lora_rank=self.home_lora_rank,
                           shared_meta_sees_all=self.home_shared_meta_sees_all)

    def mome_masks(self) -> MoMEMasks:
        """MoME's mask settings from the ``mome_*`` fields."""
        return MoMEMasks(warmup_steps=self.mome_warmup_steps, sigma=self.mome_sigma,
                         lambda_neuron=self.mome_lambda_neuron, lambda_expert=self.mome_lambda_expert,
                         binary_eval=self.mome_binary_eval)

    def rankmixer_shape(self) -> RankMixerShape:
        """RankMixer's N, D, k, L from the ``rankmixer_*`` fields."""
        return RankMixerShape(num_tokens=self.rankmixer_tokens, model_dim=self.rankmixer_dim,
                              ffn_ratio=self.rankmixer_ffn_ratio, num_layers=self.rankmixer_layers)

    def rankmixer_moe(self) -> SparseMoE | None:
        """The sparse variant's settings, or None for the dense RankMixer."""
        if not self.rankmixer_sparse:
            return None
        return SparseMoE(num_experts=self.rankmixer_experts, expert_ratio=self.rankmixer_expert_ratio,
                         target_sparsity=self.rankmixer_target_sparsity, lambda_init=self.rankmixer_lambda,
                         lambda_rate=self.rankmixer_lambda_rate, infer_weight=self.rankmixer_infer_weight)


def default_task_categories(task_names: Sequence[str]) -> tuple[int, ...]:
    """HoME's default task categories: watch-time tasks 0, interaction tasks 1 (renumbered if one is empty).

    A task is watch-time when its name contains one of ``view``, ``play``, ``watch``, ``stay`` or ``duration``
    (KuaiRand: ``long_view``); every other task (click, like, follow, comment, forward, hate, ...) is an
    interaction. If every task falls in one category there is one category, 0.
    """
    watch = [any(m in name.lower() for m in WATCH_TIME_MARKERS) for name in task_names]
    if all(watch) or not any(watch):
        return (0,) * len(task_names)
    return tuple(0 if w else 1 for w in watch)


def rankmixer_column_order(groups: Sequence[Sequence[str]], tables: Sequence[TableSpec],
                           feature_names: Sequence[str], num_dense: int) -> list[int]:
    """The input-column permutation that concatenates the pooled embeddings group by group.

    Args:
        groups: Groups of sparse feature names; features not listed follow in ``feature_names`` order.
        tables: The embedding tables (a feature's width is its table's dim).
        feature_names: The order of the pooled embeddings in the ranker's input.
        num_dense: Dense features, which always come last.

    Returns:
        Column indices into ``[pooled embeddings, dense features]``.

    Raises:
        ValueError: On an unknown or repeated feature name.
    """
    dim = {f: t.dim for t in tables for f in t.feature_names}
    start, columns = 0, {}
    for f in feature_names:
        columns[f] = list(range(start, start + dim[f]))
        start += dim[f]
    listed = [f for group in groups for f in group]
    unknown = sorted(set(listed) - set(feature_names))
    if unknown:
        raise ValueError(
            f"model.rankmixer_groups names unknown sparse features {unknown}; known: {list(feature_names)}")
    repeated = sorted({f for f in listed if listed.count(f) > 1})
    if repeated:
        raise ValueError(f"model.rankmixer_groups lists {repeated} more than once")
    order = listed + [f for f in feature_names if f not in listed]
    return [c for f in order for c in columns[f]] + list(range(start, start + num_dense))


def build_arch(cfg: ModelConfig, in_features: int, num_tasks: int,
               task_categories: Sequence[int] | None = None,
               column_order: Sequence[int] | None = None) -> Arch:
    """The dense multi-task arch named by ``cfg.arch``.

    Args:
        cfg: The model config.
        in_features: The arch's input width.
        num_tasks: T.
        task_categories: HoME's category per task (``cfg.home_task_categories`` wins when set).
        column_order: RankMixer's input-column grouping (None keeps the order).

    Returns:
        The arch module.
    """
    layers = list(cfg.expert_layers)
    if cfg.arch == "home":
        categories = cfg.home_task_categories or task_categories
        if categories is None:
            raise ValueError("arch home needs model.home_task_categories, or task names to derive them from")
        if len(categories) != num_tasks:
            raise ValueError(
                f"model.home_task_categories has {len(categories)} entries but there are {num_tasks} tasks")
        return HoMEArch(in_features, categories, expert_layers=layers, experts=cfg.home_experts())
    if cfg.arch == "mome":
        return MoMEArch(in_features, num_tasks, num_experts=cfg.num_experts, expert_layers=layers,
                        masks=cfg.mome_masks())
    if cfg.arch == "rankmixer":
        return RankMixerArch(in_features, num_tasks, shape=cfg.rankmixer_shape(), moe=cfg.rankmixer_moe(),
                             column_order=column_order)
    if cfg.arch == "smes":
        return SMESArch(in_features, num_tasks, num_experts=cfg.num_experts, k_shared=cfg.k_shared,
                        k_adaptive=cfg.k_adaptive, expert_layers=layers, task_weights=cfg.task_weights)
    if cfg.arch == "naive_topk":
        return SMESArch(in_features, num_tasks, num_experts=cfg.num_experts, k_shared=0,
                        k_adaptive=cfg.k_shared + cfg.k_adaptive, expert_layers=layers)
    if cfg.arch == "mmoe":
        return MMoEArch(in_features, num_tasks, num_experts=cfg.num_experts, expert_layers=layers)
    if cfg.arch == "omoe":
        return DenseMoEArch(in_features, num_tasks, num_experts=cfg.num_experts, expert_layers=layers)
    if cfg.arch == "ple":
        return PLEArch(in_features, num_tasks, num_shared_experts=cfg.ple_shared_experts,
                       num_task_experts=cfg.ple_task_experts, expert_layers=layers, num_levels=cfg.ple_levels)
    if cfg.arch == "shared_bottom":
        return SharedBottomArch(in_features, num_tasks, expert_layers=layers)
    raise ValueError(f"unknown arch {cfg.arch!r}")


def build_ranker(
    cfg: ModelConfig,
    tables: Sequence[TableSpec],
    feature_names: Sequence[str],
    num_dense: int,
    num_tasks: int,
    embedding_device: torch.device | str = "meta",
    task_names: Sequence[str] | None = None,
) -> Ranker:
    """The full ranker; its embeddings on the meta device by default (DMP materialises the shards).

    ``rankmixer`` gets an identity bottom and the pooled embeddings themselves (grouped by
    ``cfg.rankmixer_groups``); ``home`` derives its task categories from ``task_names`` unless the config sets them.

    Args:
        cfg: The model config.
        tables: Embedding tables.
        feature_names: Sparse features in the order they are concatenated.
        num_dense: D, the number of dense features.
        num_tasks: T.
        embedding_device: Where to allocate embedding weights (``cpu`` for an unsharded model).
        task_names: The tasks' names (HoME's default categories).

    Returns:
        The :class:`~smes_rec.models.ranker.Ranker`.
    """
    if cfg.task_weights is not None and len(cfg.task_weights) != num_tasks:
        raise ValueError(f"model.task_weights has {len(cfg.task_weights)} entries but the data has {num_tasks} tasks")
    sparse = SparseArch(make_embedding_bag_collection(tables, embedding_device), feature_names)
    if task_names is not None and len(task_names) != num_tasks:
        raise ValueError(f"{len(task_names)} task names for {num_tasks} tasks")
    in_features = sparse.out_features + num_dense
    column_order = None
    if cfg.arch == "rankmixer":
        bottom = MLP(in_features, ())  # identity: RankMixer tokenises the pooled embeddings themselves
        if cfg.rankmixer_groups is not None:
            column_order = rankmixer_column_order(cfg.rankmixer_groups, tables, feature_names, num_dense)
    else:
        bottom = MLP(in_features, cfg.bottom_layers)
    categories = default_task_categories(task_names) if task_names is not None else None
    arch = build_arch(cfg, bottom.out_features, num_tasks, categories, column_order)
    towers = TaskTowers(num_tasks, arch.out_features, cfg.tower_layers)
    return Ranker(sparse, MultiTaskModel(bottom, arch, towers))
