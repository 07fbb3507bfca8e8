"""RankMixerArch: token mixing against a brute-force permutation, tokenisation, a dense-block reference, the
sparse variant's real sparse inference (counted expert calls), DTSI training, adaptive lambda, serving route."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from smes_rec import RankMixerArch, RankMixerShape, SparseMoE
from smes_rec.modules.rankmixer import sparse_token_experts, token_mix
from tests.modules.contract import arch_stats, assert_contract, assert_grads, assert_serving_route

B, F_IN, T = 10, 21, 3
SHAPE = RankMixerShape(num_tokens=4, model_dim=8, ffn_ratio=2, num_layers=2)


def test_token_mix_is_the_stated_permutation() -> None:
    torch.manual_seed(0)
    for N, D in [(4, 8), (3, 6), (2, 2), (5, 5)]:
        x = torch.randn(2, N, D)
        out = token_mix(x)
        dh = D // N
        expected = torch.empty_like(x)
        for b in range(2):
            for h in range(N):  # new token h = [x_1^h || ... || x_N^h]
                for t in range(N):
                    for j in range(dh):
                        expected[b, h, t * dh + j] = x[b, t, h * dh + j]
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        torch.testing.assert_close(token_mix(out), x, rtol=0, atol=0)  # with H = N it is an involution
        assert sorted(out.flatten().tolist()) == sorted(x.flatten().tolist())


def test_tokens_group_pad_chunk_and_project_per_token() -> None:
    torch.manual_seed(1)
    order = list(reversed(range(F_IN)))
    arch = RankMixerArch(F_IN, T, shape=SHAPE, column_order=order)
    h = torch.randn(B, F_IN)
    chunk = -(-F_IN // SHAPE.num_tokens)
    e = torch.cat([h[:, order], torch.zeros(B, SHAPE.num_tokens * chunk - F_IN)], dim=1)
    tokens = arch.tokens(h)
    for i in range(SHAPE.num_tokens):
        torch.testing.assert_close(tokens[:, i], e[:, i * chunk:(i + 1) * chunk] @ arch.proj_w[i] + arch.proj_b[i])
    with pytest.raises(ValueError, match="permutation"):
        RankMixerArch(F_IN, T, shape=SHAPE, column_order=[0] * F_IN)


def _dense_reference(arch: RankMixerArch, h: torch.Tensor) -> torch.Tensor:
    x = arch.tokens(h)
    N, D = arch.num_tokens, arch.out_features
    for mix_norm, ffn, ffn_norm in zip(arch.mix_norms, arch.ffns, arch.ffn_norms, strict=True):
        mixed = torch.stack([torch.cat([x[:, t, hd * (D // N):(hd + 1) * (D // N)] for t in range(N)], -1)
                             for hd in range(N)], 1)
        s = F.layer_norm(mixed + x, (D,), mix_norm.weight, mix_norm.bias)
        v = torch.stack([F.gelu(s[:, t] @ ffn.w1[t] + ffn.b1[t]) @ ffn.w2[t] + ffn.b2[t] for t in range(N)], 1)
        x = F.layer_norm(v + s, (D,), ffn_norm.weight, ffn_norm.bias)
    return x.mean(1)


def test_dense_rankmixer_matches_reference_and_broadcasts_one_vector() -> None:
    torch.manual_seed(2)
    arch = RankMixerArch(F_IN, T, shape=SHAPE)
    h = torch.randn(B, F_IN)
    out = arch(h)
    assert_contract(out, T, B, SHAPE.model_dim, 1)
    pooled = _dense_reference(arch, h)
    for t in range(T):
        torch.testing.assert_close(out.task_reprs[t], pooled)
    assert out.aux_loss.item() == 0.0 and (arch_stats(out).num_unique_B == 1).all()
    assert not torch.equal(arch.ffns[0].w1[0], arch.ffns[0].w1[1])  # per-token FFNs, not shared
    assert_grads(arch, out)
    assert_serving_route(arch, h)


MOE = SparseMoE(num_experts=3, expert_ratio=1, target_sparsity=0.5, lambda_init=0.01, lambda_rate=1.5,
                infer_weight=0.25)


def _sparse(seed: int = 3) -> RankMixerArch:
    torch.manual_seed(seed)
    arch = RankMixerArch(F_IN, T, shape=SHAPE, moe=MOE)
    with torch.no_grad():  # expert 2 of token 1 in block 0 is never active at inference; the rest vary
        arch.ffns[0].router_infer_bias[1, 2] = -1e4
    return arch


class _CountMatmuls(TorchDispatchMode):
    """Records the rows of every addmm (the sparse path's expert GEMMs are its only addmm calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.addmm.default:
            self.rows.append(args[1].size(0))
        return func(*args, **(kwargs or {}))


def _infer_gates(ffn: torch.nn.Module, s: torch.Tensor) -> torch.Tensor:
    return F.relu(torch.einsum("bnd,ndj->bnj", s, ffn.router_infer) + ffn.router_infer_bias)


def _all_experts(ffn: torch.nn.Module, s: torch.Tensor) -> torch.Tensor:
    N, J = ffn.num_tokens, ffn.num_experts
    return torch.stack([torch.stack([
        F.gelu(s[:, i] @ ffn.w1[i * J + j] + ffn.b1[i * J + j]) @ ffn.w2[i * J + j] + ffn.b2[i * J + j]
        for j in range(J)], 1) for i in range(N)], 1)  # [B, N, J, D]


def test_sparse_inference_runs_only_experts_with_nonzero_gates() -> None:
    arch = _sparse().eval()
    h = torch.randn(B, F_IN)
    with torch.no_grad(), _CountMatmuls() as counter:
        out = arch(h)
    # Reference: compute every expert, mask by the inference gates (h_infer only).
    x = arch.tokens(h)
    expected_calls, expected_rows = [], 0
    with torch.no_grad():
        for mix_norm, ffn, ffn_norm in zip(arch.mix_norms, arch.ffns, arch.ffn_norms, strict=True):
            s = mix_norm(token_mix(x) + x)
            g = _infer_gates(ffn, s)
            v = (g.unsqueeze(-1) * _all_experts(ffn, s)).sum(2)
            x = ffn_norm(v + s)
            per_expert = (g > 0).sum(0).reshape(-1)  # [N * J] in expert order i * J + j
            expected_calls += [int(r) for r in per_expert if r > 0]
            expected_rows += int((g > 0).sum())
    for t in range(T):
        torch.testing.assert_close(out.task_reprs[t], x.mean(1), rtol=1e-4, atol=1e-5)
    # Two GEMMs per called expert, each on exactly its active rows; experts without an active row are not called.
    assert counter.rows[0::2] == expected_calls and counter.rows[1::2] == expected_calls
    assert sum(counter.rows[0::2]) == expected_rows
    num_experts = SHAPE.num_layers * SHAPE.num_tokens * MOE.num_experts
    assert 0 < expected_rows < B * num_experts  # some gates are zero, some are not
    assert_contract(out, T, B, SHAPE.model_dim, num_experts)
    torch.testing.assert_close(arch_stats(out).num_unique_B.sum(), torch.tensor(expected_rows))
    assert (arch_stats(out).selection_TE[:, 1 * MOE.num_experts + 2] == 0).all()


def test_sparse_token_experts_on_no_active_gate_returns_zeros() -> None:
    s = torch.randn(2, 3, 4)
    w1, b1, w2, b2 = torch.randn(6, 4, 5), torch.randn(6, 5), torch.randn(6, 5, 4), torch.randn(6, 4)
    assert not sparse_token_experts(s, torch.zeros(2, 3, 2), w1, b1, w2, b2).any()


def test_dtsi_training_mixes_both_routers_and_adapts_lambda() -> None:
    arch = _sparse().train()
    h = torch.randn(B, F_IN)
    lam = arch.reg_lambda.item()
    out = arch(h)
    x = arch.tokens(h)
    l_reg = 0.0
    for mix_norm, ffn, ffn_norm in zip(arch.mix_norms, arch.ffns, arch.ffn_norms, strict=True):
        s = mix_norm(token_mix(x) + x)
        g_inf = _infer_gates(ffn, s)
        g_train = F.relu(torch.einsum("bnd,ndj->bnj", s, ffn.router_train) + ffn.router_train_bias)
        g = (1 - MOE.infer_weight) * g_train + MOE.infer_weight * g_inf
        x = ffn_norm((g.unsqueeze(-1) * _all_experts(ffn, s)).sum(2) + s)
        l_reg = l_reg + g_inf.sum((1, 2)).mean()
    torch.testing.assert_close(out.task_reprs[0], x.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.aux_loss, lam * l_reg)
    # Lambda moved by the rate, in the direction that brings the inference sparsity to the target.
    zeros = 1 - arch_stats(out).num_unique_B.float().mean() / (SHAPE.num_layers * SHAPE.num_tokens * MOE.num_experts)
    factor = MOE.lambda_rate if zeros < MOE.target_sparsity else 1 / MOE.lambda_rate
    torch.testing.assert_close(arch.reg_lambda, torch.tensor(lam * factor))
    # Dense training: every expert and both routers get gradients (h_infer through alpha and the L1 loss).
    arch.zero_grad()
    assert_grads(arch, arch(h))


def test_lambda_grows_when_too_dense_and_shrinks_when_too_sparse() -> None:
    h = torch.randn(B, F_IN)
    for target, grows in [(0.99, True), (0.0, False)]:
        torch.manual_seed(4)
        arch = RankMixerArch(F_IN, T, shape=SHAPE, moe=SparseMoE(target_sparsity=target, lambda_init=1.0)).train()
        arch(h)
        assert (arch.reg_lambda.item() > 1.0) is grows


def test_sparse_serving_route() -> None:
    assert_serving_route(_sparse(), torch.randn(B, F_IN))


def test_rankmixer_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        RankMixerShape(num_tokens=3, model_dim=8)
    with pytest.raises(ValueError, match="infer_weight"):
        SparseMoE(infer_weight=0.0)
