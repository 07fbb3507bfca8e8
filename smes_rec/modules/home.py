"""HoME, the hierarchy of multi-gate experts (Kuaishou, arXiv 2408.05430): the production model SMES replaced.

Legend:
    B   instances, D input features, T tasks, C task categories
    G   experts of one bank, K experts one gate sees, H expert output features, R LoRA rank

No ``from __future__ import annotations``: the forward's annotations must be real types for TorchScript.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from smes_rec.modules.gates import TaskGates
from smes_rec.modules.outputs import ArchOutput
from smes_rec.modules.routing import Routing

__all__ = ["HoMEArch", "HoMEExperts", "NormSwishExperts"]


@dataclass(frozen=True)
class HoMEExperts:
    """How many experts of each kind HoME has, and its feature gates' rank.

    Attributes:
        meta_shared: Meta-layer experts shared by every category.
        meta_per_category: Meta-layer experts owned by each category.
        task_shared: Task-layer experts shared by every task (they read the shared meta representation).
        task_per_category: Task-layer experts shared by the tasks of one category.
        task_specific: Task-layer experts owned by each task (the self-gate mixes these; at least 1).
        lora_rank: R, the rank of every feature gate ``2 * sigmoid(x A B)``.
        shared_meta_sees_all: The shared meta gate mixes every meta expert (CGC style) instead of the shared
            ones only. Off by default: then a category's outputs depend on no other category's experts at all.
    """

    meta_shared: int = 2
    meta_per_category: int = 2
    task_shared: int = 1
    task_per_category: int = 1
    task_specific: int = 1
    lora_rank: int = 8
    shared_meta_sees_all: bool = False

    def __post_init__(self) -> None:
        for name in ("meta_shared", "meta_per_category", "task_shared", "task_per_category"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("task_specific", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.meta_shared + self.meta_per_category == 0:
            raise ValueError("meta_shared + meta_per_category must be >= 1: a category needs a meta expert")
        if self.meta_shared == 0 and self.task_shared > 0 and not self.shared_meta_sees_all:
            raise ValueError("task_shared experts read the shared meta representation, which needs meta_shared >= 1 "
                             "(or shared_meta_sees_all)")


class NormSwishExperts(nn.Module):
    """G experts, each an MLP of ``Linear -> BatchNorm -> Swish`` layers with its own LoRA feature gate.

    HoME's expert normalisation: batch norm after every linear layer (per expert, per unit) and Swish
    (``x * sigmoid(x)``, beta = 1) instead of ReLU. Expert g reads ``x_g * 2 * sigmoid(x_g A_g B_g)``: the
    feature gate privatises each expert's input with per-dimension importances in (0, 2).

    Args:
        num_experts: G.
        in_features: D.
        layer_widths: Output width of every layer; the last is H.
        lora_rank: R.
    """

    def __init__(self, num_experts: int, in_features: int, layer_widths: Sequence[int], *, lora_rank: int):
        super().__init__()
        self.num_experts = num_experts
        self.out_features = layer_widths[-1]
        dims = [in_features, *layer_widths]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(num_experts, a, b)) for a, b in pairwise(dims))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(num_experts, 1, b)) for b in dims[1:])
        self.norms = nn.ModuleList(nn.BatchNorm1d(num_experts * b) for b in dims[1:])
        self.lora_down = nn.Parameter(torch.empty(num_experts, in_features, lora_rank))
        self.lora_up = nn.Parameter(torch.empty(num_experts, lora_rank, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s distribution per expert; the LoRA up-projection small, so every gate starts near 1."""
        for w, b in zip(self.weights, self.biases, strict=True):
            bound = w.size(1) ** -0.5
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)
        nn.init.uniform_(self.lora_down, -self.lora_down.size(1) ** -0.5, self.lora_down.size(1) ** -0.5)
        nn.init.normal_(self.lora_up, std=1e-2)

    def feature_gate(self, x_GBD: torch.Tensor) -> torch.Tensor:
        """``2 * sigmoid(x A B)`` per expert, ``[G, B, D]``."""
        return 2.0 * torch.sigmoid(torch.bmm(torch.bmm(x_GBD, self.lora_down), self.lora_up))

    def forward(self, x_GBD: torch.Tensor) -> torch.Tensor:
        """Expert g on its own input ``x_GBD[g]``. Returns ``[G, B, H]``."""
        G, B = x_GBD.size(0), x_GBD.size(1)
        h = x_GBD * self.feature_gate(x_GBD)
        for w, b, norm in zip(self.weights, self.biases, self.norms, strict=True):
            z_GBH = torch.baddbmm(b, h, w)
            # BatchNorm1d over G * H channels: statistics per expert and unit, over the batch.
            z_BX = norm(z_GBH.transpose(0, 1).reshape(B, -1))
            h = F.silu(z_BX.view(B, G, -1).transpose(0, 1))
        return h


def _ids(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    return torch.tensor([list(r) for r in rows], dtype=torch.int64)


class HoMEArch(nn.Module):
    """HoME: normalised Swish experts in a two-level category hierarchy, feature gates and self-gates.

    Meta layer: ``meta_shared`` shared experts and ``meta_per_category`` experts per category all read ``h``
    (each through its own feature gate). Category c's gate (input ``h``) mixes the shared experts and its own only
    (the hierarchy mask), giving ``m_c``; the shared gate mixes the shared meta experts, giving ``m_sh``.

    Task layer: task t of category c reads ``u_c = [m_sh ; m_c]``. Its experts are ``task_shared`` global ones
    (reading ``m_sh``), ``task_per_category`` of its category and ``task_specific`` of its own (reading
    ``u_c``), every one feature-gated. Its gate (input ``u_c``) is a softmax over all of them; the self-gate
    (input ``u_c``) covers its own experts only, a sigmoid for one expert and a softmax for several, and adds
    ``sum_j s_{t,j} S_{t,j}(u_c)``: ``z_t = sum_e g_{t,e} e(.) + sum_j s_{t,j} S_{t,j}(u_c)``.

    So with the default ``shared_meta_sees_all=False`` nothing a category's tasks compute depends on another
    category's experts. Choices the paper leaves open are listed in docs/baselines.md.

    Args:
        in_features: D.
        task_category: The category index of every task (length T); categories are ``0..C-1``, each non-empty.
        expert_layers: Widths of every expert's layers (both levels); the last is H.
        experts: Expert counts per kind, LoRA rank and the shared meta gate's scope (defaults when None).
    """

    category_ids_CK: torch.Tensor
    shared_meta_ids_K: torch.Tensor
    task_ids_TK: torch.Tensor
    own_ids_TJ: torch.Tensor
    category_of_task_T: torch.Tensor
    category_of_owned_O: torch.Tensor

    def __init__(self, in_features: int, task_category: Sequence[int], *, expert_layers: Sequence[int],
                 experts: HoMEExperts | None = None):
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        if not task_category:
            raise ValueError("task_category must list the category of at least one task")
        if not expert_layers or any(w < 1 for w in expert_layers):
            raise ValueError(f"expert_layers must list positive widths, got {list(expert_layers)}")
        experts = experts or HoMEExperts()
        num_categories = max(task_category) + 1
        if min(task_category) < 0 or set(task_category) != set(range(num_categories)):
            raise ValueError(
                f"task_category must use every category 0..C-1 (each with a task), got {list(task_category)}")
        x = experts
        T, C, H = len(task_category), num_categories, expert_layers[-1]
        self.num_tasks, self.num_categories, self.out_features = T, C, H
        self.experts_spec = x

        # Meta layer: shared experts 0..S-1, then category c's at S + c * P + j.
        S, P = x.meta_shared, x.meta_per_category
        self.meta_experts = NormSwishExperts(S + C * P, in_features, expert_layers, lora_rank=x.lora_rank)
        self.category_gates = TaskGates(in_features, C, S + P)
        shared_meta = list(range(S + C * P)) if x.shared_meta_sees_all else list(range(S))
        # A gate over one expert would be the constant 1 (and never learn): that expert is m_sh itself.
        self.shared_gate = TaskGates(in_features, 1, len(shared_meta)) if len(shared_meta) > 1 else None
        self.register_buffer("category_ids_CK", _ids([[*range(S), *(S + c * P + j for j in range(P))]
                                                      for c in range(C)]), persistent=False)
        self.register_buffer("shared_meta_ids_K", torch.tensor(shared_meta, dtype=torch.int64), persistent=False)

        # Task layer: global experts 0..Q-1 (read m_sh), then category c's at Q + c * R_c + j, then task t's at
        # Q + C * R_c + t * R_t + j (both read u_c of their category).
        Q, Rc, Rt = x.task_shared, x.task_per_category, x.task_specific
        self.num_experts = Q + C * Rc + T * Rt
        self.global_experts = NormSwishExperts(Q, H, expert_layers, lora_rank=x.lora_rank) if Q else None
        self.owned_experts = NormSwishExperts(C * Rc + T * Rt, 2 * H, expert_layers, lora_rank=x.lora_rank)
        self.task_gates = TaskGates(2 * H, T, Q + Rc + Rt)
        self.self_gates = TaskGates(2 * H, T, Rt)
        self.register_buffer("task_ids_TK", _ids([
            [*range(Q), *(Q + c * Rc + j for j in range(Rc)), *(Q + C * Rc + t * Rt + j for j in range(Rt))]
            for t, c in enumerate(task_category)]), persistent=False)
        self.register_buffer("own_ids_TJ", _ids([[Q + C * Rc + t * Rt + j for j in range(Rt)] for t in range(T)]),
                             persistent=False)
        self.register_buffer("category_of_task_T", torch.tensor(list(task_category), dtype=torch.int64),
                             persistent=False)
        self.register_buffer("category_of_owned_O", torch.tensor(
            [c for c in range(C) for _ in range(Rc)] + [task_category[t] for t in range(T) for _ in range(Rt)],
            dtype=torch.int64), persistent=False)

    def forward(self, h_BD: torch.Tensor) -> ArchOutput:
        """Runs both levels; reports the task gates over each task's visible task-layer experts as routing.

        Args:
            h_BD: The shared-bottom output.

        Returns:
            :class:`ArchOutput` with ``task_reprs`` ``[T, B, H]`` and a zero auxiliary loss.
        """
        T, B = self.num_tasks, h_BD.size(0)
        # Meta layer.
        meta_GBH = self.meta_experts(h_BD.unsqueeze(0).expand(self.meta_experts.num_experts, -1, -1))
        cat_probs_BCK = torch.softmax(self.category_gates(h_BD), dim=-1)
        cat_meta_CKBH = meta_GBH.index_select(0, self.category_ids_CK.reshape(-1)).view(
            self.num_categories, -1, B, self.out_features)
        m_CBH = torch.einsum("bck,ckbh->cbh", cat_probs_BCK.to(meta_GBH.dtype), cat_meta_CKBH)
        if self.shared_gate is not None:
            sh_probs_BK = torch.softmax(self.shared_gate(h_BD)[:, 0], dim=-1)
            m_sh_BH = torch.einsum("bk,kbh->bh", sh_probs_BK.to(meta_GBH.dtype),
                                   meta_GBH.index_select(0, self.shared_meta_ids_K))
        elif len(self.shared_meta_ids_K) == 1:
            m_sh_BH = meta_GBH[0]
        else:
            m_sh_BH = torch.zeros_like(m_CBH[0])  # no shared meta expert: u_c's shared half is empty
        u_CBX = torch.cat([m_sh_BH.unsqueeze(0).expand_as(m_CBH), m_CBH], dim=-1)

        # Task layer.
        owned_OBH = self.owned_experts(u_CBX.index_select(0, self.category_of_owned_O))
        if self.global_experts is not None:
            glob_QBH = self.global_experts(m_sh_BH.unsqueeze(0).expand(self.global_experts.num_experts, -1, -1))
            y_EBH = torch.cat([glob_QBH, owned_OBH], dim=0)
        else:
            y_EBH = owned_OBH
        u_TBX = u_CBX.index_select(0, self.category_of_task_T)
        probs_BTK = torch.softmax(self.task_gates.forward_per_input(u_TBX), dim=-1)
        self_logits_BTJ = self.self_gates.forward_per_input(u_TBX)
        if self.experts_spec.task_specific == 1:
            self_BTJ = torch.sigmoid(self_logits_BTJ)
        else:
            self_BTJ = torch.softmax(self_logits_BTJ, dim=-1)
        H = self.out_features
        y_TKBH = y_EBH.index_select(0, self.task_ids_TK.reshape(-1)).view(T, -1, B, H)
        y_TJBH = y_EBH.index_select(0, self.own_ids_TJ.reshape(-1)).view(T, -1, B, H)
        task_TBH = (torch.einsum("btk,tkbh->tbh", probs_BTK.to(y_EBH.dtype), y_TKBH)
                    + torch.einsum("btj,tjbh->tbh", self_BTJ.to(y_EBH.dtype), y_TJBH))

        ids_BTK = torch.zeros_like(probs_BTK, dtype=torch.int64) + self.task_ids_TK  # broadcast: fx-traceable
        probs_BTE = probs_BTK.new_zeros(B, T, self.num_experts).scatter(-1, ids_BTK, probs_BTK)
        routing = Routing(ids_BTK=ids_BTK, gates_BTK=probs_BTK, probs_BTE=probs_BTE)
        return ArchOutput(task_TBH, h_BD.new_zeros((), dtype=torch.float32), routing)
