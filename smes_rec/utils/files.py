"""Small file helpers shared by training and evaluation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["sha256_file", "write_json"]


def write_json(path: str | Path, data: Any, **dumps_kwargs: Any) -> None:
    """Writes ``data`` as indented JSON atomically (a temporary name, then a rename), so readers never see half a file.

    Args:
        path: The destination.
        data: Anything ``json.dumps`` takes.
        **dumps_kwargs: More ``json.dumps`` options (``default``, ``allow_nan``, ...).
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, **dumps_kwargs))
    tmp.replace(path)


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks (checkpoint and serving-package manifests)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
