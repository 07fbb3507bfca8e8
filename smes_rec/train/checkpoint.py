"""Atomic, resharding checkpoints with ``torch.distributed.checkpoint``.

A checkpoint is a folder ``step_<step>`` holding the DCP files of the model and optimizer state, ``meta.json``
(step, data position, world size, config) and one RNG state file per rank. It is written under
``step_<step>.tmp`` and renamed by rank 0 only after every rank finished writing, so a process killed mid-save
leaves the previous checkpoint as the latest complete one (the rename is the commit; a ``.tmp`` folder is never
read and is removed by the next save).

Model weights load at any world size and sharding plan, and into an unsharded model. Optimizer state is restored
only at the world size it was saved with (fused optimizer shards must match).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn

__all__ = ["CheckpointManager", "load_model_weights"]

_STEP_DIR = re.compile(r"^step_(\d{9})$")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointManager:
    """Saves, finds, prunes and restores checkpoints under one folder. Every rank calls every method.

    Args:
        root: The checkpoint folder.
        keep_last: How many complete checkpoints to keep (older ones are deleted after a save).
    """

    def __init__(self, root: str | Path, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.root = Path(root)
        self.keep_last = keep_last

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        done = self.complete()
        return done[-1] if done else None

    def save(self, step: int, model: nn.Module, optimizer: Any, meta: Mapping[str, Any]) -> Path:
        """Writes checkpoint ``step`` atomically and prunes old ones.

        Args:
            step: The global step the state belongs to (after that many optimizer steps).
            model: The (sharded) model; its ``state_dict`` is saved.
            optimizer: An optimizer with ``state_dict`` (torchrec KeyedOptimizer / CombinedOptimizer).
            meta: JSON-serialisable metadata (data position, config, ...); ``step`` and ``world_size`` are added.

        Returns:
            The checkpoint folder.
        """
        final = self.root / f"step_{step:09d}"
        tmp = self.root / f"step_{step:09d}.tmp"
        if _rank() == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)  # a save that died before its rename
            tmp.mkdir()
        _barrier()
        dcp.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint_id=tmp)
        torch.save(_rng_state(), tmp / f"rng_rank{_rank()}.pt")
        if _rank() == 0:
            world_size = dist.get_world_size() if dist.is_initialized() else 1
            (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "world_size": world_size}, indent=2))
        _barrier()  # every rank's files are on disk before the commit
        if _rank() == 0:
            if final.exists():  # the same step saved again (e.g. final save right after a periodic one)
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
            for old in self.complete()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            for stale in self.root.glob("step_*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
        _barrier()
        return final

    @staticmethod
    def read_meta(path: str | Path) -> dict[str, Any]:
        """The ``meta.json`` of a checkpoint."""
        meta_path = Path(path) / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path}: not a smes-rec checkpoint (no meta.json)")
        return json.loads(meta_path.read_text())

    def load(self, path: str | Path, model: nn.Module, optimizer: Any | None) -> dict[str, Any]:
        """Restores model weights (resharding as needed), and optimizer and RNG state at the same world size.

        Args:
            path: A complete checkpoint folder.
            model: The (sharded) model to load into.
            optimizer: The optimizer, or None to load weights only. Its state is restored only when the world size
                matches the checkpoint's; otherwise it starts fresh.

        Returns:
            The checkpoint's metadata, with ``optimizer_restored`` added.
        """
        path = Path(path)
        meta = self.read_meta(path)
        world_size = dist.get_world_size() if dist.is_initialized() else 1
        restore_optimizer = optimizer is not None and meta["world_size"] == world_size
        state: dict[str, Any] = {"model": model.state_dict()}
        if restore_optimizer:
            state["optimizer"] = optimizer.state_dict()  # lazy state must be materialised (init_state) already
        dcp.load(state, checkpoint_id=path)
        model.load_state_dict(state["model"])
        if restore_optimizer:
            optimizer.load_state_dict(state["optimizer"])
            rng = path / f"rng_rank{_rank()}.pt"
            if rng.is_file():
                _set_rng_state(torch.load(rng, weights_only=False))
        return {**meta, "optimizer_restored": restore_optimizer}


def load_model_weights(path: str | Path, model: nn.Module) -> dict[str, Any]:
    """Loads a checkpoint's weights into an unsharded model in one process (inference, evaluation).

    Args:
        path: A complete checkpoint folder.
        model: The unsharded model (the train wrapper, embeddings on CPU), same config as the checkpoint.

    Returns:
        The checkpoint's metadata.
    """
    meta = CheckpointManager.read_meta(path)
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=Path(path), no_dist=True)
    model.load_state_dict(state["model"])
    return meta


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
