"""GroupedMLP: the grouped-GEMM sparse path, the dense paths and a plain per-group loop agree; construction errors
name the argument."""

from __future__ import annotations

import pytest
import torch

from smes_rec.modules.experts import GroupedMLP
from tests.modules.reference import expert_mlp


@pytest.mark.parametrize("activate_last", [True, False])
@pytest.mark.parametrize(("D", "widths"), [(8, [16, 4]), (7, [6, 3])])  # grouped kernel; unaligned fallback
def test_grouped_rows_match_per_group_loop_with_gradients(activate_last: bool, D: int, widths: list[int]) -> None:
    torch.manual_seed(0)
    G = 5
    mlp = GroupedMLP(G, D, widths, activate_last=activate_last)
    counts = torch.tensor([3, 0, 4, 1, 2])  # includes an empty group
    group_P = torch.repeat_interleave(torch.arange(G), counts)
    x = torch.randn(int(counts.sum()), D, requires_grad=True)
    y = mlp(x, counts.cumsum(0).to(torch.int32), group_P)
    ref = torch.cat([expert_mlp(mlp, int(g), x[i : i + 1]) for i, g in enumerate(group_P)])
    torch.testing.assert_close(y, ref)
    upstream = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *mlp.parameters()], upstream)
    ref_grads = torch.autograd.grad(ref, [x, *mlp.parameters()], upstream)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_dense_paths_match_per_group_loop() -> None:
    torch.manual_seed(1)
    mlp = GroupedMLP(3, 4, [5, 2])
    x = torch.randn(6, 4)
    expected = torch.stack([expert_mlp(mlp, g, x) for g in range(3)])
    torch.testing.assert_close(mlp.forward_all(x), expected)
    x_GBD = torch.randn(3, 6, 4)
    expected = torch.stack([expert_mlp(mlp, g, x_GBD[g]) for g in range(3)])
    torch.testing.assert_close(mlp.forward_per_group(x_GBD), expected)


def test_output_major_storage_keeps_every_product() -> None:
    torch.manual_seed(2)
    mlp = GroupedMLP(4, 8, [16, 8])
    counts = torch.tensor([2, 0, 5, 3])
    offsets, group_P = counts.cumsum(0).to(torch.int32), torch.repeat_interleave(torch.arange(4), counts)
    x = torch.randn(int(counts.sum()), 8)
    before = [w.detach().clone() for w in mlp.weights]
    expected = mlp(x, offsets, group_P)
    mlp.store_output_major()
    for w, old in zip(mlp.weights, before, strict=True):
        assert w.shape == old.shape and torch.equal(w, old)  # same values behind the same [G, d_in, d_out] view
        assert w.transpose(1, 2).is_contiguous() and not w.is_contiguous()  # each group's [d_out, d_in] block
    torch.testing.assert_close(mlp(x, offsets, group_P), expected)
    torch.testing.assert_close(mlp.forward_all(x), torch.stack([expert_mlp(mlp, g, x) for g in range(4)]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_groups": 0, "in_features": 3, "layer_widths": [2]}, "num_groups"),
    ({"num_groups": 2, "in_features": 3, "layer_widths": []}, "layer_widths"),
    ({"num_groups": 2, "in_features": 3, "layer_widths": [0]}, "layer_widths"),
])
def test_bad_construction_names_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroupedMLP(**kwargs)
