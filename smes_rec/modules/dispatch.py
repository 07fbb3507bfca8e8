"""Sort-based, dropless, deduplicated dispatch of instances to experts, and the gated combine.

Legend:
    B   instances, T tasks, K experts per task, E experts
    P   dispatched rows: the (instance, expert) pairs of ``U = ∪_t K_t``, sorted by expert then instance
    D   input features, H expert output features

Every pair of U becomes exactly one row, however many tasks chose that expert for that instance; every task then
reads the row back with its own gate. Nothing is computed for experts outside U.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from smes_rec.modules.routing import expert_membership

__all__ = ["DispatchPlan", "combine", "dispatch_rows", "plan_dispatch"]


class DispatchPlan(NamedTuple):
    """Where every (instance, expert) pair of U lives in the expert-sorted row buffer.

    Attributes:
        instance_of_row_P: int64 instance of each row; padding rows (static mode) point at row B, a zero row.
        expert_of_row_P: int64 expert of each row; padding rows hold E, an expert that does not exist.
        offsets_E: int32 cumulative row counts per expert (the grouped-GEMM ``offs`` convention).
        row_BTK: int64 row holding the output of expert ``ids_BTK[b, t, k]`` for instance b.
    """

    instance_of_row_P: torch.Tensor
    expert_of_row_P: torch.Tensor
    offsets_E: torch.Tensor
    row_BTK: torch.Tensor


def plan_dispatch(
    ids_BTK: torch.Tensor, num_experts: int, max_unique: int, static: bool | None = None
) -> DispatchPlan:
    """Deduplicates the routed pairs and sorts them by expert.

    Args:
        ids_BTK: Expert ids chosen by every task (unique within a task).
        num_experts: E.
        max_unique: An upper bound on ``|U_b|`` (``min(E, K_s + T * K_a)`` for SMES), used by the static buffer.
        static: ``False`` sizes the buffer exactly, which reads the pair count on the host (free on CPU).
            ``True`` gives a static buffer of ``B * max_unique`` rows, unused ones padding, so nothing synchronises
            with the host on GPU. ``None`` picks static on CUDA.

    Returns:
        A :class:`DispatchPlan`.
    """
    B = ids_BTK.size(0)
    member_EB = expert_membership(ids_BTK, num_experts).t()
    member_X = member_EB.reshape(-1)  # X = E * B pairs, expert-major: the flat order *is* the sorted order
    row_of_pair_X = torch.cumsum(member_X, dim=0) - 1
    offsets_E = member_EB.sum(dim=1).cumsum(dim=0).to(torch.int32)
    if static is None:
        static = ids_BTK.is_cuda
    num_rows = B * max_unique if static else int(offsets_E[-1])

    # Scatter member pairs to their rows; non-members go to a discarded slot at index num_rows.
    target_X = torch.where(member_X, row_of_pair_X, torch.full_like(row_of_pair_X, num_rows))
    pair_X = torch.arange(member_X.numel(), device=ids_BTK.device)
    instance_of_row_P = torch.full((num_rows + 1,), B, dtype=torch.int64, device=ids_BTK.device)
    instance_of_row_P = instance_of_row_P.scatter(0, target_X, pair_X % B)[:num_rows]
    expert_of_row_P = torch.full((num_rows + 1,), num_experts, dtype=torch.int64, device=ids_BTK.device)
    expert_of_row_P = expert_of_row_P.scatter(0, target_X, pair_X // B)[:num_rows]

    row_BE = row_of_pair_X.view(num_experts, B).t()
    row_BTK = row_BE.gather(1, ids_BTK.reshape(B, -1)).view_as(ids_BTK)
    return DispatchPlan(instance_of_row_P, expert_of_row_P, offsets_E, row_BTK)


def dispatch_rows(h_BD: torch.Tensor, instance_of_row_P: torch.Tensor) -> torch.Tensor:
    """Gathers each row's instance input. Row index B reads a zero row, so padding rows carry no gradient."""
    h_padded = torch.cat([h_BD, h_BD.new_zeros(1, h_BD.size(1))], dim=0)
    return h_padded.index_select(0, instance_of_row_P)


def combine(y_PH: torch.Tensor, row_BTK: torch.Tensor, gates_BTK: torch.Tensor) -> torch.Tensor:
    """Task representations ``h_t = sum_k g_{t,k} y_{row(b,t,k)}``.

    Args:
        y_PH: Expert outputs per dispatched row.
        row_BTK: Row of each chosen expert (from :class:`DispatchPlan`).
        gates_BTK: Gates of each chosen expert.

    Returns:
        ``[T, B, H]`` task representations.
    """
    B, T, K = row_BTK.shape
    # One fused gather-and-weighted-sum per (instance, task): no [B, T, K, H] copy of the rows is materialised.
    out_XH = F.embedding_bag(
        row_BTK.reshape(B * T, K), y_PH, per_sample_weights=gates_BTK.reshape(B * T, K).to(y_PH.dtype), mode="sum",
        norm_type=2.0,  # the default, spelled as a float: fx records it and TorchScript wants a float
    )
    return out_XH.view(B, T, -1).transpose(0, 1)
