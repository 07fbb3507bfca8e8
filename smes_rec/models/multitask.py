"""The dense multi-task model: shared bottom -> multi-task arch -> towers, composed by injection.

Legend: B instances, D input features, T tasks.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from smes_rec.modules.routing import Routing

__all__ = ["MultiTaskModel", "MultiTaskOutput"]


class MultiTaskOutput(NamedTuple):
    """Per-task logits ``[T, B]``, the arch's unweighted auxiliary loss, and its routing decision."""

    logits: torch.Tensor
    aux_loss: torch.Tensor
    routing: Routing


class MultiTaskModel(nn.Module):
    """``towers(arch(bottom(x)))``: any bottom, any arch with the ``ArchOutput`` contract, any towers.

    Args:
        bottom: Maps ``[B, D]`` features to the arch's input ``h_BD``.
        arch: SMESArch or a baseline.
        towers: Maps ``[T, B, H]`` task representations to ``[T, B]`` logits.
    """

    def __init__(self, bottom: nn.Module, arch: nn.Module, towers: nn.Module):
        super().__init__()
        self.bottom = bottom
        self.arch = arch
        self.towers = towers

    def forward(self, features_BD: torch.Tensor) -> MultiTaskOutput:
        """Returns :class:`MultiTaskOutput`."""
        out = self.arch(self.bottom(features_BD))
        return MultiTaskOutput(self.towers(out.task_reprs), out.aux_loss, out.routing)
