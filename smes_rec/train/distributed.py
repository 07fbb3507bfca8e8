"""Process-group set-up that works under torchrun (any world size) and as a plain single process."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistContext", "from_rank0", "init_distributed"]

T = TypeVar("T")


class DistContext(NamedTuple):
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_distributed(device: str = "auto") -> DistContext:
    """Initialises the default process group: nccl on GPU, gloo on CPU.

    Under torchrun the rendezvous comes from the environment. A plain process gets a one-rank group through a
    file rendezvous (no port needed).

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.

    Returns:
        The :class:`DistContext`.

    Raises:
        ValueError: ``cuda`` asked for on a machine without a GPU.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend)
        else:
            # A fresh file in a private temporary folder: a one-rank rendezvous that needs no port.
            rendezvous = os.path.join(tempfile.mkdtemp(prefix="smes-rendezvous-"), "init")
            dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=0, world_size=1)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def from_rank0(compute: Callable[[], T]) -> T:
    """Runs ``compute`` on rank 0 alone and returns its (picklable) result on every rank.

    For checks that must run once (verifying a checkpoint, locking the output folder) but whose outcome every rank
    needs, so that all ranks raise the same error together instead of some waiting in a collective. Call it on
    every rank; without a process group, or with one rank, it just calls ``compute``.
    """
    on_rank0 = not dist.is_initialized() or dist.get_rank() == 0
    box: list[Any] = [compute() if on_rank0 else None]
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    result: T = box[0]
    return result
