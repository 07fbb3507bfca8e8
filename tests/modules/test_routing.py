"""progressive_route, the load-balancing loss and telemetry against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch

from smes_rec.modules.routing import (
    Routing,
    _top_k_by_argmax,
    _top_k_by_sort,
    _top_k_by_topk,
    expert_membership,
    multi_gate_load_balance_loss,
    progressive_route,
    routing_stats,
)
from tests.modules.reference import load_balance_loss, route_one_instance

# (B, T, E, K_s, K_a): the default shape, edge cases T = 1, E = K, K_s = 0, K_a = 0, one expert.
CASES = [
    (64, 4, 16, 2, 1),
    (64, 3, 8, 2, 2),
    (32, 1, 8, 2, 1),
    (32, 3, 4, 2, 2),
    (32, 4, 8, 0, 2),
    (32, 4, 8, 3, 0),
    (16, 2, 1, 1, 0),
    (16, 2, 1, 0, 1),
    (16, 5, 6, 1, 1),
]


def _check_against_reference(logits_BTE: torch.Tensor, w_T: torch.Tensor, k_s: int, k_a: int) -> None:
    out = progressive_route(logits_BTE, w_T, k_s, k_a)
    B, T, E = logits_BTE.shape
    assert out.ids_BTK.shape == (B, T, k_s + k_a) and out.ids_BTK.dtype == torch.int64
    assert out.gates_BTK.dtype == torch.float32 and out.probs_BTE.dtype == torch.float32
    for b in range(B):
        ids, gates, probs = route_one_instance(logits_BTE[b].double().tolist(), w_T.tolist(), k_s, k_a)
        assert out.ids_BTK[b].tolist() == ids, f"instance {b}"
        torch.testing.assert_close(out.gates_BTK[b], torch.tensor(gates, dtype=torch.float32))
        torch.testing.assert_close(out.probs_BTE[b], torch.tensor(probs, dtype=torch.float32))


@pytest.mark.parametrize(("B", "T", "E", "k_s", "k_a"), CASES)
def test_routing_matches_reference_on_random_logits(B: int, T: int, E: int, k_s: int, k_a: int) -> None:
    g = torch.Generator().manual_seed(B * 1000 + T * 100 + E * 10 + k_s + k_a)
    logits = torch.randn(B, T, E, generator=g) * 2
    weights = torch.rand(T, generator=g) + 0.1
    _check_against_reference(logits, weights, k_s, k_a)


@pytest.mark.parametrize(("B", "T", "E", "k_s", "k_a"), CASES)
def test_routing_ties_break_towards_lower_index(B: int, T: int, E: int, k_s: int, k_a: int) -> None:
    g = torch.Generator().manual_seed(7 + E)
    # Small integer logits tie within a task; duplicated expert columns tie in the pooled score as well.
    logits = torch.randint(-2, 3, (B, T, E), generator=g).float()
    if E >= 4:
        logits[..., 1] = logits[..., 0]
        logits[..., 3] = logits[..., 2]
    _check_against_reference(logits, torch.full((T,), 1.0 / T), k_s, k_a)
    uniform = progressive_route(torch.zeros(2, T, E), torch.ones(T), k_s, k_a)
    expected = list(range(k_s + k_a))
    assert uniform.ids_BTK.tolist() == [[expected] * T] * 2


def _brute_force_top_k(row: list[float], k: int) -> list[int]:
    """Descending score, ties to the lower index; NaN ranks above every number (``torch.sort``'s convention)."""
    return sorted(range(len(row)), key=lambda e: (not math.isnan(row[e]), -row[e] if row[e] == row[e] else 0, e))[:k]


@pytest.mark.parametrize("E", [1, 2, 5, 16, 64])
def test_every_top_k_path_matches_brute_force_with_ties_nan_inf_and_signed_zero(E: int) -> None:
    """The CPU paths (k passes of ``max``; ``torch.topk``, tied rows redone) and the GPU path (stable sort) pick the
    same experts."""
    g = torch.Generator().manual_seed(E)
    scores = torch.randint(-2, 3, (96, E), generator=g).float()  # heavy ties
    scores[:32] = torch.randn(32, E, generator=g)  # rows with no ties
    specials = torch.tensor([float("-inf"), float("inf"), float("nan"), -0.0, 0.0])
    spots = torch.rand(96, E, generator=g) < 0.1
    scores[spots] = specials[torch.randint(0, 5, (int(spots.sum()),), generator=g)]
    for k in range(E + 1):
        expected = [_brute_force_top_k(row, k) for row in scores.tolist()]
        assert _top_k_by_sort(scores, k).tolist() == expected, f"sort, k={k}"
        assert _top_k_by_topk(scores, k).tolist() == expected, f"topk, k={k}"
        # The same on a [B, T, E] view, the shape routing uses, and on single rows (no leading dim).
        assert _top_k_by_topk(scores.view(8, 12, E), k).reshape(96, k).tolist() == expected
        assert [_top_k_by_topk(row, k).tolist() for row in scores[:40]] == expected[:40]
        if k:
            assert _top_k_by_argmax(scores, k).tolist() == expected, f"argmax, k={k}"
            assert _top_k_by_argmax(scores.view(8, 12, E), k).reshape(96, k).tolist() == expected


def test_selection_carries_no_gradient_only_the_gates_do() -> None:
    logits = torch.randn(16, 3, 8, requires_grad=True)
    out = progressive_route(logits, torch.ones(3), 2, 1)
    assert not out.ids_BTK.requires_grad
    (out.gates_BTK * torch.randn_like(out.gates_BTK)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_shared_part_is_identical_across_tasks_and_adaptive_part_outside_it() -> None:
    g = torch.Generator().manual_seed(0)
    out = progressive_route(torch.randn(128, 6, 32, generator=g), torch.ones(6), 3, 2)
    shared = out.ids_BTK[:, :, :3]
    assert torch.equal(shared, shared[:, :1].expand_as(shared))
    adaptive = out.ids_BTK[:, :, 3:]
    assert not (adaptive.unsqueeze(-1) == shared[:, :, None, :]).any()
    # Every task's K experts are distinct, and gates are a distribution over them.
    assert (out.ids_BTK.sort(-1).values.diff(dim=-1) > 0).all()
    torch.testing.assert_close(out.gates_BTK.sum(-1), torch.ones(128, 6))


def test_task_weights_steer_the_shared_set() -> None:
    # Task 0 prefers expert 0, task 1 prefers expert 1; the heavier task wins the single shared slot.
    logits = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]])
    assert progressive_route(logits, torch.tensor([0.9, 0.1]), 1, 0).ids_BTK[0, :, 0].tolist() == [0, 0]
    assert progressive_route(logits, torch.tensor([0.1, 0.9]), 1, 0).ids_BTK[0, :, 0].tolist() == [1, 1]


def test_k_shared_zero_is_classic_independent_top_k_per_task() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(256, 5, 16, generator=g)
    out = progressive_route(logits, torch.ones(5), 0, 3)
    top = torch.topk(logits, 3, dim=-1)
    assert torch.equal(out.ids_BTK, top.indices)
    torch.testing.assert_close(out.gates_BTK, torch.softmax(top.values, dim=-1))


def test_router_maths_is_float32_whatever_the_input_dtype() -> None:
    logits = torch.randn(8, 2, 6).to(torch.bfloat16)
    out = progressive_route(logits, torch.ones(2), 1, 1)
    assert out.probs_BTE.dtype == torch.float32 and out.gates_BTK.dtype == torch.float32


@pytest.mark.parametrize(("B", "T", "E", "k_s", "k_a"), CASES)
def test_unique_experts_per_instance_respect_the_bound(B: int, T: int, E: int, k_s: int, k_a: int) -> None:
    g = torch.Generator().manual_seed(3)
    out = progressive_route(torch.randn(B, T, E, generator=g) * 3, torch.ones(T), k_s, k_a)
    unique_B = expert_membership(out.ids_BTK, E).sum(1)
    brute_B = torch.tensor([len(set(out.ids_BTK[b].flatten().tolist())) for b in range(B)])
    assert torch.equal(unique_B, brute_B)
    assert (unique_B >= k_s + k_a).all()
    assert (unique_B <= min(E, k_s + T * k_a)).all()


@pytest.mark.parametrize(("B", "T", "E", "k_s", "k_a"), CASES)
def test_load_balance_loss_matches_reference(B: int, T: int, E: int, k_s: int, k_a: int) -> None:
    g = torch.Generator().manual_seed(5)
    out = progressive_route(torch.randn(B, T, E, generator=g), torch.ones(T), k_s, k_a)
    loss = multi_gate_load_balance_loss(out.probs_BTE, out.ids_BTK, E)
    assert loss.shape == () and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(load_balance_loss(out.probs_BTE, out.ids_BTK, E), rel=1e-5)


def test_load_balance_loss_is_one_when_uniform_and_larger_under_collapse() -> None:
    B, T, E, K = 32, 4, 8, 2
    # Uniform probabilities: L = 1 whatever is selected.
    ids = torch.randint(0, E, (B, T, 1)).expand(B, T, K) + torch.arange(K)
    assert multi_gate_load_balance_loss(torch.full((B, T, E), 1 / E), ids % E, E).item() == pytest.approx(1.0)
    # Balanced selection (every expert chosen equally often): L = 1 whatever the probabilities.
    balanced = (torch.arange(B).view(B, 1, 1) * K + torch.arange(K)) % E
    probs = torch.softmax(torch.randn(B, T, E), -1)
    assert multi_gate_load_balance_loss(probs, balanced.expand(B, T, K), E).item() == pytest.approx(1.0, rel=1e-5)
    # Collapse onto experts 0 and 1 with all the probability mass: L = E / K.
    collapsed_probs = torch.zeros(B, T, E)
    collapsed_probs[..., :2] = 0.5
    collapsed = torch.tensor([0, 1]).expand(B, T, K)
    assert multi_gate_load_balance_loss(collapsed_probs, collapsed, E).item() == pytest.approx(E / K)


def test_telemetry_matches_brute_force() -> None:
    B, T, E = 40, 3, 10
    g = torch.Generator().manual_seed(11)
    routing = progressive_route(torch.randn(B, T, E, generator=g), torch.ones(T), 2, 1)
    tel = routing_stats(routing.ids_BTK, E)
    assert isinstance(routing, Routing)
    pairs = [(b, e) for b in range(B) for e in set(routing.ids_BTK[b].flatten().tolist())]
    counts = torch.zeros(E)
    for _, e in pairs:
        counts[e] += 1
    torch.testing.assert_close(tel.expert_load_E, counts / len(pairs))
    assert tel.load_cv.item() == pytest.approx((counts.std(correction=0) / counts.mean()).item(), rel=1e-5)
    selection = torch.zeros(T, E, dtype=torch.int64)
    for b in range(B):
        for t in range(T):
            for e in routing.ids_BTK[b, t].tolist():
                selection[t, e] += 1
    assert torch.equal(tel.selection_TE, selection)
    assert tel.num_unique_B.sum().item() == len(pairs)
    assert torch.equal(tel.pairs_E, counts.long())
