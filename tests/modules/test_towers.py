"""Towers and the plain MLP."""

from __future__ import annotations

import torch

from smes_rec.modules.towers import MLP, TaskTowers
from tests.modules.reference import expert_mlp


def test_task_towers_apply_each_task_its_own_mlp() -> None:
    torch.manual_seed(0)
    towers = TaskTowers(3, 4, [5])
    x = torch.randn(3, 10, 4)
    logits = towers(x)
    assert logits.shape == (3, 10)
    for t in range(3):
        torch.testing.assert_close(logits[t], expert_mlp(towers.mlp, t, x[t]).squeeze(-1))
    assert not towers.mlp.activate_last  # logits come from a linear layer


def test_mlp_widths_and_identity() -> None:
    mlp = MLP(4, [8, 3])
    assert mlp(torch.randn(2, 4)).shape == (2, 3) and mlp.out_features == 3
    identity = MLP(4, [])
    x = torch.randn(2, 4)
    assert torch.equal(identity(x), x) and identity.out_features == 4
