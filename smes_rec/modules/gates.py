"""Router projections computed in float32, for every task at once.

Legend: B instances, D input features, T tasks (or gates), E experts per gate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TaskGates", "fp32_linear", "fp32_per_input_linear"]


def fp32_linear(x_BD: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x W^T + b`` in float32 even under autocast: routing decisions must not depend on bf16 rounding."""
    if torch.jit.is_scripting():  # a scripted (serving) model runs without autocast; its device is no constant
        return F.linear(x_BD.float(), weight.float(), bias.float())
    with torch.autocast(device_type=x_BD.device.type, enabled=False):
        return F.linear(x_BD.float(), weight.float(), bias.float())


def fp32_per_input_linear(x_TBD: torch.Tensor, weight_TGD: torch.Tensor, bias_TG: torch.Tensor) -> torch.Tensor:
    """Gate t applied to its own input ``x_TBD[t]``, in float32. Returns ``[B, T, G]``."""
    if torch.jit.is_scripting():  # as in fp32_linear
        logits_TBG = torch.baddbmm(bias_TG.float().unsqueeze(1), x_TBD.float(), weight_TGD.float().transpose(1, 2))
    else:
        with torch.autocast(device_type=x_TBD.device.type, enabled=False):
            logits_TBG = torch.baddbmm(bias_TG.float().unsqueeze(1), x_TBD.float(),
                                       weight_TGD.float().transpose(1, 2))
    return logits_TBG.transpose(0, 1)


# Leaves: the autocast context is not recorded by symbolic tracing.
torch.fx.wrap("fp32_linear")
torch.fx.wrap("fp32_per_input_linear")


class TaskGates(nn.Module):
    """One linear gate per task, fused into a single ``D -> T * E`` projection.

    Args:
        in_features: D.
        num_gates: T, the number of gates.
        num_experts: E, the experts each gate scores.
    """

    def __init__(self, in_features: int, num_gates: int, num_experts: int):
        super().__init__()
        self.num_gates = num_gates
        self.num_experts = num_experts
        self.proj = nn.Linear(in_features, num_gates * num_experts)

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Returns float32 logits ``[B, T, E]``."""
        logits = fp32_linear(x_BD, self.proj.weight, self.proj.bias)
        return logits.view(-1, self.num_gates, self.num_experts)

    def forward_per_input(self, x_TBD: torch.Tensor) -> torch.Tensor:
        """Gate t scores its own input ``x_TBD[t]``; returns float32 logits ``[B, T, E]``."""
        weight_TED = self.proj.weight.view(self.num_gates, self.num_experts, -1)
        return fp32_per_input_linear(x_TBD, weight_TED, self.proj.bias.view(self.num_gates, self.num_experts))
