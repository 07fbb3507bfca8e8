"""SMES progressive expert routing, the global multi-gate load-balancing loss, and routing statistics.

Pure functions on tensors; no parameters live here (the router projection belongs to ``SMESArch``).

Legend:
    B   instances in the batch
    T   tasks
    E   experts in the shared pool
    S   task-shared experts per instance (K_s)
    A   task-adaptive experts per task and instance (K_a)
    K   experts per task, S + A

Algorithm (docs/design.md §2): per task ``p_t = softmax(z_t)`` over all E experts (float32). Stage I pools the task
distributions, ``s_e = sum_t w_t p_{t,e}``, and takes ``S = top-K_s(s)`` once per instance for every task. Stage II
lets each task take ``top-K_a`` of its own logits over the experts outside S. Gates renormalise ``p_t`` over the K
chosen experts. Ties are broken towards the lower expert index (stable sort), so routing is deterministic.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "Routing",
    "RoutingStats",
    "expert_membership",
    "multi_gate_load_balance_loss",
    "progressive_route",
    "routing_stats",
]


class Routing(NamedTuple):
    """The routing decision for one batch.

    Attributes:
        ids_BTK: int64 expert ids; ``[:, :, :S]`` is the shared set (identical across tasks, descending pooled
            score), ``[:, :, S:]`` the task's adaptive experts (descending task logit).
        gates_BTK: float32 gates, ``p_t`` renormalised over the task's K experts (each row sums to 1).
        probs_BTE: float32 per-task softmax over all E experts.
    """

    ids_BTK: torch.Tensor
    gates_BTK: torch.Tensor
    probs_BTE: torch.Tensor


class RoutingStats(NamedTuple):
    """Execution and load statistics of a routing decision (:func:`routing_stats`).

    Attributes:
        num_unique_B: int64 ``|U_b|``, the experts instance b actually executes.
        pairs_E: int64 executed (instance, expert) pairs of each expert.
        expert_load_E: float32 share of the executed pairs run by each expert (sums to 1).
        load_cv: float32 scalar, coefficient of variation (std / mean) of ``pairs_E``.
        selection_TE: int64 counts of how many instances task t routed to expert e.
    """

    num_unique_B: torch.Tensor
    pairs_E: torch.Tensor
    expert_load_E: torch.Tensor
    load_cv: torch.Tensor
    selection_TE: torch.Tensor


def _top_k_by_sort(scores_XE: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores along the last dim, descending, ties to the lower index (a stable sort)."""
    return torch.sort(scores_XE, dim=-1, descending=True, stable=True).indices[..., :k]


def _top_k_by_topk(scores_XE: torch.Tensor, k: int) -> torch.Tensor:
    """The same indices as :func:`_top_k_by_sort`, from ``torch.topk`` where that is exact.

    ``torch.topk`` is O(E) per row against the sort's O(E log E), but its order among equal scores is unspecified.
    A row can only differ where two of its k + 1 largest scores are equal (a tie inside the top k or at its
    boundary) or NaN; those rows, rare with real-valued router scores, are redone by the stable sort. Reading
    whether any exist is a host read, free on CPU, so this is the CPU path.
    """
    E = scores_XE.size(-1)
    if k == 0 or k >= E:
        return _top_k_by_sort(scores_XE, k)
    scores_RE = scores_XE.reshape(-1, E)  # R rows, whatever the leading dims (none included)
    values_RJ, ids_RJ = torch.topk(scores_RE, k + 1, dim=-1)  # J = k + 1, descending
    suspect_R = (values_RJ[:, 1:] == values_RJ[:, :-1]).any(-1) | values_RJ.isnan().any(-1)
    ids_RK = ids_RJ[:, :k]
    if bool(suspect_R.any()):
        rows_N = suspect_R.nonzero().squeeze(1)
        ids_RK = ids_RK.index_put((rows_N,), _top_k_by_sort(scores_RE[rows_N], k))
    return ids_RK.view(list(scores_XE.shape[:-1]) + [k])  # noqa: RUF005 (TorchScript has no star-unpacking)


def _top_k_by_argmax(scores_XE: torch.Tensor, k: int) -> torch.Tensor:
    """The same indices as :func:`_top_k_by_sort` for small k: k passes of ``max``, each masking its pick.

    ``max`` returns the first of equal maxima, the lower index, so ties need no special care. A pick that is not
    finite (a NaN, or -inf when fewer than k finite scores remain) may differ from the sort: those rows are redone
    by the stable sort.
    """
    E = scores_XE.size(-1)
    scores_RE = scores_XE.reshape(-1, E)
    masked_RE = scores_RE
    ids: list[torch.Tensor] = []
    finite_R = torch.ones(scores_RE.size(0), dtype=torch.bool, device=scores_RE.device)
    for j in range(k):
        values_R, ids_R = masked_RE.max(dim=-1)
        ids.append(ids_R)
        finite_R = finite_R & values_R.isfinite()
        if j + 1 < k:
            masked_RE = masked_RE.scatter(1, ids_R.unsqueeze(1), float("-inf"))
    ids_RK = torch.stack(ids, dim=1)
    if not bool(finite_R.all()):
        rows_N = (~finite_R).nonzero().squeeze(1)
        ids_RK = ids_RK.index_put((rows_N,), _top_k_by_sort(scores_RE[rows_N], k))
    return ids_RK.view(list(scores_XE.shape[:-1]) + [k])  # noqa: RUF005 (TorchScript has no star-unpacking)


def _top_k_stable(scores_XE: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores along the last dim, descending, ties to the lower index.

    A segmented sort is cheap on GPU and never synchronises with the host; on CPU, k passes of ``max`` (small k) or
    ``torch.topk`` with the tied rows redone are several times faster than the sort at E >= 64.
    """
    scores_XE = scores_XE.detach()  # the selection is discrete: no gradient flows through it
    if scores_XE.is_cuda:
        return _top_k_by_sort(scores_XE, k)
    if 0 < k <= 3 and k < scores_XE.size(-1):
        return _top_k_by_argmax(scores_XE, k)  # several times faster than topk on CPU for the usual K_s, K_a
    return _top_k_by_topk(scores_XE, k)


torch.fx.wrap("_top_k_stable")  # a leaf in fx graphs: the CPU path branches on the data


def progressive_route(
    logits_BTE: torch.Tensor,
    task_weights_T: torch.Tensor,
    k_shared: int,
    k_adaptive: int,
) -> Routing:
    """Routes every instance: K_s task-shared experts chosen jointly, then K_a task-adaptive experts per task.

    With ``k_shared=0`` this is the classic independent per-task top-K (each task takes the top ``k_adaptive`` of
    its own logits); with ``k_adaptive=0`` every task uses the shared set alone.

    Args:
        logits_BTE: Router logits ``z``; computed in float32 here whatever their dtype.
        task_weights_T: Positive task weights ``w_t`` for the pooled stage-I score.
        k_shared: K_s, shared experts per instance.
        k_adaptive: K_a, adaptive experts per task and instance.

    Returns:
        A :class:`Routing` with ``ids_BTK``, ``gates_BTK`` and ``probs_BTE``.
    """
    logits_BTE = logits_BTE.float()
    B, T, E = logits_BTE.shape
    probs_BTE = torch.softmax(logits_BTE, dim=-1)

    # Stage I: one shared set per instance from the task-weighted pooled distribution.
    pooled_BE = (probs_BTE.detach() * task_weights_T.to(probs_BTE.dtype).unsqueeze(1)).sum(dim=1)
    shared_BS = _top_k_stable(pooled_BE, k_shared)
    shared_BTS = shared_BS.unsqueeze(1).expand(B, T, k_shared)

    # Stage II: each task ranks its own logits over the experts outside S.
    in_shared_BE = torch.zeros_like(pooled_BE, dtype=torch.bool).scatter(1, shared_BS, True)
    outside_BTE = logits_BTE.detach().masked_fill(in_shared_BE.unsqueeze(1), float("-inf"))
    adaptive_BTA = _top_k_stable(outside_BTE, k_adaptive)

    ids_BTK = torch.cat([shared_BTS, adaptive_BTA], dim=-1)
    chosen_BTK = probs_BTE.gather(-1, ids_BTK)
    gates_BTK = chosen_BTK / chosen_BTK.sum(dim=-1, keepdim=True)
    return Routing(ids_BTK=ids_BTK, gates_BTK=gates_BTK, probs_BTE=probs_BTE)


def multi_gate_load_balance_loss(probs_BTE: torch.Tensor, ids_BTK: torch.Tensor, num_experts: int) -> torch.Tensor:
    """The global multi-gate load-balancing loss, one statistic pooled over all task gates.

    ``L_lb = (E / K) * sum_e fbar_e * pbar_e`` with ``fbar_e`` the selection frequency of expert e over every
    (instance, task) and ``pbar_e`` its mean routing probability. It is 1.0 under perfectly uniform routing and
    grows as load concentrates. Gradients flow through ``pbar`` (the selection is discrete).

    Args:
        probs_BTE: Per-task softmax over all experts.
        ids_BTK: Selected experts per task.
        num_experts: E.

    Returns:
        A float32 scalar.
    """
    B, T, K = ids_BTK.shape
    ids_X = ids_BTK.reshape(-1)
    ones_X = torch.ones_like(ids_X, dtype=torch.float32)
    counts_E = ones_X.new_zeros(num_experts).scatter_add(0, ids_X, ones_X)
    fbar_E = counts_E / (B * T)  # sums to K: a task's K experts are distinct
    pbar_E = probs_BTE.float().mean(dim=(0, 1))  # sums to 1
    return (num_experts / K) * (fbar_E * pbar_E).sum()


def expert_membership(ids_BTK: torch.Tensor, num_experts: int) -> torch.Tensor:
    """``[B, E]`` bool: whether instance b executes expert e, i.e. e is in ``U_b = ∪_t K_t(b)``."""
    B = ids_BTK.size(0)
    member_BE = ids_BTK.new_zeros((B, num_experts), dtype=torch.bool)
    return member_BE.scatter(1, ids_BTK.reshape(B, -1), True)


def routing_stats(ids_BTK: torch.Tensor, num_experts: int) -> RoutingStats:
    """The routing statistics training logs and evaluation report, from the routed expert ids (no host sync).

    Archs return only the routing (:class:`Routing`); these statistics cost ``O(B * (T * K + E))`` and are
    computed by their consumers when they are reported, not on every forward.

    Args:
        ids_BTK: Selected experts per task (int64, in ``[0, num_experts)``).
        num_experts: E.

    Returns:
        A :class:`RoutingStats`.
    """
    member_BE = expert_membership(ids_BTK, num_experts)
    pairs_E = member_BE.sum(dim=0)
    pairs_float_E = pairs_E.float()
    expert_load_E = pairs_float_E / pairs_float_E.sum().clamp_min(1.0)
    load_cv = pairs_float_E.std(correction=0) / pairs_float_E.mean().clamp_min(1e-12)
    T = ids_BTK.size(1)
    ids_TX = ids_BTK.transpose(0, 1).reshape(T, -1)
    selection_TE = ids_BTK.new_zeros((T, num_experts)).scatter_add(1, ids_TX, torch.ones_like(ids_TX))
    return RoutingStats(
        num_unique_B=member_BE.sum(dim=1),
        pairs_E=pairs_E,
        expert_load_E=expert_load_E,
        load_cv=load_cv,
        selection_TE=selection_TE,
    )
