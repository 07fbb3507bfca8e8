"""The baselines SMES is judged against, behind SMES's forward contract and output type.

Legend: B instances, D input features, T tasks, E experts, H expert output features.

Every arch maps ``h_BD`` to an :class:`~smes_rec.modules.outputs.ArchOutput` with ``task_reprs`` ``[T, B, H]``.
Dense baselines run every expert on every instance and return a zero auxiliary loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smes_rec.modules.experts import GroupedMLP
from smes_rec.modules.gates import TaskGates
from smes_rec.modules.outputs import ArchOutput, dense_routing
from smes_rec.modules.routing import Routing

__all__ = ["DenseMoEArch", "MMoEArch", "PLEArch", "SharedBottomArch"]


def _check(in_features: int, num_tasks: int, expert_layers: Sequence[int], **counts: int) -> None:
    for name, value in {"in_features": in_features, "num_tasks": num_tasks, **counts}.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not expert_layers:
        raise ValueError("expert_layers must list at least one layer width")


class SharedBottomArch(nn.Module):
    """One MLP shared by all tasks (hard parameter sharing): every task gets the same representation.

    Args:
        in_features: D.
        num_tasks: T.
        expert_layers: Widths of the shared MLP's layers; the last is H.
    """

    def __init__(self, in_features: int, num_tasks: int, *, expert_layers: Sequence[int]):
        super().__init__()
        _check(in_features, num_tasks, expert_layers)
        self.num_tasks = num_tasks
        self.out_features = expert_layers[-1]
        self.experts = GroupedMLP(1, in_features, expert_layers)

    def forward(self, h_BD: torch.Tensor) -> ArchOutput:
        """Returns the shared representation for every task (reported as one expert with gate 1)."""
        y_1BH = self.experts.forward_all(h_BD)
        probs_BT1 = h_BD.new_ones(h_BD.size(0), self.num_tasks, 1, dtype=torch.float32)
        task_reprs_TBH = y_1BH.expand(self.num_tasks, -1, -1)
        return ArchOutput(task_reprs_TBH, h_BD.new_zeros((), dtype=torch.float32), dense_routing(probs_BT1))


class _DenseMixture(nn.Module):
    """Every expert on every instance, mixed by G softmax gates (G = T for MMoE, 1 for one-gate MoE)."""

    def __init__(self, in_features: int, num_tasks: int, *, num_experts: int, expert_layers: Sequence[int],
                 num_gates: int):
        super().__init__()
        _check(in_features, num_tasks, expert_layers, num_experts=num_experts)
        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self.out_features = expert_layers[-1]
        self.gates = TaskGates(in_features, num_gates, num_experts)
        self.experts = GroupedMLP(num_experts, in_features, expert_layers)

    def forward(self, h_BD: torch.Tensor) -> ArchOutput:
        """Mixes all E experts with each gate; a single gate's mixture is shared by every task."""
        probs_BGE = torch.softmax(self.gates(h_BD), dim=-1)
        y_EBH = self.experts.forward_all(h_BD)
        mixed_GBH = torch.einsum("bge,ebh->gbh", probs_BGE.to(y_EBH.dtype), y_EBH)
        probs_BTE = probs_BGE.expand(-1, self.num_tasks, -1)
        task_reprs_TBH = mixed_GBH.expand(self.num_tasks, -1, -1)
        return ArchOutput(task_reprs_TBH, h_BD.new_zeros((), dtype=torch.float32), dense_routing(probs_BTE))


class MMoEArch(_DenseMixture):
    """Multi-gate mixture of experts: every expert on every instance, one softmax gate per task.

    Args:
        in_features: D.
        num_tasks: T.
        num_experts: E.
        expert_layers: Widths of each expert MLP's layers; the last is H.
    """

    def __init__(self, in_features: int, num_tasks: int, *, num_experts: int, expert_layers: Sequence[int]):
        super().__init__(in_features, num_tasks, num_experts=num_experts, expert_layers=expert_layers,
                         num_gates=num_tasks)


class DenseMoEArch(_DenseMixture):
    """Dense one-gate mixture of experts (OMoE): one softmax gate shared by all tasks, every expert runs.

    Args:
        in_features: D.
        num_tasks: T.
        num_experts: E.
        expert_layers: Widths of each expert MLP's layers; the last is H.
    """

    def __init__(self, in_features: int, num_tasks: int, *, num_experts: int, expert_layers: Sequence[int]):
        super().__init__(in_features, num_tasks, num_experts=num_experts, expert_layers=expert_layers, num_gates=1)


class _CGCLevel(nn.Module):
    """One customised-gate-control level: S shared experts plus P experts owned by each task.

    Experts are numbered shared first (``0..S-1``), then task t's at ``S + t * P + j``. Each task gate mixes its
    own P experts and the S shared ones; a non-final level also has a shared gate over all experts, whose mixture
    is the shared experts' input at the next level.
    """

    gate_ids_TG: torch.Tensor
    input_of_expert_E: torch.Tensor

    def __init__(self, in_features: int, num_tasks: int, *, num_shared: int, num_per_task: int,
                 expert_layers: Sequence[int], with_shared_gate: bool):
        super().__init__()
        self.num_tasks = num_tasks
        self.num_shared = num_shared
        self.num_per_task = num_per_task
        self.num_experts = num_shared + num_tasks * num_per_task
        self.experts = GroupedMLP(self.num_experts, in_features, expert_layers)
        self.task_gates = TaskGates(in_features, num_tasks, num_shared + num_per_task)
        self.shared_gate = TaskGates(in_features, 1, self.num_experts) if with_shared_gate else None
        # Expert ids each task gate sees, [T, S + P]; and which input (task t, or T = shared) feeds each expert.
        ids_TG = torch.tensor(
            [list(range(num_shared)) + [num_shared + t * num_per_task + j for j in range(num_per_task)]
             for t in range(num_tasks)],
            dtype=torch.int64,
        )
        owner_E = torch.tensor([num_tasks] * num_shared + [t for t in range(num_tasks) for _ in range(num_per_task)])
        self.register_buffer("gate_ids_TG", ids_TG, persistent=False)
        self.register_buffer("input_of_expert_E", owner_E, persistent=False)

    def forward(self, x_IBD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, Routing]:
        """Args: x_IBD: ``[T + 1, B, D]`` inputs, one per task then the shared one.

        Returns:
            Task outputs ``[T, B, H]``, the shared output ``[B, H]`` (or None at the final level), and the routing.
        """
        T, B = self.num_tasks, x_IBD.size(1)
        y_EBH = self.experts.forward_per_group(x_IBD.index_select(0, self.input_of_expert_E))
        probs_BTG = torch.softmax(self.task_gates.forward_per_input(x_IBD[:T]), dim=-1)
        y_TGBH = y_EBH.index_select(0, self.gate_ids_TG.reshape(-1)).view(T, -1, B, y_EBH.size(-1))
        task_TBH = torch.einsum("btg,tgbh->tbh", probs_BTG.to(y_EBH.dtype), y_TGBH)
        shared_BH = None
        if self.shared_gate is not None:
            probs_B1E = torch.softmax(self.shared_gate(x_IBD[T]), dim=-1)
            shared_BH = torch.einsum("be,ebh->bh", probs_B1E[:, 0].to(y_EBH.dtype), y_EBH)
        ids_BTG = torch.zeros_like(probs_BTG, dtype=torch.int64) + self.gate_ids_TG  # broadcast: fx-traceable
        probs_BTE = probs_BTG.new_zeros(B, T, self.num_experts).scatter(-1, ids_BTG, probs_BTG)
        return task_TBH, shared_BH, Routing(ids_BTK=ids_BTG, gates_BTK=probs_BTG, probs_BTE=probs_BTE)


class PLEArch(nn.Module):
    """Progressive layered extraction: stacked CGC levels of shared and task-specific experts.

    Args:
        in_features: D.
        num_tasks: T.
        num_shared_experts: S, shared experts per level.
        num_task_experts: P, experts owned by each task per level.
        expert_layers: Widths of each expert MLP's layers (every level); the last is H.
        num_levels: CGC levels; 1 is plain CGC.
    """

    def __init__(self, in_features: int, num_tasks: int, *, num_shared_experts: int, num_task_experts: int,
                 expert_layers: Sequence[int], num_levels: int = 1):
        super().__init__()
        _check(in_features, num_tasks, expert_layers, num_levels=num_levels)
        if num_shared_experts < 0 or num_task_experts < 0 or num_shared_experts + num_task_experts == 0:
            raise ValueError(
                f"num_shared_experts ({num_shared_experts}) and num_task_experts ({num_task_experts}) must be >= 0 "
                "and not both 0"
            )
        self.num_tasks = num_tasks
        self.num_experts = num_shared_experts + num_tasks * num_task_experts  # per level
        self.out_features = expert_layers[-1]
        widths = [in_features] + [expert_layers[-1]] * (num_levels - 1)
        self.levels = nn.ModuleList(
            _CGCLevel(d, num_tasks, num_shared=num_shared_experts, num_per_task=num_task_experts,
                      expert_layers=expert_layers, with_shared_gate=i < num_levels - 1)
            for i, d in enumerate(widths)
        )

    def forward(self, h_BD: torch.Tensor) -> ArchOutput:
        """Runs the levels; reports the final level's task gates as the routing."""
        x_IBD = h_BD.unsqueeze(0).expand(self.num_tasks + 1, -1, -1)
        for level in self.levels:
            task_TBH, shared_BH, routing = level(x_IBD)
            if shared_BH is not None:
                x_IBD = torch.cat([task_TBH, shared_BH.unsqueeze(0)], dim=0)
        return ArchOutput(task_TBH, h_BD.new_zeros((), dtype=torch.float32), routing)
