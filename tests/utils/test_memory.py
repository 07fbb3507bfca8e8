"""keep_freed_memory: a freed large buffer's pages are reused by the next allocation instead of faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

# Allocates, fills and frees a 64 MB tensor 12 times, as a training step or a request does with its buffers;
# prints the minor page faults of the last 6 rounds (the first ones settle the heap).
_SCRIPT = """
import resource, sys, torch
from smes_rec.utils.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    torch.ones(16 * 2**20)
before = faults()
for _ in range(6):
    torch.ones(16 * 2**20)
print(faults() - before)
"""


def _steady_state_faults(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


def test_a_reallocated_buffer_reuses_its_pages() -> None:
    pages = 6 * 64 * 2**20 // 4096
    assert _steady_state_faults("default") > pages // 2  # glibc unmaps every freed block: its pages fault again
    assert _steady_state_faults("keep") < pages // 20  # kept mapped: each new buffer reuses the last one's pages
