"""RankMixer (ByteDance, arXiv 2507.15551) and its sparse-MoE variant (ReLU routing, DTSI).

Legend:
    B   instances, F input features (the pooled embeddings and dense features), T tasks
    N   tokens (= heads of the token mixing), D token width, Q per-token FFN hidden width
    J   experts per token (sparse variant), X = N * J token experts, P dispatched (instance, token expert) rows

No ``from __future__ import annotations``: the forward's annotations must be real types for TorchScript.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smes_rec.modules.outputs import ArchOutput, dense_routing
from smes_rec.modules.routing import Routing

__all__ = ["RankMixerArch", "RankMixerShape", "SparseMoE", "sparse_token_experts", "token_mix"]


@dataclass(frozen=True)
class RankMixerShape:
    """The dense RankMixer's shape.

    Attributes:
        num_tokens: N (also the number of mixing heads, so ``model_dim`` must be divisible by it).
        model_dim: D, every token's width (the output width H).
        ffn_ratio: k, the per-token FFN's hidden width is ``k * D``.
        num_layers: L blocks.
    """

    num_tokens: int = 8
    model_dim: int = 64
    ffn_ratio: int = 4
    num_layers: int = 2

    def __post_init__(self) -> None:
        for name in ("num_tokens", "model_dim", "ffn_ratio", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.model_dim % self.num_tokens:
            raise ValueError(f"model_dim ({self.model_dim}) must be divisible by num_tokens ({self.num_tokens}): "
                             "token mixing uses H = N heads")


@dataclass(frozen=True)
class SparseMoE:
    """The sparse-MoE variant: per-token experts, ReLU routing, adaptive L1 sparsity, dense-training/sparse-inference.

    Attributes:
        num_experts: J, experts owned by each token.
        expert_ratio: Every expert's hidden width is ``expert_ratio * D``.
        target_sparsity: The fraction of inference gates that should be 0 (the budget the adaptive lambda holds).
        lambda_init: Initial lambda of ``lambda * L_reg``.
        lambda_rate: After every training forward lambda is multiplied by ``rate`` if the inference gates are
            denser than the target, divided by it if sparser (a ReMoE-style controller).
        infer_weight: alpha: training forwards mix the experts with ``(1 - alpha) ReLU(h_train) + alpha
            ReLU(h_infer)``, which is how h_infer receives the task loss's gradient; evaluation uses
            ``ReLU(h_infer)`` alone.
    """

    num_experts: int = 4
    expert_ratio: int = 1
    target_sparsity: float = 0.5
    lambda_init: float = 1e-3
    lambda_rate: float = 1.2
    infer_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.num_experts < 1 or self.expert_ratio < 1:
            raise ValueError(f"num_experts and expert_ratio must be >= 1, got {self.num_experts}, {self.expert_ratio}")
        if not 0.0 <= self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must lie in [0, 1), got {self.target_sparsity}")
        if self.lambda_init < 0 or self.lambda_rate < 1.0:
            raise ValueError(f"lambda_init must be >= 0 and lambda_rate >= 1, got {self.lambda_init}, "
                             f"{self.lambda_rate}")
        if not 0.0 < self.infer_weight <= 1.0:
            raise ValueError(f"infer_weight must lie in (0, 1] (0 would leave h_infer without a task signal), "
                             f"got {self.infer_weight}")


def token_mix(x_BND: torch.Tensor) -> torch.Tensor:
    """RankMixer's parameter-free token mixing with H = N heads.

    Token t is split into N heads ``x_t = [x_t^1 || ... || x_t^N]``; new token h is ``[x_1^h || ... || x_N^h]``.

    Args:
        x_BND: Tokens; D divisible by N.

    Returns:
        The mixed tokens, ``[B, N, D]``.
    """
    B, N, D = x_BND.shape
    return x_BND.reshape(B, N, N, D // N).transpose(1, 2).reshape(B, N, D)


def sparse_token_experts(
    s_BND: torch.Tensor,
    gates_BNJ: torch.Tensor,
    w1_XDQ: torch.Tensor,
    b1_XQ: torch.Tensor,
    w2_XQD: torch.Tensor,
    b2_XD: torch.Tensor,
) -> torch.Tensor:
    """``v_{b,i} = sum_j G_{b,i,j} e_{i,j}(s_{b,i})`` running only the (instance, token expert) pairs with ``G > 0``.

    The pairs are sorted by expert (the row-major order of a nonzero over ``[X, B]``), every expert with rows runs
    once on its contiguous block (``Linear -> GELU -> Linear``), and the gated outputs are added back to their
    tokens. An expert with no active row is not called.

    Args:
        s_BND: Token inputs.
        gates_BNJ: Non-negative gates; expert j of token i is expert ``i * J + j``.
        w1_XDQ: First-layer weights of every token expert.
        b1_XQ: First-layer biases.
        w2_XQD: Second-layer weights.
        b2_XD: Second-layer biases.

    Returns:
        ``[B, N, D]``.
    """
    B, N, J = gates_BNJ.shape
    D = s_BND.size(2)
    gates_XB = gates_BNJ.permute(1, 2, 0).reshape(N * J, B)
    active_XB = gates_XB > 0
    pairs_P2 = active_XB.nonzero()
    expert_P, instance_P = pairs_P2[:, 0], pairs_P2[:, 1]
    row_P = instance_P * N + torch.div(expert_P, J, rounding_mode="floor")
    x_PD = s_BND.reshape(B * N, D).index_select(0, row_P)
    gate_P = gates_XB[expert_P, instance_P]
    ends: list[int] = active_XB.sum(dim=1).cumsum(dim=0).tolist()
    outs: list[torch.Tensor] = []
    start = 0
    for e in range(N * J):
        end = ends[e]
        if end > start:
            hidden = F.gelu(torch.addmm(b1_XQ[e], x_PD[start:end], w1_XDQ[e]))
            outs.append(torch.addmm(b2_XD[e], hidden, w2_XQD[e]))
        start = end
    y_PD = torch.cat(outs) if len(outs) > 0 else x_PD.new_zeros(0, D)
    out = s_BND.new_zeros(B * N, D).index_add(0, row_P, y_PD * gate_P.unsqueeze(1).to(y_PD.dtype))
    return out.view(B, N, D)


torch.fx.wrap("sparse_token_experts")  # a leaf: the number of rows and the expert loop depend on the data


def _uniform(shape: Sequence[int], fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


def _routing(active_BX: torch.Tensor, gates_BX: torch.Tensor, num_tasks: int) -> Routing:
    """The routing of ReLU-routed token experts; every task reads the same mixture, so every task "routes"
    to the active experts of its instance.

    ``ids_BTK`` lists all X experts with the inactive ones replaced by the instance's most-gated expert, so the
    set of ids is the active set whenever an instance has one (an instance with no active expert reports one).
    """
    B, X = active_BX.shape
    ids_X = torch.ones_like(active_BX[0], dtype=torch.int64).cumsum(0) - 1  # arange(X), fx-traceable
    top_B1 = gates_BX.argmax(dim=1, keepdim=True)
    ids_BX = torch.where(active_BX, ids_X.expand(B, X), top_B1)
    gates_BTX = gates_BX.float().unsqueeze(1).expand(B, num_tasks, X)
    probs_BTX = gates_BTX / gates_BTX.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return Routing(ids_BTK=ids_BX.unsqueeze(1).expand(B, num_tasks, X), gates_BTK=gates_BTX, probs_BTE=probs_BTX)


class _DenseTokenFFN(nn.Module):
    """N per-token FFNs, ``W2_t GELU(W1_t s_t + b1_t) + b2_t``, parameters not shared across tokens."""

    def __init__(self, num_tokens: int, dim: int, hidden: int):
        super().__init__()
        self.w1 = _uniform((num_tokens, dim, hidden), dim)
        self.b1 = _uniform((num_tokens, hidden), dim)
        self.w2 = _uniform((num_tokens, hidden, dim), hidden)
        self.b2 = _uniform((num_tokens, dim), hidden)

    def forward(self, s_BND: torch.Tensor) -> torch.Tensor:
        hidden_BNQ = F.gelu(torch.einsum("bnd,ndq->bnq", s_BND, self.w1) + self.b1)
        return torch.einsum("bnq,nqd->bnd", hidden_BNQ, self.w2) + self.b2


class _SparseTokenMoE(nn.Module):
    """J experts per token with two ReLU routers (DTSI): dense mixture in training, active experts only at eval.

    Returns the mixed tokens, the inference router's gates (what the sparsity loss and the routing read) and
    ``L_reg = mean_b sum_{i,j} ReLU(h_infer(s_{b,i}))_j``.
    """

    def __init__(self, num_tokens: int, dim: int, moe: SparseMoE):
        super().__init__()
        N, J, Q = num_tokens, moe.num_experts, moe.expert_ratio * dim
        self.num_tokens, self.num_experts, self.infer_weight = N, J, moe.infer_weight
        self.w1 = _uniform((N * J, dim, Q), dim)
        self.b1 = _uniform((N * J, Q), dim)
        self.w2 = _uniform((N * J, Q, dim), Q)
        self.b2 = _uniform((N * J, dim), Q)
        self.router_train = _uniform((N, dim, J), dim)
        self.router_train_bias = _uniform((N, J), dim)
        self.router_infer = _uniform((N, dim, J), dim)
        self.router_infer_bias = _uniform((N, J), dim)

    def forward(self, s_BND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        N, J = self.num_tokens, self.num_experts
        infer_BNJ = F.relu(torch.einsum("bnd,ndj->bnj", s_BND, self.router_infer) + self.router_infer_bias)
        l_reg = infer_BNJ.float().sum(dim=(1, 2)).mean()
        if self.training:
            train_BNJ = F.relu(torch.einsum("bnd,ndj->bnj", s_BND, self.router_train) + self.router_train_bias)
            gates_BNJ = (1.0 - self.infer_weight) * train_BNJ + self.infer_weight * infer_BNJ
            # Dense training: every token expert on every instance.
            w1_NJDQ = self.w1.view(N, J, self.w1.size(1), -1)
            hidden_BNJQ = F.gelu(torch.einsum("bnd,njdq->bnjq", s_BND, w1_NJDQ) + self.b1.view(N, J, -1))
            y_BNJD = torch.einsum("bnjq,njqd->bnjd", hidden_BNJQ, self.w2.view(N, J, -1, self.w2.size(2)))
            y_BNJD = y_BNJD + self.b2.view(N, J, -1)
            out_BND = torch.einsum("bnj,bnjd->bnd", gates_BNJ.to(y_BNJD.dtype), y_BNJD)
        else:
            out_BND = sparse_token_experts(s_BND, infer_BNJ, self.w1, self.b1, self.w2, self.b2)
        return out_BND, infer_BNJ, l_reg


class RankMixerArch(nn.Module):
    """RankMixer: feature tokens, parameter-free token mixing, per-token FFNs, post-LN residuals, mean pooling.

    Input ``h_BF`` is the concatenated pooled feature embeddings (and dense features), not a bottom MLP's output:
    the ranker builds RankMixer with an identity bottom. Tokenisation reorders the columns by feature group
    (``column_order``), pads them to ``N * d`` with ``d = ceil(F / N)``, cuts N chunks of width d and projects each
    with its own ``d -> D`` projection. Each of the L blocks is ``S = LN(TokenMix(X) + X)``,
    ``X' = LN(PFFN(S) + S)``. The tokens are mean-pooled into one vector, broadcast to every task (``[T, B, D]``):
    the paper's multi-task head is one shared vector; there is no per-task gate.

    With ``moe`` set, each block's per-token FFN becomes J experts per token mixed by ReLU gates (DTSI, see
    :class:`SparseMoE`): training runs every expert and mixes ``(1 - alpha) ReLU(h_train) + alpha ReLU(h_infer)``;
    evaluation runs only the experts whose ``ReLU(h_infer)`` gate is non-zero. The auxiliary loss is
    ``lambda * sum_blocks L_reg`` with lambda adapted after every training forward towards ``target_sparsity``
    (the ``reg_lambda`` buffer, saved with the weights). The routing reports the inference gates' active experts
    (X = L * N * J). The dense arch reports one expert with gate 1, as SharedBottom does.

    Args:
        in_features: F, the input width.
        num_tasks: T.
        shape: N, D, k, L (defaults when None).
        moe: The sparse variant's settings; None for the dense RankMixer.
        column_order: A permutation of ``range(F)`` grouping the input columns (None keeps their order).
    """

    column_order_F: torch.Tensor
    reg_lambda: torch.Tensor

    def __init__(self, in_features: int, num_tasks: int, *, shape: RankMixerShape | None = None,
                 moe: SparseMoE | None = None, column_order: Sequence[int] | None = None):
        super().__init__()
        shape = shape or RankMixerShape()
        if in_features < 1 or num_tasks < 1:
            raise ValueError(f"in_features and num_tasks must be >= 1, got {in_features}, {num_tasks}")
        if column_order is not None and sorted(column_order) != list(range(in_features)):
            raise ValueError(f"column_order must be a permutation of range({in_features})")
        N, D = shape.num_tokens, shape.model_dim
        self.num_tasks, self.num_tokens, self.out_features = num_tasks, N, D
        self.shape, self.moe = shape, moe
        self.chunk = -(-in_features // N)
        self.pad = N * self.chunk - in_features
        order = list(range(in_features)) if column_order is None else list(column_order)
        self.register_buffer("column_order_F", torch.tensor(order, dtype=torch.int64), persistent=False)
        self.proj_w = _uniform((N, self.chunk, D), self.chunk)
        self.proj_b = _uniform((N, D), self.chunk)
        self.mix_norms = nn.ModuleList(nn.LayerNorm(D) for _ in range(shape.num_layers))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(D) for _ in range(shape.num_layers))
        if moe is None:
            self.ffns = nn.ModuleList(_DenseTokenFFN(N, D, shape.ffn_ratio * D) for _ in range(shape.num_layers))
            self.num_experts = 1
        else:
            self.ffns = nn.ModuleList(_SparseTokenMoE(N, D, moe) for _ in range(shape.num_layers))
            self.num_experts = shape.num_layers * N * moe.num_experts
            self.register_buffer("reg_lambda", torch.tensor(moe.lambda_init, dtype=torch.float32))

    def tokens(self, h_BF: torch.Tensor) -> torch.Tensor:
        """Grouped, chunked, projected feature tokens ``[B, N, D]``."""
        e_BF = h_BF.index_select(1, self.column_order_F)
        if self.pad:
            e_BF = F.pad(e_BF, (0, self.pad))
        chunks_BNd = e_BF.view(e_BF.size(0), self.num_tokens, self.chunk)
        return torch.einsum("bnc,ncd->bnd", chunks_BNd, self.proj_w) + self.proj_b

    def forward(self, h_BF: torch.Tensor) -> ArchOutput:
        """Returns :class:`ArchOutput`: the pooled vector for every task, the (adaptive-lambda) sparsity loss or 0.

        Args:
            h_BF: The concatenated pooled embeddings and dense features.
        """
        x_BND = self.tokens(h_BF)
        l_reg = h_BF.new_zeros((), dtype=torch.float32)
        infer_gates: list[torch.Tensor] = []
        for mix_norm, ffn, ffn_norm in zip(self.mix_norms, self.ffns, self.ffn_norms, strict=True):
            s_BND = mix_norm(token_mix(x_BND) + x_BND)
            if self.moe is None:
                x_BND = ffn_norm(ffn(s_BND) + s_BND)
            else:
                v_BND, infer_BNJ, reg = ffn(s_BND)
                x_BND = ffn_norm(v_BND + s_BND)
                l_reg = l_reg + reg
                infer_gates.append(infer_BNJ.reshape(infer_BNJ.size(0), -1))
        pooled_BD = x_BND.mean(dim=1)
        task_TBD = pooled_BD.unsqueeze(0).expand(self.num_tasks, -1, -1)
        if self.moe is None:
            ones_BT1 = h_BF.new_ones(h_BF.size(0), self.num_tasks, 1, dtype=torch.float32)
            return ArchOutput(task_TBD, l_reg, dense_routing(ones_BT1))
        gates_BX = torch.cat(infer_gates, dim=1).detach()
        active_BX = gates_BX > 0
        aux = self.reg_lambda.clone() * l_reg  # a copy: the buffer is updated in place below
        if self.training:
            sparsity = 1.0 - active_BX.float().mean()
            direction = torch.sign(self.moe.target_sparsity - sparsity)  # denser than the target: raise lambda
            self.reg_lambda.mul_(torch.exp(direction * math.log(self.moe.lambda_rate)))
        return ArchOutput(task_TBD, aux, _routing(active_BX, gates_BX, self.num_tasks))
