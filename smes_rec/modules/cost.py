"""Parameter counts and forward FLOPs per instance of any arch, for budget-matched comparisons.

Legend: B instances, D input features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from smes_rec.modules.mome import MoMEArch
from smes_rec.modules.rankmixer import RankMixerArch
from smes_rec.modules.routing import routing_stats
from smes_rec.modules.smes import SMESArch

__all__ = ["ArchCost", "arch_cost"]


class ArchCost(NamedTuple):
    """What one arch costs.

    Attributes:
        total_params: Every parameter (MoME: including its mask logits, as large as E + 1 base networks).
        active_params: Parameters one instance's inference forward uses, averaged over the batch: the total for
            dense archs; SMES counts the mean |U| experts it runs, sparse RankMixer its mean active token experts
            and not its training-only router.
        flops_per_instance: Inference (eval-mode) forward FLOPs per instance, measured by
            ``torch.utils.flop_counter.FlopCounterMode`` on a random batch: matrix products only (2 per
            multiply-add), so sparse archs report the FLOPs of the experts they actually run.
        mask_params: MoME's mask logits (0 for other archs), part of ``total_params``.
    """

    total_params: int
    active_params: float
    flops_per_instance: float
    mask_params: int


def _grouped_mm_flops(a_shape: Sequence[int], b_shape: Sequence[int], *args: Any, out_shape: Any = None,
                      **kwargs: Any) -> int:
    """``torch._grouped_mm(x [P, D], w [G, D, F])`` computes every row once: ``2 P D F``."""
    return 2 * a_shape[0] * a_shape[-1] * b_shape[-1]


def _numel(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


def _named_params(modules: Iterable[nn.Module], names: Sequence[str]) -> list[nn.Parameter]:
    return [m.get_parameter(name) for m in modules for name in names]


def arch_cost(arch: nn.Module, in_features: int, batch_size: int = 256, seed: int = 0) -> ArchCost:
    """Counts an arch's parameters and measures its inference FLOPs per instance.

    The arch runs once in eval mode without gradients on ``randn(batch_size, in_features)`` (its training mode is
    restored after). Sparse archs' FLOPs and active parameters depend on the routing of that batch.

    Args:
        arch: Any arch with the ``ArchOutput`` contract.
        in_features: D, its input width.
        batch_size: B of the random batch.
        seed: Seed of the random batch.

    Returns:
        The :class:`ArchCost`.
    """
    h_BD = torch.randn(batch_size, in_features, generator=torch.Generator().manual_seed(seed))
    param = next(arch.parameters(), None)
    if param is not None:
        h_BD = h_BD.to(param.device)
    was_training = arch.training
    arch.eval()
    try:
        counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten._grouped_mm: _grouped_mm_flops})
        with torch.no_grad(), counter:
            out = arch(h_BD)
    finally:
        arch.train(was_training)
    total = _numel(arch.parameters())
    active = float(total)
    mask = 0
    mean_active = routing_stats(out.routing.ids_BTK, out.routing.probs_BTE.size(-1)).num_unique_B.float().mean().item()
    if isinstance(arch, SMESArch):
        per_expert = _numel(arch.experts.parameters()) / arch.num_experts
        active = total - per_expert * (arch.num_experts - mean_active)
    elif isinstance(arch, RankMixerArch) and arch.moe is not None:
        per_expert = _numel(_named_params(arch.ffns, ("w1", "b1", "w2", "b2"))) / arch.num_experts
        train_router = _numel(_named_params(arch.ffns, ("router_train", "router_train_bias")))
        active = total - train_router - per_expert * (arch.num_experts - mean_active)
    elif isinstance(arch, MoMEArch):
        mask = _numel(arch.neuron_mu.parameters()) + _numel(arch.expert_mu.parameters())
    return ArchCost(total, active, counter.get_total_flops() / batch_size, mask)
