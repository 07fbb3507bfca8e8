"""Brute-force references for the metric tests: the definitions of docs/design.md §4, written pair by pair."""

from __future__ import annotations

import math

import torch


def pairwise_auc(preds_N: torch.Tensor, labels_N: torch.Tensor, weights_N: torch.Tensor | None = None) -> float:
    """O(N^2) weighted Mann-Whitney AUC: every (positive, negative) pair, ties one half; NaN if undefined."""
    p = preds_N.double()
    y = labels_N.double()
    w = torch.ones_like(p) if weights_N is None else weights_N.double()
    pos_w = w * y
    neg_w = w * (1.0 - y)
    pair_weight_NN = pos_w[:, None] * neg_w[None, :]  # [i positive, j negative]
    score_NN = (p[:, None] > p[None, :]).double() + 0.5 * (p[:, None] == p[None, :]).double()
    total = float(pair_weight_NN.sum())
    return float((pair_weight_NN * score_NN).sum()) / total if total > 0 else math.nan


def loop_gauc(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    groups_N: torch.Tensor,
    weighting: str,
    weights_N: torch.Tensor | None = None,
) -> tuple[float, int, int]:
    """GAUC by an explicit loop over groups: (value, groups used, rows used); NaN value when no group is usable."""
    w = torch.ones_like(preds_N, dtype=torch.float64) if weights_N is None else weights_N.double()
    total, norm, used_groups, used_rows = 0.0, 0.0, 0, 0
    for gid in torch.unique(groups_N).tolist():
        mask = groups_N == gid
        group_auc = pairwise_auc(preds_N[mask], labels_N[mask], w[mask])
        if math.isnan(group_auc):
            continue
        rows = int((w[mask] > 0).sum())
        weight = float(rows) if weighting == "impressions" else 1.0
        total += weight * group_auc
        norm += weight
        used_groups += 1
        used_rows += rows
    return (total / norm if used_groups else math.nan), used_groups, used_rows


def random_ranking_data(
    num_rows: int, num_groups: int, seed: int, positive_rate: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (preds, labels, weights, groups) with many ties, single-class groups and groups of size 1.

    Predictions are probabilities rounded to one decimal (ties); labels follow them loosely (AUC != 0.5);
    weights are positive with some zeros; group sizes are skewed so some groups have a single row.
    """
    gen = torch.Generator().manual_seed(seed)
    preds_N = torch.round(torch.rand(num_rows, generator=gen) * 10) / 10
    labels_N = (torch.rand(num_rows, generator=gen) < positive_rate * (0.5 + preds_N)).float()
    weights_N = torch.rand(num_rows, generator=gen) * 2 * (torch.rand(num_rows, generator=gen) > 0.1)
    skew_N = torch.rand(num_rows, generator=gen) ** 2  # small ids get most rows, large ids few or one
    groups_N = (skew_N * num_groups).long() * 7919 - 50_000  # arbitrary, partly negative ids
    if num_rows >= 10 and num_groups > 1:
        groups_N[-3:] = torch.tensor([10**12, 10**12 + 1, 10**12 + 2])  # guaranteed groups of size 1
    return preds_N, labels_N, weights_N, groups_N
