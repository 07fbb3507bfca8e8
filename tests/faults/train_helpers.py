"""Running the real apps on the tiny config for the fault-injection tests: subprocesses, torchrun, run copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.evaluation.helpers import TINY, TINY_OVERRIDES

TRAIN_APP = REPO_ROOT / "apps" / "train.py"
EVALUATE_APP = REPO_ROOT / "apps" / "evaluate.py"


def app_env() -> dict[str, str]:
    """The environment of an app subprocess: this checkout's package first, one OpenMP thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def tiny_args(run: Path, cache: Path, *overrides: str) -> list[str]:
    """``apps/train.py`` arguments of the tiny run writing to ``run`` (data cached in ``cache``)."""
    items = [*TINY_OVERRIDES, f"output_dir={run}", f"data.cache_dir={cache}", *overrides]
    return ["--config", str(TINY), "--no-progress", *[arg for item in items for arg in ("--set", item)]]


def train_command(run: Path, cache: Path, *overrides: str, resume: bool = True, nproc: int = 1) -> list[str]:
    """The command line of a tiny training run, plain or under torchrun with ``nproc`` processes."""
    args = [str(TRAIN_APP), *tiny_args(run, cache, *overrides), *(["--resume"] if resume else [])]
    if nproc == 1:
        return [sys.executable, *args]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    return [torchrun, "--standalone", "--nproc_per_node", str(nproc), *args]


def train(run: Path, cache: Path, *overrides: str, resume: bool = True, nproc: int = 1,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs a tiny training run to the end and returns its exit status and output."""
    return subprocess.run(train_command(run, cache, *overrides, resume=resume, nproc=nproc), cwd=REPO_ROOT,
                          env=app_env(), capture_output=True, text=True, timeout=timeout)


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a trained run folder (tests mutate copies, never the shared run)."""
    return Path(shutil.copytree(run, dest, ignore=shutil.ignore_patterns("run.lock")))


def error_lines(stderr: str, app: str = "train.py") -> list[str]:
    """The lines an app printed as its error (``<app>: error ...`` / ``<app>: stopped ...``)."""
    return [line for line in stderr.splitlines() if line.startswith(f"{app}: ")]
