"""auc / per_group_auc / gauc against pair-by-pair references, edge cases and library cross-checks."""

from __future__ import annotations

import math

import pytest
import torch

from smes_rec.metrics import auc, gauc, per_group_auc

from .reference import loop_gauc, pairwise_auc, random_ranking_data


def _assert_same(actual: float, expected: float, tol: float = 1e-12) -> None:
    if math.isnan(expected):
        assert math.isnan(actual), actual
    else:
        assert actual == pytest.approx(expected, abs=tol)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_auc_matches_pairwise_reference(seed: int, weighted: bool) -> None:
    preds_N, labels_N, weights_N, _ = random_ranking_data(400, 30, seed)
    weights = weights_N if weighted else None
    expected = pairwise_auc(preds_N, labels_N, weights)
    assert 0.55 < expected < 0.95  # the data carries signal, so a reversed order would be caught
    result = auc(preds_N, labels_N, weights)
    assert result.dtype == torch.float64 and result.dim() == 0
    _assert_same(float(result), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("weighting", ["impressions", "uniform"])
def test_gauc_matches_loop_reference(seed: int, weighted: bool, weighting: str) -> None:
    preds_N, labels_N, weights_N, groups_N = random_ranking_data(600, 60, seed)
    weights = weights_N if weighted else None
    value, num_groups, num_rows = loop_gauc(preds_N, labels_N, groups_N, weighting, weights)
    # The data must exercise the skipping: some groups are single-class, some have one row.
    counts = torch.unique(groups_N, return_counts=True)[1]
    assert (counts == 1).any() and num_groups < counts.numel()
    multi_row_single_class = [
        gid
        for gid in torch.unique(groups_N).tolist()
        if (groups_N == gid).sum() > 1 and labels_N[groups_N == gid].unique().numel() == 1
    ]
    assert multi_row_single_class
    result = gauc(preds_N, labels_N, groups_N, weighting=weighting, weights_N=weights)
    _assert_same(float(result.value), value)
    assert int(result.num_groups) == num_groups
    assert int(result.num_rows_used) == num_rows


def test_gauc_weightings_differ_on_skewed_groups() -> None:
    preds_N, labels_N, _, groups_N = random_ranking_data(600, 60, seed=3)
    impressions = gauc(preds_N, labels_N, groups_N, "impressions")
    uniform = gauc(preds_N, labels_N, groups_N, "uniform")
    assert abs(float(impressions.value) - float(uniform.value)) > 1e-4
    assert int(impressions.num_groups) == int(uniform.num_groups)


@pytest.mark.parametrize("weighted", [False, True])
def test_per_group_auc_matches_reference_group_by_group(weighted: bool) -> None:
    preds_N, labels_N, weights_N, groups_N = random_ranking_data(500, 40, seed=4)
    weights = weights_N if weighted else None
    result = per_group_auc(preds_N, labels_N, groups_N, weights)
    assert torch.equal(result.group_ids_G, torch.unique(groups_N))
    for k, gid in enumerate(result.group_ids_G.tolist()):
        mask = groups_N == gid
        _assert_same(
            float(result.auc_G[k]),
            pairwise_auc(preds_N[mask], labels_N[mask], None if weights is None else weights[mask]),
        )
        expected_rows = int(mask.sum()) if weights is None else int((weights[mask] > 0).sum())
        assert int(result.num_rows_G[k]) == expected_rows
    assert torch.isnan(result.auc_G).any() and (~torch.isnan(result.auc_G)).any()


def test_ties_count_one_half() -> None:
    preds_N = torch.tensor([0.5, 0.5, 0.5, 0.2])
    labels_N = torch.tensor([1, 0, 0, 0])
    # The positive ties two negatives (1/2 each) and beats one: (0.5 + 0.5 + 1) / 3.
    assert float(auc(preds_N, labels_N)) == pytest.approx(2 / 3)
    assert float(auc(torch.full((6,), 0.3), torch.tensor([1, 0, 1, 0, 0, 1]))) == pytest.approx(0.5)


def test_perfect_and_reversed_order() -> None:
    preds_N = torch.tensor([0.1, 0.2, 0.3, 0.4])
    labels_N = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert float(auc(preds_N, labels_N)) == 1.0
    assert float(auc(-preds_N, labels_N)) == 0.0


def test_integer_weights_equal_duplicated_rows() -> None:
    preds_N, labels_N, _, groups_N = random_ranking_data(200, 15, seed=5)
    counts_N = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(6))
    weighted = gauc(preds_N, labels_N, groups_N, "uniform", weights_N=counts_N.float())
    duplicated = gauc(
        preds_N.repeat_interleave(counts_N),
        labels_N.repeat_interleave(counts_N),
        groups_N.repeat_interleave(counts_N),
        "uniform",
    )
    assert float(weighted.value) == pytest.approx(float(duplicated.value), abs=1e-12)
    assert int(weighted.num_groups) == int(duplicated.num_groups)
    weighted_auc = auc(preds_N, labels_N, counts_N.float())
    duplicated_auc = auc(preds_N.repeat_interleave(counts_N), labels_N.repeat_interleave(counts_N))
    assert float(weighted_auc) == pytest.approx(float(duplicated_auc), abs=1e-12)


def test_zero_weight_rows_are_absent() -> None:
    preds_N, labels_N, weights_N, groups_N = random_ranking_data(300, 25, seed=7)
    assert (weights_N == 0).any()
    keep_N = weights_N > 0
    with_zeros = gauc(preds_N, labels_N, groups_N, weights_N=weights_N)
    without = gauc(preds_N[keep_N], labels_N[keep_N], groups_N[keep_N], weights_N=weights_N[keep_N])
    assert float(with_zeros.value) == pytest.approx(float(without.value), abs=1e-12)
    assert int(with_zeros.num_rows_used) == int(without.num_rows_used)
    assert int(with_zeros.num_groups) == int(without.num_groups)


def test_permutation_invariance() -> None:
    preds_N, labels_N, weights_N, groups_N = random_ranking_data(300, 20, seed=8)
    perm_N = torch.randperm(300, generator=torch.Generator().manual_seed(9))
    a = gauc(preds_N, labels_N, groups_N, weights_N=weights_N)
    b = gauc(preds_N[perm_N], labels_N[perm_N], groups_N[perm_N], weights_N=weights_N[perm_N])
    assert float(a.value) == pytest.approx(float(b.value), abs=1e-12)
    assert float(auc(preds_N, labels_N)) == pytest.approx(float(auc(preds_N[perm_N], labels_N[perm_N])), abs=1e-12)


def test_single_class_is_nan() -> None:
    preds_N = torch.tensor([0.1, 0.7, 0.3])
    groups_N = torch.tensor([1, 1, 2])
    for labels_N in (torch.zeros(3), torch.ones(3)):
        assert math.isnan(float(auc(preds_N, labels_N)))
        result = gauc(preds_N, labels_N, groups_N)
        assert math.isnan(float(result.value))
        assert int(result.num_groups) == 0 and int(result.num_rows_used) == 0
    # Both classes present, but only through a zero-weight row: still single-class.
    assert math.isnan(float(auc(preds_N, torch.tensor([1, 0, 0]), torch.tensor([0.0, 1.0, 1.0]))))


def test_empty_input_is_nan() -> None:
    empty = torch.zeros(0)
    assert math.isnan(float(auc(empty, empty)))
    result = gauc(empty, empty, torch.zeros(0, dtype=torch.long), weighting="uniform")
    assert math.isnan(float(result.value)) and int(result.num_groups) == 0


def test_one_group_equals_auc() -> None:
    preds_N, labels_N, weights_N, _ = random_ranking_data(200, 1, seed=10)
    groups_N = torch.full((200,), 42)
    for weighting in ("impressions", "uniform"):
        result = gauc(preds_N, labels_N, groups_N, weighting, weights_N)
        assert float(result.value) == pytest.approx(float(auc(preds_N, labels_N, weights_N)), abs=1e-12)
        assert int(result.num_groups) == 1
        assert int(result.num_rows_used) == int((weights_N > 0).sum())


def test_groups_of_size_one_are_all_skipped() -> None:
    result = gauc(torch.tensor([0.2, 0.9, 0.4]), torch.tensor([1, 0, 1]), torch.tensor([3, 1, 2]))
    assert math.isnan(float(result.value)) and int(result.num_groups) == 0


def test_hand_computed_gauc() -> None:
    # Group 7: 3 rows, AUC 1 (positive 0.9 above negatives 0.1, 0.5). Group 8: 2 rows, AUC 0.
    # Group 9: single class, skipped. Impressions: (3 * 1 + 2 * 0) / 5; uniform: (1 + 0) / 2.
    preds_N = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.6, 0.4, 0.8])
    labels_N = torch.tensor([1, 0, 0, 1, 0, 1, 1])
    groups_N = torch.tensor([7, 7, 7, 8, 8, 9, 9])
    impressions = gauc(preds_N, labels_N, groups_N, "impressions")
    uniform = gauc(preds_N, labels_N, groups_N, "uniform")
    assert float(impressions.value) == pytest.approx(0.6)
    assert float(uniform.value) == pytest.approx(0.5)
    assert int(impressions.num_groups) == 2 and int(impressions.num_rows_used) == 5


def test_large_int64_group_ids_stay_distinct() -> None:
    base = 2**60
    groups_N = torch.tensor([base, base, base + 1, base + 1])  # equal after a float64 round trip
    result = gauc(torch.tensor([0.9, 0.1, 0.1, 0.9]), torch.tensor([1, 0, 1, 0]), groups_N, "uniform")
    assert int(result.num_groups) == 2 and float(result.value) == pytest.approx(0.5)


def test_agrees_with_torchmetrics_on_ties() -> None:
    from torchmetrics.functional.classification import binary_auroc

    preds_N, labels_N, _, _ = random_ranking_data(1000, 1, seed=11)
    expected = float(binary_auroc(preds_N, labels_N.long()))
    assert float(auc(preds_N, labels_N)) == pytest.approx(expected, abs=1e-6)


def test_agrees_with_torchrec_weighted_without_ties() -> None:
    # torchrec's trapezoid AUC walks rows one by one, so it agrees only when predictions are distinct.
    from torchrec.metrics.auc import compute_auc

    gen = torch.Generator().manual_seed(12)
    preds_N = torch.randperm(500, generator=gen).float() / 500
    labels_N = (torch.rand(500, generator=gen) < 0.2 + 0.6 * preds_N).float()
    weights_N = torch.rand(500, generator=gen) + 0.1
    expected = float(compute_auc(1, [preds_N[None]], [labels_N[None]], [weights_N[None]])[0])
    assert float(auc(preds_N, labels_N, weights_N)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("preds", "labels", "weights", "groups", "match"),
    [
        ([0.1, float("nan")], [0, 1], None, [1, 1], "NaN"),
        ([0.1, 0.2], [0, 2], None, [1, 1], "0 or 1"),
        ([0.1, 0.2], [0, float("nan")], None, [1, 1], "0 or 1"),
        ([0.1, 0.2], [0, 1], [1.0, -1.0], [1, 1], "non-negative"),
        ([0.1, 0.2], [0, 1], [1.0, float("inf")], [1, 1], "finite"),
        ([0.1, 0.2], [0, 1, 1], None, [1, 1], "same length"),
        ([0.1, 0.2], [0, 1], None, [1, 1, 1], "same length"),
    ],
)
def test_bad_inputs_raise(preds, labels, weights, groups, match) -> None:
    weights_N = None if weights is None else torch.tensor(weights)
    with pytest.raises(ValueError, match=match):
        gauc(torch.tensor(preds), torch.tensor(labels), torch.tensor(groups), weights_N=weights_N)
    if len(groups) == len(preds):  # the group-free checks also guard auc
        with pytest.raises(ValueError, match=match):
            auc(torch.tensor(preds), torch.tensor(labels), weights_N)


def test_bad_groups_and_weighting_raise() -> None:
    preds_N, labels_N = torch.tensor([0.1, 0.2]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="integer"):
        gauc(preds_N, labels_N, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="weighting"):
        gauc(preds_N, labels_N, torch.tensor([1, 1]), weighting="sessions")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        auc(preds_N[None], labels_N[None])
    with pytest.raises(ValueError, match="floating-point"):
        auc(torch.tensor([1, 2]), labels_N)
