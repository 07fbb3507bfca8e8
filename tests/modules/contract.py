"""Checks every arch must pass: the ArchOutput contract, gradients, and the fx / TorchScript serving route."""

from __future__ import annotations

import torch
import torch.fx
import torchrec.fx
from torch import nn

from smes_rec.modules.outputs import ArchOutput
from smes_rec.modules.routing import RoutingStats, routing_stats


def arch_stats(out: ArchOutput) -> RoutingStats:
    """The routing statistics of an arch's output, over the pool its probabilities cover."""
    return routing_stats(out.routing.ids_BTK, out.routing.probs_BTE.size(-1))


def assert_contract(out: ArchOutput, num_tasks: int, batch: int, width: int, num_experts: int) -> None:
    """Shapes and types of an ArchOutput, with routing ids inside the reported pool."""
    assert isinstance(out, ArchOutput)
    assert out.task_reprs.shape == (num_tasks, batch, width)
    assert out.aux_loss.shape == () and out.aux_loss.dtype == torch.float32
    r = out.routing
    assert r.ids_BTK.dim() == 3 and r.ids_BTK.shape[:2] == (batch, num_tasks) and r.ids_BTK.dtype == torch.int64
    assert int(r.ids_BTK.min()) >= 0 and int(r.ids_BTK.max()) < num_experts
    assert r.gates_BTK.shape == r.ids_BTK.shape and r.probs_BTE.shape == (batch, num_tasks, num_experts)
    s = arch_stats(out)
    assert s.num_unique_B.shape == (batch,) and s.selection_TE.shape == (num_tasks, num_experts)
    assert s.expert_load_E.shape == (num_experts,)


def assert_grads(arch: nn.Module, out: ArchOutput, frozen: set[str] = frozenset()) -> None:
    """Every parameter but ``frozen`` gets a non-zero gradient; those in ``frozen`` get none or exactly zero."""
    (out.task_reprs.square().mean() + out.aux_loss).backward()
    for name, p in arch.named_parameters():
        if name in frozen:
            assert p.grad is None or not p.grad.any(), name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def _leaves_close(a: object, b: object) -> None:
    leaves_a, leaves_b = torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        torch.testing.assert_close(x, y)


def assert_serving_route(arch: nn.Module, h: torch.Tensor) -> None:
    """In eval mode: torch.fx and torchrec.fx traces equal eager, and TorchScript of the torchrec trace too."""
    arch.eval()
    with torch.no_grad():
        eager = arch(h)
        _leaves_close(eager, torch.fx.symbolic_trace(arch)(h))
        traced = torchrec.fx.symbolic_trace(arch)
        _leaves_close(eager, traced(h))
        scripted = torch.jit.script(traced)
        out = scripted(h)
        _leaves_close(tuple(eager), tuple(out))
