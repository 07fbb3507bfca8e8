"""MoMEArch: the two-stage schedule in steps, masks against a reference, gradients per stage, resume, serving."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from smes_rec import MoMEArch, MoMEMasks
from smes_rec.modules.mome import l0_surrogate
from tests.modules.contract import assert_contract, assert_grads, assert_serving_route

B, D, T, E = 12, 6, 3, 4
LAYERS = [8, 5]


def _make(warmup: int = 2, **kwargs: object) -> MoMEArch:
    torch.manual_seed(0)
    arch = MoMEArch(D, T, num_experts=E, expert_layers=LAYERS, masks=MoMEMasks(warmup_steps=warmup, **kwargs))
    with torch.no_grad():  # masks spread over [-0.5, 1.5]: some clamp to 0, some to 1, some in between
        for mu in [*arch.neuron_mu, *arch.expert_mu]:
            mu.uniform_(-0.5, 1.5)
    return arch


def _base(arch: MoMEArch, h: torch.Tensor, neuron: list[torch.Tensor], expert: int | None,
          binary: bool = False) -> torch.Tensor:
    """The base network with neuron masks ``neuron`` and, if ``expert`` is given, that expert's weight masks."""
    x = h
    for i, (w, b) in enumerate(zip(arch.weights, arch.biases, strict=True)):
        m = torch.ones_like(w)
        if expert is not None:
            m = arch.expert_mu[i][expert].clamp(0, 1)
            if binary:
                m = (m > 0).float()
        x = F.relu(x @ (neuron[i].unsqueeze(1) * m * w) + b)
    return x


def test_stage_one_is_the_neuron_masked_base_network_for_every_task() -> None:
    arch = _make().eval()
    h = torch.randn(B, D)
    out = arch(h)
    assert_contract(out, T, B, LAYERS[-1], E)
    expected = _base(arch, h, [mu.clamp(0, 1) for mu in arch.neuron_mu], None)
    for t in range(T):
        torch.testing.assert_close(out.task_reprs[t], expected)
    lam = arch.masks.lambda_neuron
    phi = [0.5 * (1 + torch.erf(mu / (0.5 * math.sqrt(2)))) for mu in arch.neuron_mu]
    torch.testing.assert_close(out.aux_loss, lam * sum(p.mean() for p in phi))
    torch.testing.assert_close(out.routing.gates_BTK, torch.full((B, T, E), 1 / E))  # stage 1: uniform effective
    assert arch.step.item() == 0  # evaluation does not advance the schedule


@pytest.mark.parametrize("binary", [False, True])
def test_masks_follow_their_schedule_across_the_step_boundary(binary: bool) -> None:
    arch = _make(warmup=2, binary_eval=binary)
    h = torch.randn(B, D)
    stages = []
    for _ in range(4):
        stages.append(arch.stage2().item())
        arch.train()
        out = arch(h)
        if stages[-1] == 0:  # the neuron mask used by the last stage-1 forward is what stage 2 freezes
            frozen = [mu.detach().clamp(0, 1).clone() for mu in arch.neuron_mu]
        out.task_reprs.sum().backward()
        with torch.no_grad():  # an optimiser step that also moves the (frozen) neuron-mask parameters
            for p in arch.parameters():
                p -= 0.1 * (p.grad if p.grad is not None else 0) + 0.05
        arch.zero_grad()
    assert stages == [0.0, 0.0, 1.0, 1.0] and arch.step.item() == 4

    arch.eval()
    out = arch(h)
    probs = torch.softmax(arch.gates(h), -1)
    experts = [_base(arch, h, frozen, e, binary) for e in range(E)]
    for t in range(T):
        torch.testing.assert_close(out.task_reprs[t], sum(probs[:, t, e:e + 1] * experts[e] for e in range(E)))
    torch.testing.assert_close(out.aux_loss, arch.masks.lambda_expert * sum(
        E * l0_surrogate(mu, arch.masks.sigma) for mu in arch.expert_mu))
    torch.testing.assert_close(out.routing.gates_BTK, probs)


def test_each_stage_trains_only_its_own_parameters() -> None:
    arch = _make(warmup=1).train()
    h = torch.randn(B, D)
    stage2_only = {"gates.proj.weight", "gates.proj.bias"} | {f"expert_mu.{i}" for i in range(len(LAYERS))}
    assert_grads(arch, arch(h), frozen=stage2_only)
    arch.zero_grad()
    assert_grads(arch, arch(h), frozen={f"neuron_mu.{i}" for i in range(len(LAYERS))})


def test_training_noise_is_gaussian_gates_and_eval_is_deterministic() -> None:
    arch = _make(warmup=0, sigma=0.3)
    h = torch.randn(B, D)
    arch.train()
    a, b = arch(h).task_reprs, arch(h).task_reprs
    assert not torch.allclose(a, b)
    arch.eval()
    torch.testing.assert_close(arch(h).task_reprs, arch(h).task_reprs, rtol=0, atol=0)


def test_state_dict_resumes_the_schedule_exactly() -> None:
    arch = _make(warmup=3).train()
    h = torch.randn(B, D)
    for _ in range(3):
        arch(h)
    restored = MoMEArch(D, T, num_experts=E, expert_layers=LAYERS, masks=MoMEMasks(warmup_steps=3))
    restored.load_state_dict(arch.state_dict())
    assert restored.step.item() == 3 and restored.stage2().item() == 1.0
    arch.eval()
    restored.eval()
    torch.testing.assert_close(restored(h).task_reprs, arch(h).task_reprs, rtol=0, atol=0)


@pytest.mark.parametrize("steps", [0, 3])
def test_mome_serving_route_in_both_stages(steps: int) -> None:
    arch = _make(warmup=2, binary_eval=True).train()
    h = torch.randn(B, D)
    for _ in range(steps):
        arch(h)
    assert_serving_route(arch, h)


def test_mome_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        MoMEMasks(warmup_steps=-1)
    with pytest.raises(ValueError, match="sigma"):
        MoMEMasks(sigma=0.0)
    with pytest.raises(ValueError, match="num_experts"):
        MoMEArch(D, T, num_experts=0, expert_layers=LAYERS)
