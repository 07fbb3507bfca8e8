"""The data cache: generated synthetic data and dense statistics, shared by the processes of one machine.

Several ranks may ask for the same entry at once; an exclusive ``flock`` lets one of them build it while the others
wait, and results are written to a temporary name and renamed into place, so a reader never sees half an entry. A
lock dies with its process, so a crashed builder never blocks the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["cache_key", "default_cache_dir", "locked"]


def default_cache_dir() -> Path:
    """``$SMES_REC_CACHE``, else ``$XDG_CACHE_HOME/smes_rec``, else ``~/.cache/smes_rec``."""
    if os.environ.get("SMES_REC_CACHE"):
        return Path(os.environ["SMES_REC_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "smes_rec"


def cache_key(payload: Any) -> str:
    """A short stable digest of a JSON-serialisable payload."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` + ``.lock`` (blocking until other holders finish)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
