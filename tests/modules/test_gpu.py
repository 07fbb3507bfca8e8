"""CUDA-only checks of the SMES fast path (deselected on machines without a GPU)."""

from __future__ import annotations

import pytest
import torch

from smes_rec import SMESArch
from tests.modules.reference import dense_masked_forward

pytestmark = pytest.mark.gpu


def test_forward_and_backward_never_synchronise_with_the_host() -> None:
    torch.manual_seed(0)
    arch = SMESArch(64, 4, 16, 2, 1, [64, 32]).cuda()
    h = torch.randn(512, 64, device="cuda", requires_grad=True)
    arch(h)  # warm-up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = arch(h)
        (out.task_reprs.sum() + out.aux_loss).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_bf16_grouped_gemm_matches_fp32_dense_reference() -> None:
    torch.manual_seed(1)
    arch = SMESArch(64, 4, 16, 2, 1, [64, 32]).cuda()
    h = torch.randn(256, 64, device="cuda")
    torch.testing.assert_close(arch(h).task_reprs, dense_masked_forward(arch, h), atol=5e-2, rtol=5e-2)
