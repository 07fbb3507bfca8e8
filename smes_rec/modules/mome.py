"""MoME, the mixture of masked experts (Xu, Sun, Zhao; SIGIR 2024): experts as learned masks over one base network.

Legend:
    B   instances, D input features, T tasks, E experts
    I   a layer's input features, O its output features, H the last layer's width

No ``from __future__ import annotations``: the forward's annotations must be real types for TorchScript.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from smes_rec.modules.gates import TaskGates
from smes_rec.modules.outputs import ArchOutput, dense_routing

__all__ = ["MoMEArch", "MoMEMasks", "gaussian_gate", "l0_surrogate"]


@dataclass(frozen=True)
class MoMEMasks:
    """MoME's mask settings and two-stage schedule.

    Attributes:
        warmup_steps: M, the training forwards of stage 1 (neuron-level model masking); stage 2 (weight-level
            expert masks and gates) starts at the (M+1)-th training forward. 0 starts in stage 2.
        sigma: sigma, the standard deviation of the Gaussian gate noise (STG relaxation), both stages.
        mu_init: Initial value of every mask parameter mu.
        lambda_neuron: lambda_1, weight of the stage-1 neuron-mask L0 surrogate.
        lambda_expert: lambda_2, weight of each expert's stage-2 weight-mask L0 surrogate.
        binary_eval: At evaluation use binary expert masks ``1[clamp(mu, 0, 1) > 0]`` instead of the continuous
            ``clamp(mu, 0, 1)`` of the official code.
    """

    warmup_steps: int = 1000
    sigma: float = 0.5
    mu_init: float = 0.5
    lambda_neuron: float = 1e-2
    lambda_expert: float = 1e-3
    binary_eval: bool = False

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if self.lambda_neuron < 0 or self.lambda_expert < 0:
            raise ValueError(f"lambda_neuron and lambda_expert must be >= 0, got {self.lambda_neuron}, "
                             f"{self.lambda_expert}")


def gaussian_gate(mu: torch.Tensor, sigma: float, noisy: bool) -> torch.Tensor:
    """The STG relaxed Bernoulli gate ``clamp(mu + eps, 0, 1)``, ``eps ~ N(0, sigma^2)`` when noisy, else 0."""
    if noisy:
        return torch.clamp(mu + sigma * torch.randn_like(mu), 0.0, 1.0)
    return torch.clamp(mu, 0.0, 1.0)


def l0_surrogate(mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """The expected-L0 surrogate ``mean(Phi(mu / sigma))`` (Phi the standard normal CDF): the open-gate rate."""
    return (0.5 * (1.0 + torch.erf(mu / (sigma * math.sqrt(2.0))))).mean()


class MoMEArch(nn.Module):
    """MoME: one base MLP; stage 1 learns neuron masks, stage 2 E weight-mask experts mixed by MMoE gates.

    The base network is ``L`` layers ``x -> ReLU(x (z^n ⊙_rows z^e ⊙ W) + b)`` with one weight ``W`` and bias ``b``
    per layer shared by every expert. ``z^n`` (per layer, one per input neuron) and ``z^e`` (per layer and expert,
    one per weight) are STG Gaussian gates ``clamp(mu + eps, 0, 1)``, noisy in training.

    - Stage 1 (the first ``warmup_steps`` training forwards): every expert mask is 1, so all experts equal the
      neuron-masked base network and every task receives it (a shared bottom). The auxiliary loss is
      ``lambda_1 * sum_l mean(Phi(mu^n_l / sigma))``.
    - Stage 2: the neuron masks are frozen at their value of the last stage-1 forward (a buffer; the official
      code prunes the rows whose mask is 0 and scales the others by it, which is the same function), each expert
      applies its weight masks, and task t's representation is ``sum_e softmax(W_t h)_e f_e(h)``. The auxiliary
      loss is ``lambda_2 * sum_{e,l} mean(Phi(mu^e_{e,l} / sigma))``.

    The schedule lives in the ``step`` buffer (training forwards so far): it is saved with the weights, so a
    resumed run switches at the same step, and the switch is tensor arithmetic (a 0/1 factor), so the module
    traces with torch.fx. Stage-2 parameters receive exactly zero gradient in stage 1 and the neuron-mask
    parameters exactly zero in stage 2. Evaluation is deterministic: ``clamp(mu, 0, 1)`` (optionally binarised
    expert masks, ``binary_eval``). Every expert runs on every instance (a dense arch).

    Args:
        in_features: D.
        num_tasks: T.
        num_experts: E.
        expert_layers: Widths of the base network's layers; the last is H.
        masks: The mask settings and schedule (defaults when None).
    """

    step: torch.Tensor
    frozen_neuron_0: torch.Tensor

    def __init__(self, in_features: int, num_tasks: int, *, num_experts: int, expert_layers: Sequence[int],
                 masks: MoMEMasks | None = None):
        super().__init__()
        masks = masks or MoMEMasks()
        for name, value in {"in_features": in_features, "num_tasks": num_tasks, "num_experts": num_experts}.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not expert_layers or any(w < 1 for w in expert_layers):
            raise ValueError(f"expert_layers must list positive widths, got {list(expert_layers)}")
        self.num_tasks, self.num_experts, self.out_features = num_tasks, num_experts, expert_layers[-1]
        self.masks = masks
        dims = [in_features, *expert_layers]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(i, o)) for i, o in pairwise(dims))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(o)) for o in dims[1:])
        self.neuron_mu = nn.ParameterList(nn.Parameter(torch.full((i,), masks.mu_init)) for i in dims[:-1])
        self.expert_mu = nn.ParameterList(
            nn.Parameter(torch.full((num_experts, i, o), masks.mu_init)) for i, o in pairwise(dims))
        self.gates = TaskGates(in_features, num_tasks, num_experts)
        for i in range(len(dims) - 1):
            self.register_buffer(f"frozen_neuron_{i}", torch.ones(dims[i]))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        for w, b in zip(self.weights, self.biases, strict=True):
            bound = w.size(0) ** -0.5
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def stage2(self) -> torch.Tensor:
        """1.0 from the (M+1)-th training forward on (stage 2), else 0.0; a float32 scalar tensor."""
        return (self.step >= self.masks.warmup_steps).float()

    def forward(self, h_BD: torch.Tensor) -> ArchOutput:
        """Runs the masked experts (stage 2) or the neuron-masked base network (stage 1); advances ``step`` when
        training.

        Args:
            h_BD: The shared-bottom output.

        Returns:
            :class:`ArchOutput` with ``task_reprs`` ``[T, B, H]``, the stage's L0 surrogate, and the effective
            gates as a dense routing (uniform ``1/E`` in stage 1).
        """
        s = self.stage2()
        keep = 1.0 - s
        sigma, noisy = self.masks.sigma, self.training
        frozen = [self.frozen_neuron_0]
        for i in range(1, len(self.weights)):
            frozen.append(getattr(self, f"frozen_neuron_{i}"))
        x = h_BD.unsqueeze(0)  # [1, B, D], then [E, B, O] after the first layer
        neuron_l0 = h_BD.new_zeros((), dtype=torch.float32)
        expert_l0 = h_BD.new_zeros((), dtype=torch.float32)
        for i, (w_IO, b_O) in enumerate(zip(self.weights, self.biases, strict=True)):
            mu_n, mu_e = self.neuron_mu[i], self.expert_mu[i]
            live_I = gaussian_gate(mu_n, sigma, noisy)
            if self.training:
                # Track the stage-1 mask until the switch; in stage 2 the buffer keeps its last stage-1 value.
                frozen[i].copy_(keep * torch.clamp(mu_n.detach(), 0.0, 1.0) + s * frozen[i])
            z_n_I = keep * live_I + s * frozen[i]
            z_e_EIO = gaussian_gate(mu_e, sigma, noisy)
            if not self.training and self.masks.binary_eval:
                z_e_EIO = (z_e_EIO > 0).to(z_e_EIO.dtype)
            m_EIO = s * z_e_EIO + keep  # every expert mask is 1 in stage 1
            w_EIO = z_n_I.unsqueeze(-1) * m_EIO * w_IO
            x = F.relu(torch.matmul(x, w_EIO.to(x.dtype)) + b_O)
            neuron_l0 = neuron_l0 + l0_surrogate(mu_n, sigma)
            expert_l0 = expert_l0 + l0_surrogate(mu_e, sigma) * self.num_experts  # sum over experts of the mean
        y_EBH = x
        probs_BTE = torch.softmax(self.gates(h_BD), dim=-1)
        gates_BTE = s * probs_BTE + keep / self.num_experts  # stage 1: uniform over identical experts
        task_TBH = torch.einsum("bte,ebh->tbh", gates_BTE.to(y_EBH.dtype), y_EBH)
        aux = keep * self.masks.lambda_neuron * neuron_l0 + s * self.masks.lambda_expert * expert_l0
        if self.training:
            self.step.add_(1)
        return ArchOutput(task_TBH, aux, dense_routing(gates_BTE))
