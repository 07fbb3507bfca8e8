"""Shared timing helpers for the benchmark scripts: interleaved rounds and medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from itertools import pairwise

import torch
from tqdm import tqdm

from smes_rec.modules.outputs import ArchOutput


def arch_step(arch: torch.nn.Module, h: torch.Tensor, autocast_dtype: torch.dtype | None = None
              ) -> Callable[[], None]:
    """A forward+backward step of a dense arch on fixed input (upstream gradient fixed on first call).

    The input takes a gradient too, as the shared-bottom output does in a real model.

    Args:
        arch: The dense arch.
        h: Its input ``[B, D]``.
        autocast_dtype: Run the forward under ``torch.autocast`` with this dtype (bf16 on GPU), or not at all.
    """
    upstream: list[torch.Tensor] = []
    h = h.detach().requires_grad_(True)

    def step() -> None:
        arch.zero_grad(set_to_none=True)
        h.grad = None
        with torch.autocast(h.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out: ArchOutput = arch(h)
        if not upstream:
            upstream.append(torch.randn_like(out.task_reprs))
        ((out.task_reprs * upstream[0]).sum() + out.aux_loss).backward()

    return step


def interleaved_medians(steps: Mapping[str, Callable[[], None]], rounds: int, desc: str = "rounds",
                        repeats: int = 1, device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds per call of each step, running every candidate once per round, round after round.

    On CUDA every timing waits for the device (kernels run asynchronously), so it is the work, not its launch.
    """
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in tqdm(range(rounds), desc=desc, leave=False):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            sync()
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(ts) for name, ts in times.items()}


def expert_flops_per_row(in_features: int, layers: list[int]) -> int:
    """Forward+backward FLOPs of one expert MLP on one row (3 x 2 x multiply-adds)."""
    dims = [in_features, *layers]
    return 6 * sum(a * b for a, b in pairwise(dims))
