"""Process-wide memory allocator settings for CPU training and serving entry points."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

# mallopt(3) parameters of glibc.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_UP_TO_BYTES = 2**31 - 1  # the largest value mallopt's int takes


def keep_freed_memory() -> bool:
    """Keeps freed heap memory mapped in the process for reuse, instead of handing it back to the OS.

    Every training step and every request allocates the same large tensors again (dispatched rows, GEMM outputs,
    gradients). glibc serves blocks above its mmap threshold (at most 32 MB by default) with freshly mapped pages
    and unmaps them on free, so every step page-faults its buffers in again: on a 2-core VM, gathering SMES's
    20,000 dispatched rows of 1024 floats took 37 ms into a fresh buffer against 6.5 ms into a reused one.
    Raising the mmap and trim thresholds keeps those pages for the next allocation; the effect is that of running
    under jemalloc or tcmalloc, as CPU inference guides recommend. The cost: the resident size no longer shrinks
    after a peak and can exceed it through fragmentation (docs/serving.md gives a measured case). An entry point
    calls this once, before the work starts; a library never does.

    Returns:
        Whether the setting took effect (glibc on Linux); elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_UP_TO_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO_BYTES))
