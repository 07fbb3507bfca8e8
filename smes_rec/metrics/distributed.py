"""Exact AUC and GAUC over the ranks of a ``torch.distributed`` process group (docs/design.md §4).

Legend: N local rows, M rows after an exchange, T tasks, W world size.

- GAUC: every row is sent to the rank that owns its group (``group_id % W``) with ``all_to_all_single``, so each
  group's AUC is computed from all of its rows on one rank; the additive partial sums are then all-reduced.
  Memory per rank: its owned groups' rows.
- AUC: every rank gathers all rows (``all_gather`` of padded, variable-length tensors) and computes the same
  number. Memory per rank: 24 bytes (float64 prediction, label, weight) times the global number of rows, per
  call; this is meant for evaluation-scale data.

Results equal the single-process functions on the union of all ranks' rows, up to float64 summation order.
Input errors are agreed on: if any rank's input is invalid, every rank raises ``ValueError`` (no rank is left
waiting in a collective). ``process_group=None`` is the default group, as in ``torch.distributed``. Works with
gloo (CPU tensors) and NCCL (tensors are moved to the current CUDA device for the collectives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from smes_rec.metrics.auc import (
    WEIGHTINGS,
    GAUCResult,
    Weighting,
    auc,
    gauc_from_partial_sums,
    gauc_partial_sums,
    per_group_auc,
)
from smes_rec.metrics.inputs import check_auc_inputs

ProcessGroup = dist.ProcessGroup


def _comm_device(process_group: ProcessGroup | None) -> torch.device:
    # NCCL only moves CUDA tensors; gloo and mixed "cpu:gloo,cuda:nccl" groups move CPU tensors.
    if dist.get_backend(process_group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree_on_errors(check: Callable[[], None], process_group: ProcessGroup | None = None) -> None:
    """Runs ``check`` locally and raises ``ValueError`` on every rank if it raised on any rank.

    Args:
        check: a local validation that raises ``ValueError`` on bad input.
        process_group: the ranks that must agree (None: the default group).

    Raises:
        ValueError: the local message on the failing rank(s), a pointer to the failing rank elsewhere.
    """
    error: ValueError | None = None
    try:
        check()
    except ValueError as exc:
        error = exc
    device = _comm_device(process_group)
    failed = torch.tensor([0 if error is None else 1], dtype=torch.long, device=device)
    dist.all_reduce(failed, op=dist.ReduceOp.MAX, group=process_group)
    if error is not None:
        raise error
    if int(failed.item()):
        raise ValueError("invalid metric input on another rank (see that rank's error)")


def all_reduce_sum(tensor: torch.Tensor, process_group: ProcessGroup | None = None) -> torch.Tensor:
    """Returns the element-wise sum of ``tensor`` over the ranks, on ``tensor``'s device (input unchanged).

    Args:
        tensor: the local values; same shape and dtype on every rank.
        process_group: the ranks to sum over (None: the default group).

    Returns:
        The summed tensor.
    """
    reduced = tensor.to(_comm_device(process_group), copy=True)
    dist.all_reduce(reduced, group=process_group)
    return reduced.to(tensor.device)


def all_gather_rows(rows_NX: torch.Tensor, process_group: ProcessGroup | None = None) -> torch.Tensor:
    """Concatenates every rank's rows (variable counts allowed) in rank order, on every rank.

    Args:
        rows_NX: ``[N, ...]`` local rows; trailing dimensions and dtype must match across ranks.
        process_group: the ranks to gather from (None: the default group).

    Returns:
        ``[sum_r N_r, ...]`` on ``rows_NX``'s device.
    """
    world_size = dist.get_world_size(process_group)
    device = _comm_device(process_group)
    rows = rows_NX.to(device).contiguous()
    count = torch.tensor([rows.shape[0]], dtype=torch.long, device=device)
    counts = [torch.empty_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count, group=process_group)
    sizes = [int(c.item()) for c in counts]
    # all_gather needs equal shapes: pad to the largest rank, then trim.
    padded = rows.new_zeros((max(sizes), *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    buffers = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(buffers, padded, group=process_group)
    return torch.cat([buf[:size] for buf, size in zip(buffers, sizes, strict=False)]).to(rows_NX.device)


def exchange_rows(
    dest_rank_N: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    process_group: ProcessGroup | None = None,
) -> list[torch.Tensor]:
    """Sends row i of every tensor to rank ``dest_rank_N[i]`` (one ``all_to_all_single`` per tensor).

    Args:
        dest_rank_N: ``[N]`` integer destination rank of each row, in ``[0, W)``.
        tensors: ``[N, ...]`` tensors whose rows travel together.
        process_group: the ranks taking part (None: the default group).

    Returns:
        The ``[M, ...]`` rows this rank received, ordered by source rank (stable within a source), one tensor
        per input, on the inputs' devices.

    Raises:
        ValueError: on a destination outside ``[0, W)`` or tensors whose first dimension is not N.
    """
    world_size = dist.get_world_size(process_group)
    device = _comm_device(process_group)
    dest_N = dest_rank_N.long()
    if any(t.shape[0] != dest_N.numel() for t in tensors):
        raise ValueError("every tensor must have one row per destination")
    if dest_N.numel() and (int(dest_N.min()) < 0 or int(dest_N.max()) >= world_size):
        raise ValueError(f"destination ranks must lie in [0, {world_size})")
    order_N = torch.argsort(dest_N, stable=True)
    send_counts_W = torch.bincount(dest_N, minlength=world_size).to(device)
    recv_counts_W = torch.empty_like(send_counts_W)
    dist.all_to_all_single(recv_counts_W, send_counts_W, group=process_group)
    send, recv = send_counts_W.tolist(), recv_counts_W.tolist()
    received = []
    for tensor in tensors:
        outgoing = tensor[order_N].to(device).contiguous()
        incoming = outgoing.new_empty((sum(recv), *tensor.shape[1:]))
        dist.all_to_all_single(incoming, outgoing, recv, send, group=process_group)
        received.append(incoming.to(tensor.device))
    return received


def _rows_TN(
    preds_TN: torch.Tensor, labels_TN: torch.Tensor, weights_TN: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weights = torch.ones_like(preds_TN, dtype=torch.float64) if weights_TN is None else weights_TN
    return preds_TN.to(torch.float64), labels_TN.to(torch.float64), weights.to(torch.float64)


def _check_TN(
    preds_TN: torch.Tensor, labels_TN: torch.Tensor, groups_N: torch.Tensor | None, weights_TN: torch.Tensor | None
) -> None:
    if preds_TN.dim() != 2:
        raise ValueError(f"preds_TN must be 2-D [T, N], got shape {tuple(preds_TN.shape)}")
    for name, tensor in (("labels_TN", labels_TN), ("weights_TN", weights_TN)):
        if tensor is not None and tensor.shape != preds_TN.shape:
            raise ValueError(f"{name} must have shape {tuple(preds_TN.shape)}, got {tuple(tensor.shape)}")
    for t in range(preds_TN.shape[0]):
        check_auc_inputs(preds_TN[t], labels_TN[t], None if weights_TN is None else weights_TN[t], groups_N)


def distributed_auc(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    weights_N: torch.Tensor | None = None,
    process_group: ProcessGroup | None = None,
) -> torch.Tensor:
    """Exact AUC over the rows of all ranks (every rank returns the same value); see :func:`auc`.

    Args:
        preds_N: ``[N]`` local scores.
        labels_N: ``[N]`` local 0/1 labels.
        weights_N: ``[N]`` local non-negative weights, or None for unit weights.
        process_group: the ranks taking part (None: the default group).

    Returns:
        A 0-dim float64 tensor, NaN if one class has zero total weight over all ranks.

    Raises:
        ValueError: on every rank, if any rank's input is invalid.
    """
    agree_on_errors(lambda: check_auc_inputs(preds_N, labels_N, weights_N), process_group)
    p, y, w = _rows_TN(preds_N[None], labels_N[None], None if weights_N is None else weights_N[None])
    rows_N3 = all_gather_rows(torch.stack([p[0], y[0], w[0]], dim=1), process_group)
    return auc(rows_N3[:, 0], rows_N3[:, 1], rows_N3[:, 2])


def distributed_gauc_partial_sums(
    preds_TN: torch.Tensor,
    labels_TN: torch.Tensor,
    groups_N: torch.Tensor,
    weights_TN: torch.Tensor | None = None,
    process_group: ProcessGroup | None = None,
) -> torch.Tensor:
    """All-reduced GAUC partial sums of T tasks sharing one group id per row, after routing rows to their owner.

    Args:
        preds_TN: ``[T, N]`` local scores.
        labels_TN: ``[T, N]`` local 0/1 labels.
        groups_N: ``[N]`` local integer group ids; rank ``group_id % W`` owns a group.
        weights_TN: ``[T, N]`` local non-negative weights, or None for unit weights.
        process_group: the ranks taking part (None: the default group).

    Returns:
        ``[T, 4]`` float64 global :func:`~smes_rec.metrics.auc.gauc_partial_sums`, identical on every rank;
        pass a row to :func:`~smes_rec.metrics.auc.gauc_from_partial_sums`.

    Raises:
        ValueError: on every rank, if any rank's input is invalid.
    """
    agree_on_errors(lambda: _check_TN(preds_TN, labels_TN, groups_N, weights_TN), process_group)
    num_tasks = preds_TN.shape[0]
    p, y, w = _rows_TN(preds_TN, labels_TN, weights_TN)
    groups_N = groups_N.long()
    owner_N = torch.remainder(groups_N, dist.get_world_size(process_group))
    # float64 carries predictions (float32/float64 exactly), 0/1 labels and weights; ids travel as int64.
    groups_M, rows_MX = exchange_rows(owner_N, [groups_N, torch.cat([p, y, w], dim=0).T], process_group)
    p_TM, y_TM, w_TM = rows_MX.T.reshape(3, num_tasks, -1).unbind(0)
    sums_T4 = torch.zeros(num_tasks, 4, dtype=torch.float64, device=preds_TN.device)
    for t in range(num_tasks):
        sums_T4[t] = gauc_partial_sums(per_group_auc(p_TM[t], y_TM[t], groups_M, w_TM[t]))
    return all_reduce_sum(sums_T4, process_group)


def distributed_gauc(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    groups_N: torch.Tensor,
    weighting: Weighting = "impressions",
    weights_N: torch.Tensor | None = None,
    process_group: ProcessGroup | None = None,
) -> GAUCResult:
    """Exact GAUC over the rows of all ranks (every rank returns the same value); see :func:`gauc`.

    Args:
        preds_N: ``[N]`` local scores.
        labels_N: ``[N]`` local 0/1 labels.
        groups_N: ``[N]`` local integer group ids; a group's rows may be spread over several ranks.
        weighting: ``"impressions"`` or ``"uniform"``.
        weights_N: ``[N]`` local non-negative weights, or None for unit weights.
        process_group: the ranks taking part (None: the default group).

    Returns:
        A :class:`GAUCResult` equal to :func:`gauc` on all ranks' rows.

    Raises:
        ValueError: on every rank, if any rank's input is invalid; locally, on an unknown weighting.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    sums_T4 = distributed_gauc_partial_sums(
        preds_N[None], labels_N[None], groups_N, None if weights_N is None else weights_N[None], process_group
    )
    return gauc_from_partial_sums(sums_T4[0], weighting)
