"""Running a test function on several gloo processes (CPU), with a file rendezvous (no ports)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable[..., Any], world_size: int, workdir: str, args: tuple) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{workdir}/rendezvous", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, Path(workdir), *args)
    finally:
        dist.destroy_process_group()


def run_workers(fn: Callable[..., Any], world_size: int, workdir: Path, *args: Any) -> None:
    """Runs ``fn(rank, world_size, workdir, *args)`` on ``world_size`` processes; re-raises a worker's failure.

    ``fn`` must be importable (a module-level function). Workers exchange results through files in ``workdir``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    rendezvous = workdir / "rendezvous"
    rendezvous.unlink(missing_ok=True)
    mp.spawn(_entry, args=(fn, world_size, str(workdir), args), nprocs=world_size, join=True)
