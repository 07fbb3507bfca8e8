"""Shared helpers for the launch tests: loading the components file, running the torchx CLI, finding workers."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO_ROOT

COMPONENTS_FILE = REPO_ROOT / "torchx" / "components.py"
# Component names as users type them from a checkout (relative to the repository root).
TRAIN = "torchx/components.py:train"
EVALUATE = "torchx/components.py:evaluate"
STANDIN = "tests/launch/standin.py"


@cache
def components() -> ModuleType:
    """torchx/components.py imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location("smes_torchx_components", COMPONENTS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchx_executable() -> str:
    """The ``torchx`` console script of the environment running the tests."""
    beside = Path(sys.executable).with_name("torchx")
    found = str(beside) if beside.exists() else shutil.which("torchx")
    assert found, "the torchx console script is not installed"
    return found


@dataclass
class Result:
    """A finished ``torchx`` command."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def launch(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Starts ``torchx ARGS`` in the repository root, with one OpenMP thread per process."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [torchx_executable(), *args], cwd=REPO_ROOT, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> Result:
    """Waits for a ``launch``ed command; on timeout stops it (torchx then stops its replicas) and fails."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        raise AssertionError(f"torchx {proc.args} timed out after {timeout}s\n{stdout}\n{stderr}") from None
    return Result(proc.returncode, stdout, stderr)


def run_torchx(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """Runs ``torchx ARGS`` in the repository root and returns its exit status and output."""
    return finish(launch(args, env), timeout)


def free_port() -> int:
    """A TCP port that was free a moment ago (for the multi-node rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def read_records(record_dir: Path) -> list[dict]:
    """The stand-in's per-process records, in file-name order."""
    return [json.loads(path.read_text()) for path in sorted(record_dir.glob("rank*.json"))]


def descendants(root_pid: int) -> list[int]:
    """Live descendant process ids of ``root_pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root_pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def process_env(pid: int) -> dict[str, str]:
    """The environment a process started with ({} if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def process_cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []
