"""AUC and grouped AUC (GAUC) as sort-based, vectorised torch functions (docs/design.md §4).

Legend: N rows, G distinct groups (user ids).

Definitions (all sums in float64):

- AUC is the weighted Mann-Whitney statistic: over every (positive i, negative j) pair, the pair weight
  ``w_i * w_j`` scores 1 if ``pred_i > pred_j`` and one half if ``pred_i == pred_j``; AUC is the scored weight
  divided by ``sum_pos(w) * sum_neg(w)``. With unit weights this is the probability that a random positive
  outranks a random negative, ties counting one half. It is NaN when either class has zero total weight.
- GAUC averages the per-group AUC over the groups where it is defined (both classes have positive weight);
  single-class groups are skipped. ``weighting="impressions"`` weights each group by its number of rows with a
  positive weight; ``weighting="uniform"`` is the plain mean over groups. With no usable group the value is NaN
  and ``num_groups`` is 0.

Rows with weight 0 behave exactly as if they were absent. Inputs are validated by ``metrics/inputs.py`` (NaN
scores, non-binary labels, negative or non-finite weights raise ``ValueError``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from smes_rec.metrics.inputs import check_auc_inputs

Weighting = Literal["impressions", "uniform"]
WEIGHTINGS: tuple[str, ...] = ("impressions", "uniform")


class PerGroupAUC(NamedTuple):
    """The AUC of every group, before averaging.

    Attributes:
        group_ids_G: ``[G]`` the distinct group ids, ascending.
        auc_G: ``[G]`` float64 AUC of each group; NaN where the group has a single class.
        num_rows_G: ``[G]`` int64 number of rows with a positive weight in each group (its impressions).
    """

    group_ids_G: torch.Tensor
    auc_G: torch.Tensor
    num_rows_G: torch.Tensor


class GAUCResult(NamedTuple):
    """A GAUC value and what it was computed from (all 0-dim tensors, so no host synchronisation is forced).

    Attributes:
        value: float64 GAUC; NaN when no group has both classes.
        num_groups: int64 number of groups used (groups with both classes).
        num_rows_used: int64 number of positive-weight rows in the groups used.
    """

    value: torch.Tensor
    num_groups: torch.Tensor
    num_rows_used: torch.Tensor


def _auc_by_group(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    weights_N: torch.Tensor | None,
    group_N: torch.Tensor,
    num_groups: int,
) -> torch.Tensor:
    """Per-group weighted Mann-Whitney AUC in one pass over the rows sorted by (group, prediction).

    Args:
        preds_N: ``[N]`` scores.
        labels_N: ``[N]`` 0/1 labels.
        weights_N: ``[N]`` non-negative weights, or None for unit weights.
        group_N: ``[N]`` int64 dense group index in ``[0, num_groups)``.
        num_groups: G.

    Returns:
        ``[G]`` float64 AUC per group, NaN where one class has zero weight.
    """
    n = preds_N.numel()
    device = preds_N.device
    y_N = labels_N.to(torch.float64)
    w_N = torch.ones(n, dtype=torch.float64, device=device) if weights_N is None else weights_N.to(torch.float64)

    # Lexicographic (group, pred) order from two stable sorts: O(N log N), no loop over groups.
    order_N = torch.argsort(preds_N, stable=True)
    if num_groups > 1:
        order_N = order_N[torch.argsort(group_N[order_N], stable=True)]
    pred_s = preds_N[order_N]
    group_s = group_N[order_N]
    pos_s = (w_N * y_N)[order_N]
    neg_s = (w_N * (1.0 - y_N))[order_N]

    # A block is a run of equal predictions inside one group: its pairs are the ties.
    new_block_N = torch.ones(n, dtype=torch.bool, device=device)
    new_block_N[1:] = (group_s[1:] != group_s[:-1]) | (pred_s[1:] != pred_s[:-1])
    block_N = torch.cumsum(new_block_N, dim=0) - 1
    # Block arrays are sized N (an upper bound on the number of blocks) to avoid reading the count on the host;
    # unused slots hold zero weight and contribute nothing.
    pos_b = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, block_N, pos_s)
    neg_b = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, block_N, neg_s)
    group_b = torch.zeros(n, dtype=torch.long, device=device).scatter_(0, block_N, group_s)

    pos_G = torch.zeros(num_groups, dtype=torch.float64, device=device).index_add_(0, group_s, pos_s)
    neg_G = torch.zeros(num_groups, dtype=torch.float64, device=device).index_add_(0, group_s, neg_s)
    # Negative weight strictly below each block within its group: the running total over all blocks minus
    # the total of the groups before it (groups are contiguous in the sorted order).
    neg_before_b = torch.cumsum(neg_b, dim=0) - neg_b
    neg_before_group_G = torch.cumsum(neg_G, dim=0) - neg_G
    neg_below_b = neg_before_b - neg_before_group_G[group_b]
    wins_b = pos_b * (neg_below_b + 0.5 * neg_b)
    wins_G = torch.zeros(num_groups, dtype=torch.float64, device=device).index_add_(0, group_b, wins_b)

    defined_G = (pos_G > 0) & (neg_G > 0)
    denom_G = torch.where(defined_G, pos_G * neg_G, torch.ones_like(pos_G))
    return torch.where(defined_G, wins_G / denom_G, torch.full_like(pos_G, float("nan")))


def auc(preds_N: torch.Tensor, labels_N: torch.Tensor, weights_N: torch.Tensor | None = None) -> torch.Tensor:
    """Area under the ROC curve, ties counting one half, optionally with per-example weights.

    Args:
        preds_N: ``[N]`` floating-point scores (probabilities or logits: only their order matters).
        labels_N: ``[N]`` labels, each 0 or 1 (any dtype).
        weights_N: ``[N]`` finite non-negative example weights (weighted Mann-Whitney: a pair counts
            ``w_pos * w_neg``), or None for unit weights.

    Returns:
        A 0-dim float64 tensor; NaN when the positives or the negatives have zero total weight (single class,
        or empty input).

    Raises:
        ValueError: on shape mismatch, NaN scores, labels other than 0/1, or negative / non-finite weights.
    """
    check_auc_inputs(preds_N, labels_N, weights_N)
    group_N = torch.zeros(preds_N.numel(), dtype=torch.long, device=preds_N.device)
    return _auc_by_group(preds_N, labels_N, weights_N, group_N, num_groups=1)[0]


def per_group_auc(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    groups_N: torch.Tensor,
    weights_N: torch.Tensor | None = None,
) -> PerGroupAUC:
    """The AUC of every group (see :func:`auc`), computed for all groups at once.

    Args:
        preds_N: ``[N]`` floating-point scores.
        labels_N: ``[N]`` labels, each 0 or 1.
        groups_N: ``[N]`` integer group ids (any values, e.g. user ids).
        weights_N: ``[N]`` finite non-negative example weights, or None for unit weights.

    Returns:
        A :class:`PerGroupAUC` over the distinct ids in ``groups_N``.

    Raises:
        ValueError: as :func:`auc`, or when ``groups_N`` is not an integer tensor.
    """
    check_auc_inputs(preds_N, labels_N, weights_N, groups_N)
    group_ids_G, group_N = torch.unique(groups_N.long(), sorted=True, return_inverse=True)
    num_groups = group_ids_G.numel()
    auc_G = _auc_by_group(preds_N, labels_N, weights_N, group_N, num_groups)
    has_weight_N = torch.ones_like(group_N) if weights_N is None else (weights_N > 0).long()
    num_rows_G = torch.zeros(num_groups, dtype=torch.long, device=preds_N.device).index_add_(0, group_N, has_weight_N)
    return PerGroupAUC(group_ids_G=group_ids_G, auc_G=auc_G, num_rows_G=num_rows_G)


def gauc_partial_sums(per_group: PerGroupAUC) -> torch.Tensor:
    """Additive statistics of the usable groups, so GAUC over disjoint sets of groups can be summed (reduced).

    Args:
        per_group: per-group AUCs, e.g. of the groups one rank owns.

    Returns:
        ``[4]`` float64: (sum of rows * AUC, sum of rows, sum of AUC, number of groups), over groups whose AUC is
        defined. Counts are exact in float64 up to 2**53.
    """
    usable_G = ~torch.isnan(per_group.auc_G)
    auc_G = torch.where(usable_G, per_group.auc_G, torch.zeros_like(per_group.auc_G))
    rows_G = torch.where(usable_G, per_group.num_rows_G, torch.zeros_like(per_group.num_rows_G)).to(torch.float64)
    return torch.stack([(rows_G * auc_G).sum(), rows_G.sum(), auc_G.sum(), usable_G.sum().to(torch.float64)])


def gauc_from_partial_sums(sums_4: torch.Tensor, weighting: Weighting = "impressions") -> GAUCResult:
    """Turns (possibly all-reduced) :func:`gauc_partial_sums` into a GAUC.

    Args:
        sums_4: ``[4]`` float64 partial sums.
        weighting: ``"impressions"`` (each group weighted by its number of rows) or ``"uniform"`` (plain mean).

    Returns:
        A :class:`GAUCResult`; its value is NaN when no group is usable.

    Raises:
        ValueError: on an unknown weighting.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    weighted_sum, rows, auc_sum, groups = sums_4.unbind(0)
    num, den = (weighted_sum, rows) if weighting == "impressions" else (auc_sum, groups)
    # A usable group has at least two rows, so den >= 1 whenever groups > 0; the clamp only guards the NaN branch.
    value = torch.where(groups > 0, num / torch.clamp(den, min=1.0), torch.full_like(num, float("nan")))
    return GAUCResult(value=value, num_groups=groups.round().long(), num_rows_used=rows.round().long())


def gauc(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    groups_N: torch.Tensor,
    weighting: Weighting = "impressions",
    weights_N: torch.Tensor | None = None,
) -> GAUCResult:
    """Grouped AUC: the mean of the per-group AUCs over groups that have both classes (docs/design.md §4).

    Args:
        preds_N: ``[N]`` floating-point scores.
        labels_N: ``[N]`` labels, each 0 or 1.
        groups_N: ``[N]`` integer group (user) ids.
        weighting: ``"impressions"`` weights each group by its number of positive-weight rows;
            ``"uniform"`` gives every usable group the same weight.
        weights_N: ``[N]`` example weights used inside each group's AUC (see :func:`auc`), or None.

    Returns:
        A :class:`GAUCResult`; value NaN and ``num_groups`` 0 when no group has both classes.

    Raises:
        ValueError: as :func:`per_group_auc`, or on an unknown weighting.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return gauc_from_partial_sums(gauc_partial_sums(per_group_auc(preds_N, labels_N, groups_N, weights_N)), weighting)
