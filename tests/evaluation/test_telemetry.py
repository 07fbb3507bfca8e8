"""Routing telemetry accumulated over batches, with padding rows left out, and the |U| bound of every arch."""

from __future__ import annotations

import math

import pytest
import torch

from smes_rec.evaluation.telemetry import RoutingAccumulator, activation_bound
from smes_rec.models.factory import ModelConfig
from smes_rec.modules import SMESArch
from smes_rec.modules.routing import routing_stats


def test_accumulated_counts_equal_the_arch_telemetry_of_the_kept_rows() -> None:
    torch.manual_seed(0)
    T, E = 3, 8
    arch = SMESArch(16, T, num_experts=E, k_shared=2, k_adaptive=1, expert_layers=[8])
    acc = RoutingAccumulator(T, E)
    kept = []
    for _ in range(3):
        ids_BTK = arch(torch.randn(32, 16)).routing.ids_BTK
        mask_B = torch.rand(32) < 0.7  # the rest play padding rows
        acc.update(ids_BTK, mask_B)
        kept.append(ids_BTK[mask_B])
    ids_NTK = torch.cat(kept)
    reference = routing_stats(ids_NTK, E)
    summary = acc.compute()
    assert summary.num_instances == len(ids_NTK)
    assert torch.equal(summary.selection_TE, reference.selection_TE)
    assert summary.unique_hist_U.tolist() == torch.bincount(reference.num_unique_B, minlength=E + 1).tolist()
    assert summary.mean_unique == pytest.approx(reference.num_unique_B.double().mean().item())
    assert summary.max_unique == int(reference.num_unique_B.max())
    torch.testing.assert_close(summary.load_share_E.float(), reference.expert_load_E)
    assert summary.load_cv == pytest.approx(reference.load_cv.item(), rel=1e-5)
    pairs = summary.pairs_E.double()
    assert summary.load_max_over_mean == pytest.approx(float(pairs.max() / pairs.mean()))
    assert 3 <= summary.max_unique <= 2 + T * 1


def test_no_rows_gives_undefined_statistics() -> None:
    summary = RoutingAccumulator(2, 4).compute()
    assert summary.num_instances == 0 and summary.max_unique == 0
    assert math.isnan(summary.mean_unique) and math.isnan(summary.load_cv)


def test_bad_ids_are_refused() -> None:
    acc = RoutingAccumulator(2, 4)
    with pytest.raises(ValueError, match=r"expert ids must lie in \[0, 4\)"):
        acc.update(torch.tensor([[[0], [4]]]), torch.tensor([True]))
    with pytest.raises(ValueError, match="ids_BTK must be"):
        acc.update(torch.zeros(2, 3, 1, dtype=torch.int64), torch.ones(2, dtype=torch.bool))


@pytest.mark.parametrize(
    ("arch", "num_experts", "expected", "sparse"),
    [("smes", 16, 2 + 7 * 1, True), ("naive_topk", 16, 16, True), ("naive_topk", 32, 21, True),
     ("mmoe", 16, 16, False), ("ple", 9, 9, False), ("shared_bottom", 1, 1, False), ("home", 12, 12, False),
     ("mome", 16, 16, False), ("rankmixer", 1, 1, False), ("rankmixer_sparse", 64, 64, True)],
)
def test_activation_bound(arch: str, num_experts: int, expected: int, sparse: bool) -> None:
    model = ModelConfig(arch=arch.removesuffix("_sparse"), k_shared=2, k_adaptive=1,
                        rankmixer_sparse=arch.endswith("_sparse"))
    bound = activation_bound(model, 7, num_experts)
    assert bound.max_unique == expected and bound.sparse is sparse
    assert ("dense" in bound.note) is (not sparse)
