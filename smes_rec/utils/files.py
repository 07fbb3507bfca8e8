"""Small file helpers shared by training and evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_json"]


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
