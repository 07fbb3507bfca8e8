"""CUDA-only checks of the SMES fast path (deselected on machines without a GPU)."""

from __future__ import annotations

import pytest
import torch

from smes_rec import SMESArch
from smes_rec.modules.routing import progressive_route
from tests.modules.reference import dense_masked_forward

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("autocast", [False, True])
def test_forward_and_backward_never_synchronise_with_the_host(autocast: bool) -> None:
    torch.manual_seed(0)
    arch = SMESArch(64, 4, num_experts=16, k_shared=2, k_adaptive=1, expert_layers=[64, 32]).cuda()
    h = torch.randn(512, 64, device="cuda", requires_grad=True)
    arch(h)  # warm-up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = arch(h)
        (out.task_reprs.float().sum() + out.aux_loss).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_bf16_grouped_gemm_matches_fp32_dense_reference() -> None:
    torch.manual_seed(1)
    arch = SMESArch(64, 4, num_experts=16, k_shared=2, k_adaptive=1, expert_layers=[64, 32]).cuda()
    h = torch.randn(256, 64, device="cuda")
    torch.testing.assert_close(arch(h).task_reprs, dense_masked_forward(arch, h), atol=5e-2, rtol=5e-2)


def test_gpu_routing_equals_cpu_routing_including_ties() -> None:
    """The GPU's stable-sort top-k and the CPU's topk-with-tied-rows-redone make the same choices."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randint(-2, 3, (256, 4, 16), generator=g).float()  # heavy ties
    logits[:128] = torch.randn(128, 4, 16, generator=g)
    weights = torch.rand(4, generator=g) + 0.1
    cpu = progressive_route(logits, weights, 2, 2)
    gpu = progressive_route(logits.cuda(), weights.cuda(), 2, 2)
    assert torch.equal(gpu.ids_BTK.cpu(), cpu.ids_BTK)
    torch.testing.assert_close(gpu.gates_BTK.cpu(), cpu.gates_BTK)
