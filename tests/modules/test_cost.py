"""arch_cost: parameter counts and measured inference FLOPs per instance against hand counts, for every arch."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from smes_rec import MMoEArch, RankMixerArch, RankMixerShape, SMESArch, SparseMoE, arch_cost
from smes_rec.models.factory import ModelConfig, build_arch
from tests.modules.contract import arch_stats

D, T = 16, 3


def _mlp_flops(dims: list[int]) -> int:
    return sum(2 * a * b for a, b in pairwise(dims))


def test_dense_mmoe_flops_and_params_equal_hand_counts() -> None:
    arch = MMoEArch(D, T, num_experts=4, expert_layers=[8, 4])
    cost = arch_cost(arch, D, batch_size=32)
    assert cost.total_params == sum(p.numel() for p in arch.parameters()) == cost.active_params
    # gates D -> T*E, every expert, and the gated mix (a bmm: T tasks x E experts x H)
    assert cost.flops_per_instance == 2 * D * T * 4 + 4 * _mlp_flops([D, 8, 4]) + 2 * T * 4 * 4
    assert cost.mask_params == 0


def test_smes_counts_only_the_experts_it_runs() -> None:
    torch.manual_seed(0)
    # widths multiple of 4: the grouped-GEMM kernel, counted too
    arch = SMESArch(D, T, num_experts=8, k_shared=1, k_adaptive=1, expert_layers=[8, 8])
    cost = arch_cost(arch, D, batch_size=64, seed=3)
    h = torch.randn(64, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mean_u = arch_stats(arch.eval()(h)).num_unique_B.float().mean().item()
    assert 2 <= mean_u < 8
    torch.testing.assert_close(cost.flops_per_instance, 2 * D * T * 8 + mean_u * _mlp_flops([D, 8, 8]))
    per_expert = sum(p.numel() for p in arch.experts.parameters()) / 8
    torch.testing.assert_close(cost.active_params, cost.total_params - per_expert * (8 - mean_u))


def test_sparse_rankmixer_reports_active_flops_below_its_dense_training_cost() -> None:
    torch.manual_seed(1)
    shape = RankMixerShape(num_tokens=4, model_dim=8, ffn_ratio=2, num_layers=1)
    arch = RankMixerArch(D, T, shape=shape, moe=SparseMoE(num_experts=4, expert_ratio=2)).train()
    cost = arch_cost(arch, D, batch_size=32)
    assert arch.training  # the mode is restored
    h = torch.randn(32, D, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        active = arch_stats(arch.eval()(h)).num_unique_B.float().mean().item()
    token_proj = 2 * 4 * 4 * 8  # N chunks of d = 4 -> D = 8
    router = 2 * 4 * 8 * 4  # h_infer only at inference
    expert = _mlp_flops([8, 16, 8])
    torch.testing.assert_close(cost.flops_per_instance, token_proj + router + active * expert)
    assert 0 < active < 16 and cost.active_params < cost.total_params


ALL = ["smes", "naive_topk", "mmoe", "omoe", "ple", "shared_bottom", "home", "mome", "rankmixer", "rankmixer_sparse"]


@pytest.mark.parametrize("name", ALL)
def test_every_arch_has_a_cost(name: str) -> None:
    torch.manual_seed(2)
    cfg = ModelConfig(arch=name.removesuffix("_sparse"), expert_layers=(8, 4), num_experts=4,
                      rankmixer_tokens=4, rankmixer_dim=8, rankmixer_sparse=name.endswith("_sparse"))
    arch = build_arch(cfg, D, T, task_categories=(0, 1, 1))
    cost = arch_cost(arch, D, batch_size=16)
    assert cost.total_params == sum(p.numel() for p in arch.parameters())
    assert 0 < cost.active_params <= cost.total_params and cost.flops_per_instance > 0
    assert (cost.mask_params > 0) is (name == "mome")
    if name == "mome":  # the training-time masks are as large as E base networks plus the neuron masks
        weights = sum(w.numel() for w in arch.weights)
        assert cost.mask_params == 4 * weights + sum(m.numel() for m in arch.neuron_mu)
