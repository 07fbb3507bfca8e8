"""Plain MLPs and per-task towers.

Legend: B instances, D input features, T tasks, H task representation width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smes_rec.modules.experts import GroupedMLP

__all__ = ["MLP", "TaskTowers"]


class MLP(nn.Sequential):
    """Linear + ReLU layers (the shared bottom).

    Args:
        in_features: D.
        layer_widths: The output width of each layer; empty gives the identity.
    """

    def __init__(self, in_features: int, layer_widths: Sequence[int]):
        layers: list[nn.Module] = []
        for width in layer_widths:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        super().__init__(*layers)
        self.out_features = in_features


class TaskTowers(nn.Module):
    """One MLP tower per task ending in a single logit, run as one batched GEMM per layer.

    Args:
        num_tasks: T.
        in_features: H, the width of each task representation.
        hidden_layers: Hidden widths of every tower (may be empty); a final width-1 layer is appended.
    """

    def __init__(self, num_tasks: int, in_features: int, hidden_layers: Sequence[int] = ()):
        super().__init__()
        self.mlp = GroupedMLP(num_tasks, in_features, [*hidden_layers, 1], activate_last=False)

    def forward(self, task_reprs_TBH: torch.Tensor) -> torch.Tensor:
        """Returns logits ``[T, B]``."""
        return self.mlp.forward_per_group(task_reprs_TBH).squeeze(-1)
