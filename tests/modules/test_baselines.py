"""Baselines against references (shapes, gate sums, gradients), PLE's construction errors, and fx traces of every
arch (SMES included) equal to eager."""

from __future__ import annotations

import pytest
import torch
import torch.fx

from smes_rec import DenseMoEArch, MMoEArch, PLEArch, SharedBottomArch, SMESArch
from tests.modules.contract import arch_stats
from tests.modules.reference import expert_mlp

B, D, T = 24, 8, 3


def test_mmoe_matches_per_expert_loop() -> None:
    torch.manual_seed(0)
    arch = MMoEArch(D, T, num_experts=5, expert_layers=[6, 4])
    h = torch.randn(B, D)
    out = arch(h)
    probs = torch.softmax(arch.gates(h), -1)
    for t in range(T):
        expected = sum(probs[:, t, e : e + 1] * expert_mlp(arch.experts, e, h) for e in range(5))
        torch.testing.assert_close(out.task_reprs[t], expected)
    torch.testing.assert_close(out.routing.gates_BTK.sum(-1), torch.ones(B, T))
    assert (arch_stats(out).num_unique_B == 5).all() and out.aux_loss.item() == 0.0


def test_dense_moe_uses_one_gate_for_all_tasks() -> None:
    torch.manual_seed(1)
    arch = DenseMoEArch(D, T, num_experts=4, expert_layers=[4])
    h = torch.randn(B, D)
    out = arch(h)
    probs = torch.softmax(arch.gates(h)[:, 0], -1)
    expected = sum(probs[:, e : e + 1] * expert_mlp(arch.experts, e, h) for e in range(4))
    for t in range(T):
        torch.testing.assert_close(out.task_reprs[t], expected)


def test_shared_bottom_is_one_mlp_for_every_task() -> None:
    arch = SharedBottomArch(D, T, expert_layers=[6, 4])
    h = torch.randn(B, D)
    out = arch(h)
    for t in range(T):
        torch.testing.assert_close(out.task_reprs[t], expert_mlp(arch.experts, 0, h))
    assert (arch_stats(out).num_unique_B == 1).all()


def test_single_level_ple_matches_cgc_reference() -> None:
    torch.manual_seed(2)
    S, P = 2, 2
    arch = PLEArch(D, T, num_shared_experts=S, num_task_experts=P, expert_layers=[6, 4])
    h = torch.randn(B, D)
    out = arch(h)
    level = arch.levels[0]
    logits = level.task_gates(h)  # one input at the first level: per-input gates equal the plain projection
    for t in range(T):
        owned = list(range(S)) + [S + t * P + j for j in range(P)]
        probs = torch.softmax(logits[:, t], -1)
        expected = sum(probs[:, i : i + 1] * expert_mlp(level.experts, e, h) for i, e in enumerate(owned))
        torch.testing.assert_close(out.task_reprs[t], expected)
    assert out.routing.ids_BTK.shape == (B, T, S + P)
    torch.testing.assert_close(out.routing.gates_BTK.sum(-1), torch.ones(B, T))
    torch.testing.assert_close(out.routing.probs_BTE.sum(-1), torch.ones(B, T))
    assert (arch_stats(out).num_unique_B == S + T * P).all()


def test_stacked_ple_levels_feed_each_task_its_own_input() -> None:
    torch.manual_seed(3)
    arch = PLEArch(D, T, num_shared_experts=1, num_task_experts=1, expert_layers=[4], num_levels=3)
    h = torch.randn(B, D, requires_grad=True)
    out = arch(h)
    assert out.task_reprs.shape == (T, B, 4) and len(arch.levels) == 3
    assert arch.levels[0].shared_gate is not None and arch.levels[-1].shared_gate is None
    out.task_reprs.sum().backward()
    # Every level's experts and gates are used.
    for name, p in arch.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kwargs", [
    {"num_shared_experts": 0, "num_task_experts": 0},
    {"num_shared_experts": -1, "num_task_experts": 1},
])
def test_ple_rejects_empty_levels(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="num_shared_experts"):
        PLEArch(D, T, expert_layers=[4], **kwargs)


ARCHS = {
    "smes": lambda: SMESArch(D, T, num_experts=8, k_shared=2, k_adaptive=1, expert_layers=[8, 4]),
    "smes_static": lambda: SMESArch(D, T, num_experts=8, k_shared=2, k_adaptive=1, expert_layers=[8, 4],
                                    static_dispatch=True),
    "naive_topk": lambda: SMESArch(D, T, num_experts=8, k_shared=0, k_adaptive=2, expert_layers=[8, 4]),
    "mmoe": lambda: MMoEArch(D, T, num_experts=4, expert_layers=[8, 4]),
    "omoe": lambda: DenseMoEArch(D, T, num_experts=4, expert_layers=[8, 4]),
    "shared_bottom": lambda: SharedBottomArch(D, T, expert_layers=[8, 4]),
    "ple": lambda: PLEArch(D, T, num_shared_experts=2, num_task_experts=1, expert_layers=[8, 4], num_levels=2),
}


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_fx_trace_equals_eager(name: str) -> None:
    torch.manual_seed(4)
    arch = ARCHS[name]()
    traced = torch.fx.symbolic_trace(arch)
    h = torch.randn(B, D)
    eager, fx_out = arch(h), traced(h)
    assert type(fx_out) is type(eager)
    for a, b in zip(torch.utils._pytree.tree_leaves(eager), torch.utils._pytree.tree_leaves(fx_out), strict=True):
        torch.testing.assert_close(a, b)
