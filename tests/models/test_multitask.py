"""MultiTaskModel composes bottom, arch and towers, and trains."""

from __future__ import annotations

import torch
import torch.fx

from smes_rec import MLP, MMoEArch, MultiTaskModel, SMESArch, TaskTowers


def test_composition_and_fx_trace() -> None:
    torch.manual_seed(0)
    arch = SMESArch(16, 3, num_experts=8, k_shared=2, k_adaptive=1, expert_layers=[8])
    model = MultiTaskModel(MLP(6, [16]), arch, TaskTowers(3, 8, [4]))
    x = torch.randn(12, 6)
    out = model(x)
    assert out.logits.shape == (3, 12) and out.aux_loss.shape == ()
    manual = model.towers(model.arch(model.bottom(x)).task_reprs)
    torch.testing.assert_close(out.logits, manual)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x).logits, out.logits)


def test_smes_and_mmoe_learn_a_simple_multi_task_problem() -> None:
    torch.manual_seed(1)
    x = torch.randn(512, 6)
    labels = torch.stack([(x[:, 0] > 0), (x[:, 1] + x[:, 2] > 0), (x[:, 0] * x[:, 3] > 0)]).float()
    for arch in (SMESArch(16, 3, num_experts=8, k_shared=2, k_adaptive=1, expert_layers=[16]),
                 MMoEArch(16, 3, num_experts=4, expert_layers=[16])):
        model = MultiTaskModel(MLP(6, [16]), arch, TaskTowers(3, 16, [8]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(60):
            out = model(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels) + 0.01 * out.aux_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.6 * losses[0], (type(arch).__name__, losses[0], losses[-1])
