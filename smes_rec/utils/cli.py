"""What the command-line apps (apps/*.py) share: the exit status of a user error, the message naming the process,
and closing the process group whatever happens."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist

__all__ = ["EXIT_ERROR", "closing_process_group", "report_error"]

EXIT_ERROR = 2  # usage, config, data, output folder, lock, resume mismatch, damaged checkpoint


def report_error(app: str, error: BaseException, what: str = "error") -> int:
    """Prints ``APP: WHAT (rank R): ERROR`` to stderr (R from torchrun's ``RANK``, 0 alone) and returns EXIT_ERROR.

    Args:
        app: The app's file name, e.g. ``train.py``.
        error: What went wrong; its message is the user's to act on.
        what: The kind of stop (``error``, or e.g. ``stopped``).

    Returns:
        :data:`EXIT_ERROR`.
    """
    print(f"{app}: {what} (rank {os.environ.get('RANK', '0')}): {error}", file=sys.stderr)
    return EXIT_ERROR


@contextmanager
def closing_process_group() -> Iterator[None]:
    """Destroys the default process group (if one was started) when the block ends, normally or not."""
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
