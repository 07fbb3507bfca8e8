"""Expert-routing telemetry accumulated over an evaluation split.

Legend: B instances in a batch, T tasks, K experts per task, E experts in the pool, U the |U| values 0..E.

Per evaluated instance (a row with a positive weight for at least one task; the data pipeline's padding rows have
weight 0 everywhere and are left out) the accumulator counts:

- ``|U|``, the number of distinct experts the instance executes (``U = ∪_t K_t``), as a histogram over 0..E;
- the task x expert selection matrix: how many instances task t routed to expert e;
- the executed (instance, expert) pairs of every expert, whose spread is the expert load distribution
  (coefficient of variation std/mean over experts, and max/mean).

Everything is an integer count, so sums over batches and ranks are exact.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

from smes_rec.models.factory import ModelConfig
from smes_rec.modules.routing import RoutingStats, routing_stats

__all__ = ["ActivationBound", "RoutingAccumulator", "RoutingSummary", "activation_bound"]


class RoutingSummary(NamedTuple):
    """Routing statistics of a whole split.

    Attributes:
        num_instances: Instances counted.
        unique_hist_U: ``[E + 1]`` int64, instances that executed exactly u experts.
        mean_unique: Mean |U| per instance (NaN without instances).
        max_unique: Largest |U| seen (0 without instances).
        selection_TE: ``[T, E]`` int64, instances task t routed to expert e.
        pairs_E: ``[E]`` int64, executed (instance, expert) pairs of each expert.
        load_share_E: ``[E]`` float64, ``pairs_E`` over their sum.
        load_cv: Coefficient of variation (population std / mean) of ``pairs_E``.
        load_max_over_mean: ``max(pairs_E) / mean(pairs_E)``; 1 under perfectly even load.
    """

    num_instances: int
    unique_hist_U: torch.Tensor
    mean_unique: float
    max_unique: int
    selection_TE: torch.Tensor
    pairs_E: torch.Tensor
    load_share_E: torch.Tensor
    load_cv: float
    load_max_over_mean: float

    def to_dict(self) -> dict:
        """Plain-Python form for JSON."""
        return {
            "num_instances": self.num_instances,
            "mean_unique_experts": self.mean_unique,
            "max_unique_experts": self.max_unique,
            "unique_experts_histogram": self.unique_hist_U.tolist(),
            "selection": self.selection_TE.tolist(),
            "expert_pairs": self.pairs_E.tolist(),
            "expert_load_share": self.load_share_E.tolist(),
            "expert_load_cv": self.load_cv,
            "expert_load_max_over_mean": self.load_max_over_mean,
        }


class RoutingAccumulator:
    """Sums routing counts over batches (and, in :meth:`compute`, over ranks).

    Args:
        num_tasks: T.
        num_experts: E, the size of the pool the arch routes over.
    """

    def __init__(self, num_tasks: int, num_experts: int) -> None:
        self.num_tasks, self.num_experts = num_tasks, num_experts
        self.unique_hist_U = torch.zeros(num_experts + 1, dtype=torch.int64)
        self.selection_TE = torch.zeros(num_tasks, num_experts, dtype=torch.int64)
        self.pairs_E = torch.zeros(num_experts, dtype=torch.int64)

    def update(self, ids_BTK: torch.Tensor, mask_B: torch.Tensor) -> RoutingStats:
        """Adds one batch.

        Args:
            ids_BTK: The experts each task selected for each instance (int64).
            mask_B: Which instances to count (bool).

        Returns:
            The :func:`~smes_rec.modules.routing.routing_stats` of the counted instances (N of them).

        Raises:
            ValueError: On shapes that do not fit ``[B, T, K]`` with T tasks and ids below E.
        """
        if ids_BTK.dim() != 3 or ids_BTK.size(1) != self.num_tasks or mask_B.shape != ids_BTK.shape[:1]:
            raise ValueError(
                f"ids_BTK must be [B, T={self.num_tasks}, K] with mask_B [B], got {tuple(ids_BTK.shape)} and "
                f"{tuple(mask_B.shape)}"
            )
        ids_NTK = ids_BTK.detach()[mask_B.to(ids_BTK.device)].cpu()
        if ids_NTK.numel() and (int(ids_NTK.min()) < 0 or int(ids_NTK.max()) >= self.num_experts):
            raise ValueError(f"expert ids must lie in [0, {self.num_experts}), got {ids_NTK.min()}..{ids_NTK.max()}")
        stats = routing_stats(ids_NTK, self.num_experts)
        self.unique_hist_U += torch.bincount(stats.num_unique_B, minlength=self.num_experts + 1)
        self.pairs_E += stats.pairs_E
        self.selection_TE += stats.selection_TE
        return stats

    def compute(self, process_group: dist.ProcessGroup | None = None) -> RoutingSummary:
        """The summary of everything added (on every rank of ``process_group`` when given; all must call).

        Args:
            process_group: None for this process's counts only, else the group to sum over.

        Returns:
            The :class:`RoutingSummary`.
        """
        flat = torch.cat([self.unique_hist_U, self.selection_TE.flatten(), self.pairs_E])
        if process_group is not None:
            dist.all_reduce(flat, group=process_group)
        E, T = self.num_experts, self.num_tasks
        hist_U, selection_TE, pairs_E = flat.split([E + 1, T * E, E])
        num = int(hist_U.sum())
        values_U = torch.arange(E + 1, dtype=torch.float64)
        used_U = torch.nonzero(hist_U).flatten()
        pairs = pairs_E.double()
        mean_pairs = float(pairs.mean())
        return RoutingSummary(
            num_instances=num,
            unique_hist_U=hist_U.clone(),
            mean_unique=float((hist_U.double() * values_U).sum() / num) if num else float("nan"),
            max_unique=int(used_U.max()) if num else 0,
            selection_TE=selection_TE.reshape(T, E).clone(),
            pairs_E=pairs_E.clone(),
            load_share_E=pairs / pairs.sum() if num else torch.full((E,), float("nan"), dtype=torch.float64),
            load_cv=float(pairs.std(correction=0) / mean_pairs) if mean_pairs > 0 else float("nan"),
            load_max_over_mean=float(pairs.max() / mean_pairs) if mean_pairs > 0 else float("nan"),
        )


class ActivationBound(NamedTuple):
    """How many experts an instance may execute under an arch.

    Attributes:
        max_unique: The largest possible |U| per instance.
        sparse: True when routing picks a subset per instance (SMES, naive top-K); False when every expert runs.
        note: One line for reports, with the formula.
    """

    max_unique: int
    sparse: bool
    note: str


def activation_bound(model: ModelConfig, num_tasks: int, num_experts: int) -> ActivationBound:
    """The |U| bound of an arch (docs/design.md §2, step 6).

    Args:
        model: The model config.
        num_tasks: T.
        num_experts: E, the experts the arch's telemetry reports (for PLE: the final level's shared and task
            experts; for SharedBottom: its one shared MLP).

    Returns:
        The :class:`ActivationBound`.
    """
    T, E = num_tasks, num_experts
    if model.arch == "smes":
        ks, ka = model.k_shared, model.k_adaptive
        bound = min(E, ks + T * ka)
        return ActivationBound(bound, True, f"SMES bound K_s + T*K_a = {ks} + {T}*{ka} = {ks + T * ka}"
                               + (f", capped at E = {E}" if bound < ks + T * ka else ""))
    if model.arch == "naive_topk":
        k = model.k_shared + model.k_adaptive
        bound = min(E, T * k)
        return ActivationBound(bound, True, f"naive top-K bound min(E, T*K) = min({E}, {T}*{k}) = {bound}")
    if model.arch == "rankmixer" and model.rankmixer_sparse:
        return ActivationBound(E, True, f"sparse RankMixer: ReLU-routed token experts (L*N*J = {E}), a variable "
                                        "number per instance, at most all of them")
    return ActivationBound(E, False, f"{model.arch} is dense: all {E} experts run for every instance")
