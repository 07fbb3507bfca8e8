"""SMESArch: sparse execution equals the dense masked reference (with gradients); the output contract and telemetry;
edge cases (one expert, naive top-K); the balancing loss reaches the router; task weights; construction errors.
Its fx trace is checked with every arch's in test_baselines.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smes_rec import SMESArch
from smes_rec.modules.routing import progressive_route
from tests.modules.contract import arch_stats
from tests.modules.reference import dense_masked_forward


@pytest.mark.parametrize(("T", "E", "k_s", "k_a", "D", "layers"), [
    (4, 16, 2, 1, 16, [32, 8]),
    (3, 8, 0, 2, 16, [16, 8]),
    (3, 8, 3, 0, 12, [8]),
    (1, 4, 2, 2, 5, [6, 3]),
    (6, 5, 1, 1, 8, [8, 8]),
])
@pytest.mark.parametrize("static", [False, True])
def test_sparse_path_equals_dense_reference_with_gradients(
    T: int, E: int, k_s: int, k_a: int, D: int, layers: list[int], static: bool
) -> None:
    torch.manual_seed(E + T)
    arch = SMESArch(D, T, num_experts=E, k_shared=k_s, k_adaptive=k_a, expert_layers=layers,
                    task_weights=[float(t + 1) for t in range(T)], static_dispatch=static)
    h = torch.randn(40, D, requires_grad=True)
    out = arch(h)
    ref = dense_masked_forward(arch, h)
    torch.testing.assert_close(out.task_reprs, ref)

    upstream = torch.randn_like(ref)
    inputs = [h, *arch.parameters()]
    grads = torch.autograd.grad((out.task_reprs * upstream).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), inputs)
    for (name, _), a, b in zip([("h", None), *arch.named_parameters()], grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, msg=lambda m, n=name: f"gradient of {n}: {m}")
    assert grads[1 + [n for n, _ in arch.named_parameters()].index("gates.proj.weight")].abs().sum() > 0


def test_output_contract_and_telemetry() -> None:
    arch = SMESArch(8, 4, num_experts=16, k_shared=2, k_adaptive=1, expert_layers=[8, 4])
    out = arch(torch.randn(32, 8))
    assert out.task_reprs.shape == (4, 32, 4)
    assert out.aux_loss.shape == () and torch.isfinite(out.aux_loss) and out.aux_loss.item() > 0
    r, s = out.routing, arch_stats(out)
    assert r.ids_BTK.shape == (32, 4, 3) and r.gates_BTK.shape == (32, 4, 3) and r.probs_BTE.shape == (32, 4, 16)
    assert s.num_unique_B.shape == (32,) and s.expert_load_E.shape == (16,) and s.selection_TE.shape == (4, 16)
    assert ((s.num_unique_B >= 3) & (s.num_unique_B <= 2 + 4 * 1)).all()
    torch.testing.assert_close(s.expert_load_E.sum(), torch.tensor(1.0))


@pytest.mark.parametrize(("k_s", "k_a"), [(1, 0), (0, 1)])
def test_one_expert_with_k_one_equals_a_plain_mlp(k_s: int, k_a: int) -> None:
    torch.manual_seed(0)
    arch = SMESArch(8, 3, num_experts=1, k_shared=k_s, k_adaptive=k_a, expert_layers=[16, 4])
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.ReLU())
    with torch.no_grad():
        for i, layer in enumerate([mlp[0], mlp[2]]):
            layer.weight.copy_(arch.experts.weights[i][0].t())
            layer.bias.copy_(arch.experts.biases[i][0])
    h = torch.randn(20, 8)
    out = arch(h)
    for t in range(3):
        torch.testing.assert_close(out.task_reprs[t], mlp(h))
    torch.testing.assert_close(out.routing.gates_BTK, torch.ones(20, 3, 1))
    assert out.aux_loss.item() == pytest.approx(1.0)


def test_k_shared_zero_runs_classic_independent_top_k() -> None:
    torch.manual_seed(2)
    arch = SMESArch(8, 4, num_experts=12, k_shared=0, k_adaptive=2, expert_layers=[8])
    h = torch.randn(64, 8)
    logits = arch.gates(h)
    top = torch.topk(logits, 2, dim=-1)
    out = arch(h)
    assert torch.equal(out.routing.ids_BTK, top.indices)
    torch.testing.assert_close(out.routing.gates_BTK, torch.softmax(top.values, -1))
    # Without the shared stage, instances can activate up to T * K experts.
    assert arch_stats(out).num_unique_B.max().item() > 2


def test_load_balance_gradient_reaches_the_router() -> None:
    torch.manual_seed(3)
    arch = SMESArch(8, 4, num_experts=16, k_shared=2, k_adaptive=1, expert_layers=[8])
    arch(torch.randn(32, 8)).aux_loss.backward()
    assert arch.gates.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in arch.experts.parameters())


def test_task_weights_reach_the_shared_stage() -> None:
    torch.manual_seed(4)
    arch = SMESArch(8, 2, num_experts=6, k_shared=1, k_adaptive=0, expert_layers=[4], task_weights=[3.0, 1.0])
    h = torch.randn(16, 8)
    expected = progressive_route(arch.gates(h), torch.tensor([3.0, 1.0]), 1, 0).ids_BTK
    assert torch.equal(arch(h).routing.ids_BTK, expected)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"k_shared": 3, "k_adaptive": 2, "num_experts": 4}, "num_experts"),
    ({"k_shared": -1}, "k_shared"),
    ({"k_adaptive": -1}, "k_adaptive"),
    ({"k_shared": 0, "k_adaptive": 0}, "k_shared"),
    ({"task_weights": [1.0, 1.0]}, "task_weights"),
    ({"task_weights": [1.0, 0.0, 1.0]}, "task_weights"),
    ({"expert_layers": []}, "expert_layers"),
    ({"num_experts": 0}, "num_experts"),
    ({"num_tasks": 0}, "num_tasks"),
])
def test_impossible_settings_raise_naming_the_argument(kwargs: dict, argument: str) -> None:
    args = {"in_features": 8, "num_tasks": 3, "num_experts": 8, "k_shared": 2, "k_adaptive": 1,
            "expert_layers": [4], **kwargs}
    with pytest.raises(ValueError, match=argument):
        SMESArch(**args)
