"""One run per output folder: a second run (plain or torchrun) is refused naming the holder; a killed run's lock
is released by the operating system."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from smes_rec.train.lock import RunLock, RunLockedError
from tests.conftest import REPO_ROOT

from .train_helpers import app_env, error_lines, train, train_command


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(RunLockedError) as info:
        RunLock(tmp_path).acquire()
    holder = json.loads((tmp_path / "run.lock").read_text())
    assert f"pid {holder['pid']} on host {socket.gethostname()}, started {holder['started']}" in str(info.value)
    first.release()
    with RunLock(tmp_path):  # free again
        pass


def _wait_for_holder(lock_file: Path, proc: subprocess.Popen[str], log: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            holder = json.loads(lock_file.read_text())
            if holder.get("pid") == proc.pid:
                return holder
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("the first run never took the lock")


@pytest.mark.dist
def test_two_runs_on_one_folder(eval_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # A long first run (it is killed below), then a second run on the same folder, as torchx's --resume would start.
    command = train_command(run, eval_cache, "schedule.max_steps=100000", "schedule.checkpoint_every=0")
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, cwd=REPO_ROOT, env=app_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        holder = _wait_for_holder(run / "run.lock", first, tmp_path / "first.log")
        expected = f"is in use by another run (pid {first.pid} on host {holder['host']}, started {holder['started']}"
        second = train(run, eval_cache, "schedule.max_steps=2", timeout=120)
        assert second.returncode == 2, second.stderr[-3000:]
        assert expected in second.stderr and len(error_lines(second.stderr)) == 1
        assert "Traceback" not in second.stderr
        # Under torchrun only rank 0 takes the lock; rank 1 gets the same error instead of waiting forever.
        spread = train(run, eval_cache, "schedule.max_steps=2", nproc=2, timeout=180)
        assert spread.returncode != 0
        for rank in (0, 1):
            assert f"train.py: error (rank {rank}): {run} is in use by another run (pid {first.pid}" in spread.stderr
        assert not (run / "checkpoints").exists()  # neither refused run wrote anything
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        log.close()
    # The killed run left its lock file, but the operating system dropped its lock: the next run gets it.
    assert json.loads((run / "run.lock").read_text())["pid"] == first.pid
    with RunLock(run):
        assert json.loads((run / "run.lock").read_text())["pid"] == os.getpid()
