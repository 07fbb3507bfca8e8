"""The SMES arch: progressive sparse routing over one expert pool, executed once per unique (instance, expert).

Legend:
    B   instances, D input features, T tasks, E experts, K = K_s + K_a experts per task
    P   dispatched (instance, expert) rows, H expert output features
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smes_rec.modules.dispatch import combine, dispatch_rows, plan_dispatch
from smes_rec.modules.experts import GroupedMLP
from smes_rec.modules.gates import TaskGates
from smes_rec.modules.outputs import ArchOutput
from smes_rec.modules.routing import multi_gate_load_balance_loss, progressive_route

__all__ = ["SMESArch"]

torch.fx.wrap("plan_dispatch")  # a leaf: the number of dispatched rows depends on the data


class SMESArch(nn.Module):
    """Task-shared plus task-adaptive sparse experts (SMES, docs/design.md §2).

    Every instance runs each expert of ``U = ∪_t K_t`` exactly once, with ``K_s + K_a <= |U| <= K_s + T * K_a``;
    ``k_shared=0`` is naive independent per-task top-K routing, ``k_adaptive=0`` shared experts only.

    Args:
        in_features: D, the width of the shared-bottom output ``h_BD``.
        num_tasks: T.
        num_experts: E, the size of the one shared pool.
        k_shared: K_s, task-shared experts per instance.
        k_adaptive: K_a, task-adaptive experts per task and instance.
        expert_layers: Widths of each expert MLP's layers; the last is H.
        task_weights: Stage-I task weights ``w_t`` (positive, length T); uniform ``1/T`` when omitted.
        static_dispatch: Size the dispatch buffer statically (``B * min(E, K_s + T * K_a)`` rows) so the forward
            never synchronises with the host; ``None`` chooses it on CUDA and not on CPU.
    """

    task_weights_T: torch.Tensor

    def __init__(
        self,
        in_features: int,
        num_tasks: int,
        *,
        num_experts: int,
        k_shared: int,
        k_adaptive: int,
        expert_layers: Sequence[int],
        task_weights: Sequence[float] | None = None,
        static_dispatch: bool | None = None,
    ):
        super().__init__()
        _check_positive(in_features=in_features, num_tasks=num_tasks, num_experts=num_experts)
        if k_shared < 0:
            raise ValueError(f"k_shared must be >= 0, got {k_shared}")
        if k_adaptive < 0:
            raise ValueError(f"k_adaptive must be >= 0, got {k_adaptive}")
        if k_shared + k_adaptive == 0:
            raise ValueError("k_shared + k_adaptive must be >= 1: every task needs at least one expert")
        if k_shared + k_adaptive > num_experts:
            raise ValueError(
                f"k_shared + k_adaptive ({k_shared} + {k_adaptive}) exceeds num_experts ({num_experts})"
            )
        if not expert_layers:
            raise ValueError("expert_layers must list at least one layer width")
        if task_weights is None:
            task_weights = [1.0 / num_tasks] * num_tasks
        if len(task_weights) != num_tasks:
            raise ValueError(f"task_weights has {len(task_weights)} entries, expected num_tasks={num_tasks}")
        if any(not w > 0 for w in task_weights):
            raise ValueError(f"task_weights must all be positive, got {list(task_weights)}")

        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self.k_shared = k_shared
        self.k_adaptive = k_adaptive
        self.max_unique = min(num_experts, k_shared + num_tasks * k_adaptive)
        self.static_dispatch = static_dispatch
        self.out_features = expert_layers[-1]
        self.gates = TaskGates(in_features, num_tasks, num_experts)
        self.experts = GroupedMLP(num_experts, in_features, expert_layers)
        self.register_buffer("task_weights_T", torch.tensor(task_weights, dtype=torch.float32))

    def forward(self, h_BD: torch.Tensor) -> ArchOutput:
        """Routes, dispatches, runs the selected experts and combines them per task.

        Args:
            h_BD: Shared-bottom output.

        Returns:
            :class:`ArchOutput` with ``task_reprs`` ``[T, B, H]``, the unweighted load-balancing loss and the routing.
        """
        routing = progressive_route(self.gates(h_BD), self.task_weights_T, self.k_shared, self.k_adaptive)
        plan = plan_dispatch(routing.ids_BTK, self.num_experts, self.max_unique, self.static_dispatch)
        y_PH = self.experts(dispatch_rows(h_BD, plan.instance_of_row_P), plan.offsets_E, plan.expert_of_row_P)
        task_reprs_TBH = combine(y_PH, plan.row_BTK, routing.gates_BTK)
        aux_loss = multi_gate_load_balance_loss(routing.probs_BTE, routing.ids_BTK, self.num_experts)
        return ArchOutput(task_reprs_TBH, aux_loss, routing)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
