"""Quieting third-party noise that says nothing actionable to a user of smes-rec."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party"]


def quiet_third_party() -> None:
    """Silences known-harmless warnings of fbgemm, torchrec's planner and torch.fx on every run."""
    for module in ("fbgemm_gpu", "torchrec", "torch.distributed.checkpoint", "torch.nn.parallel"):
        warnings.filterwarnings("ignore", module=module)
    warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
    for name in ("torchrec", "torch.fx._symbolic_trace", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
