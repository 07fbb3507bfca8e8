"""Slow, obviously-correct references the vectorised code is tested against (tests only)."""

from __future__ import annotations

import math

import torch

from smes_rec.modules.experts import GroupedMLP


def route_one_instance(z_TE: list[list[float]], w_T: list[float], k_shared: int, k_adaptive: int):
    """docs/design.md §2 steps 2-5 for one instance, in float64 Python. Ties go to the lower expert index.

    Returns:
        (ids per task, gates per task, probs per task) as nested lists.
    """
    T, E = len(z_TE), len(z_TE[0])
    probs = []
    for t in range(T):
        m = max(z_TE[t])
        ex = [math.exp(v - m) for v in z_TE[t]]
        probs.append([v / sum(ex) for v in ex])
    pooled = [sum(w_T[t] * probs[t][e] for t in range(T)) for e in range(E)]
    shared = sorted(range(E), key=lambda e: (-pooled[e], e))[:k_shared]
    ids, gates = [], []
    for t in range(T):
        outside = [e for e in range(E) if e not in shared]
        adaptive = sorted(outside, key=lambda e: (-z_TE[t][e], e))[:k_adaptive]
        chosen = shared + adaptive
        total = sum(probs[t][e] for e in chosen)
        ids.append(chosen)
        gates.append([probs[t][e] / total for e in chosen])
    return ids, gates, probs


def load_balance_loss(probs_BTE: torch.Tensor, ids_BTK: torch.Tensor, num_experts: int) -> float:
    """docs/design.md §2 step 8 with explicit loops."""
    B, T, K = ids_BTK.shape
    fbar = [0.0] * num_experts
    pbar = [0.0] * num_experts
    for b in range(B):
        for t in range(T):
            for e in ids_BTK[b, t].tolist():
                fbar[e] += 1.0 / (B * T)
            for e in range(num_experts):
                pbar[e] += float(probs_BTE[b, t, e]) / (B * T)
    return num_experts / K * sum(f * p for f, p in zip(fbar, pbar, strict=True))


def expert_mlp(experts: GroupedMLP, g: int, x: torch.Tensor) -> torch.Tensor:
    """Group g's MLP applied to x with plain matmuls."""
    h = x
    n = len(experts.weights)
    for i in range(n):
        h = h @ experts.weights[i][g] + experts.biases[i][g]
        if i < n - 1 or experts.activate_last:
            h = torch.relu(h)
    return h


def dense_masked_forward(arch, h_BD: torch.Tensor) -> torch.Tensor:
    """SMES computed densely: every expert on every instance, unselected experts masked by zero gates."""
    from smes_rec.modules.routing import progressive_route

    routing = progressive_route(arch.gates(h_BD), arch.task_weights_T, arch.k_shared, arch.k_adaptive)
    y_EBH = torch.stack([expert_mlp(arch.experts, e, h_BD) for e in range(arch.num_experts)])
    weights_BTE = torch.zeros_like(routing.probs_BTE).scatter(-1, routing.ids_BTK, routing.gates_BTK)
    return torch.einsum("bte,ebh->tbh", weights_BTE, y_EBH)
