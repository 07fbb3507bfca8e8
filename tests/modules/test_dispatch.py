"""Dispatch: every (instance, expert) pair of U runs exactly once, sorted by expert; the combine reads it back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smes_rec.modules.dispatch import combine, dispatch_rows, plan_dispatch
from smes_rec.modules.routing import progressive_route
from smes_rec.modules.smes import SMESArch
from tests.modules.contract import arch_stats


class CountingExperts(nn.Module):
    """A stub expert bank that records which (instance, expert) pairs it ran, via the instance id in column 0."""

    def __init__(self, out_features: int):
        super().__init__()
        self.out_features = out_features
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x_PD: torch.Tensor, offsets_E: torch.Tensor, expert_of_row_P: torch.Tensor) -> torch.Tensor:
        n = int(offsets_E[-1])
        self.calls.append((x_PD[:n, 0].round().long(), expert_of_row_P[:n].clone(), offsets_E.clone()))
        # Output identifies (instance, expert) so the combine can be checked exactly.
        value_P = x_PD[:, 0] * 1000 + expert_of_row_P.to(x_PD.dtype)
        return value_P.unsqueeze(-1).expand(-1, self.out_features).clone()


@pytest.mark.parametrize(("T", "E", "k_s", "k_a"), [(4, 16, 2, 1), (3, 8, 0, 2), (5, 6, 2, 0), (1, 4, 1, 1)])
@pytest.mark.parametrize("static", [False, True])
def test_each_unique_pair_runs_exactly_once(T: int, E: int, k_s: int, k_a: int, static: bool) -> None:
    B, D = 50, 6
    torch.manual_seed(0)
    arch = SMESArch(D, T, num_experts=E, k_shared=k_s, k_adaptive=k_a, expert_layers=[4], static_dispatch=static)
    arch.experts = CountingExperts(4)
    h = torch.randn(B, D)
    h[:, 0] = torch.arange(B, dtype=torch.float32)  # instance id, carried into the dispatched rows
    out = arch(h)

    assert len(arch.experts.calls) == 1
    instances, experts, offsets = arch.experts.calls[0]
    ran = list(zip(instances.tolist(), experts.tolist(), strict=True))
    ids = out.routing.ids_BTK
    expected = {(b, e) for b in range(B) for e in ids[b].flatten().tolist()}
    assert len(ran) == len(set(ran)), "a pair ran twice"
    assert set(ran) == expected
    assert experts.tolist() == sorted(experts.tolist()), "rows not sorted by expert"
    assert torch.equal(offsets, torch.bincount(experts, minlength=E).cumsum(0).to(torch.int32))
    assert len(ran) == arch_stats(out).num_unique_B.sum().item()

    # Combine: task t of instance b gets sum_k g_k * (1000 b + e_k).
    expected_TB = (out.routing.gates_BTK * (1000 * torch.arange(B).view(B, 1, 1) + ids).float()).sum(-1).t()
    torch.testing.assert_close(out.task_reprs[..., 0], expected_TB)


def test_static_plan_equals_exact_plan_on_its_valid_rows() -> None:
    B, T, E = 64, 4, 12
    routing = progressive_route(torch.randn(B, T, E), torch.ones(T), 2, 1)
    exact = plan_dispatch(routing.ids_BTK, E, max_unique=min(E, 2 + T), static=False)
    static = plan_dispatch(routing.ids_BTK, E, max_unique=min(E, 2 + T), static=True)
    n = int(exact.offsets_E[-1])
    assert exact.instance_of_row_P.numel() == n and static.instance_of_row_P.numel() == B * min(E, 2 + T)
    assert torch.equal(static.instance_of_row_P[:n], exact.instance_of_row_P)
    assert torch.equal(static.expert_of_row_P[:n], exact.expert_of_row_P)
    assert (static.instance_of_row_P[n:] == B).all() and (static.expert_of_row_P[n:] == E).all()
    assert torch.equal(static.offsets_E, exact.offsets_E) and torch.equal(static.row_BTK, exact.row_BTK)


def test_padding_rows_read_zeros_and_get_no_gradient() -> None:
    h = torch.randn(3, 2, requires_grad=True)
    rows = dispatch_rows(h, torch.tensor([2, 0, 3, 3]))
    assert torch.equal(rows[2:], torch.zeros(2, 2))
    rows.sum().backward()
    assert torch.equal(h.grad, torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))


def test_combine_weights_rows_by_gates() -> None:
    y = torch.tensor([[1.0], [10.0], [100.0]])
    row_BTK = torch.tensor([[[0, 2], [1, 2]]])
    gates_BTK = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])
    torch.testing.assert_close(combine(y, row_BTK, gates_BTK), torch.tensor([[[75.25]], [[55.0]]]))
