"""One run per output folder: an exclusive ``flock`` on ``<output_dir>/run.lock`` held for the run's lifetime.

The operating system releases the lock when the holding process exits or dies (SIGKILL included), so a killed run
never leaves a stale lock behind. The lock file records the holder (pid, host, start time) for the error a second
run gets. Under torchrun only rank 0 takes the lock; :func:`smes_rec.train.app.run` tells the other ranks.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """Another process holds the output folder's lock."""


class RunLock:
    """An exclusive lock on an output folder.

    Args:
        output_dir: The run's output folder (must exist).
    """

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock without waiting and records this process as its holder.

        Raises:
            RunLockedError: Another process holds it (the message names pid, host and start time).
            OSError: The lock file cannot be created.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use by another run ({self.holder()}); wait for it to "
                                 "finish or stop it, or choose another output_dir") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def holder(self) -> str:
        """The holder recorded in the lock file, in words."""
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on host {info['host']}, started {info['started']}; lock file {self.path}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"a process that is still starting; lock file {self.path}"

    def release(self) -> None:
        """Releases the lock (the file stays; it means nothing without a holder)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
