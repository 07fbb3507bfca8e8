"""Atomic, verified, resharding checkpoints with ``torch.distributed.checkpoint``.

A checkpoint is a folder ``step_<step>`` holding the DCP files of the model and optimizer state, ``meta.json``
(step, data position, world size, config), one RNG state file per rank, any extra files the caller adds, and
``manifest.json``: the size and SHA-256 of every other file in the folder. It is written under ``step_<step>.tmp``;
rank 0 writes the manifest (atomically) once every rank finished writing, then renames the folder, so a process
killed mid-save leaves the previous checkpoint as the latest complete one (the rename is the commit; a ``.tmp``
folder is never read and is removed by the next save).

A folder without ``meta.json`` or ``manifest.json`` is never a checkpoint. Before use a checkpoint is verified
against its manifest: a missing, truncated, altered or unlisted file (an RNG file included) makes it damaged,
with an error naming the file. Resuming skips damaged checkpoints for the newest intact one and says which.

Model weights load at any world size and sharding plan, and into an unsharded model. Optimizer state is restored
only at the world size it was saved with (fused optimizer shards must match).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn

from smes_rec.train.distributed import from_rank0
from smes_rec.utils.files import sha256_file

__all__ = [
    "CheckpointDamagedError",
    "CheckpointManager",
    "Skipped",
    "load_model_weights",
    "load_weights",
    "verify_checkpoint",
    "write_manifest",
]

_STEP_DIR = re.compile(r"^step_(\d{9})$")
MANIFEST = "manifest.json"
META = "meta.json"


class CheckpointDamagedError(ValueError):
    """A checkpoint folder is incomplete or one of its files does not match its manifest (the message names it)."""


class Skipped(NamedTuple):
    """A checkpoint passed over when looking for the newest intact one."""

    path: Path
    reason: str


def write_manifest(folder: Path) -> None:
    """Records the size and SHA-256 of every file in ``folder`` (sub-folders included) in ``manifest.json``."""
    files = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[file.relative_to(folder).as_posix()] = {"size": file.stat().st_size, "sha256": sha256_file(file)}
    tmp = folder / (MANIFEST + ".tmp")
    with tmp.open("w") as f:
        json.dump({"files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)


def verify_checkpoint(path: str | Path) -> None:
    """Checks a checkpoint folder against its manifest.

    Args:
        path: A ``step_<step>`` folder.

    Raises:
        CheckpointDamagedError: Naming the first problem: no ``meta.json`` or ``manifest.json``, a listed file
            missing or of another size or checksum, a file the manifest does not list, or an RNG file missing
            for a rank of the world size it was saved at.
    """
    path = Path(path)
    for name in (META, MANIFEST):
        if not (path / name).is_file():
            raise CheckpointDamagedError(f"{path}: incomplete checkpoint: {name} is missing")
    try:
        listed = json.loads((path / MANIFEST).read_text())["files"]
        meta = json.loads((path / META).read_text())
        world_size = int(meta["world_size"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointDamagedError(f"{path / MANIFEST}: damaged checkpoint: unreadable manifest or meta ({e})") \
            from None
    for rank in range(world_size):
        if f"rng_rank{rank}.pt" not in listed:
            raise CheckpointDamagedError(f"{path / f'rng_rank{rank}.pt'}: damaged checkpoint: RNG state file missing")
    for name, record in listed.items():
        file = path / name
        if not file.is_file():
            what = "RNG state file" if name.startswith("rng_rank") else "file"
            raise CheckpointDamagedError(f"{file}: damaged checkpoint: {what} missing")
        size = file.stat().st_size
        if size != record["size"]:
            raise CheckpointDamagedError(
                f"{file}: damaged checkpoint: {size} bytes, {record['size']} when saved (truncated or overwritten)"
            )
        if sha256_file(file) != record["sha256"]:
            raise CheckpointDamagedError(f"{file}: damaged checkpoint: checksum differs from the one saved")
    unlisted = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                      if p.is_file() and p.name != MANIFEST and p.relative_to(path).as_posix() not in listed)
    if unlisted:
        raise CheckpointDamagedError(f"{path / unlisted[0]}: damaged checkpoint: file not in the manifest")


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

    def step_folders(self) -> list[Path]:
        """Every ``step_<step>`` folder, committed or not, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))

    def complete(self) -> list[Path]:
        """Committed checkpoints (with ``meta.json`` and ``manifest.json``; not verified), oldest first."""
        return [p for p in self.step_folders() if (p / META).is_file() and (p / MANIFEST).is_file()]

    def latest(self) -> Path | None:
        """The newest committed checkpoint (not verified), or None."""
        done = self.complete()
        return done[-1] if done else None

    def latest_intact(self) -> tuple[Path | None, list[Skipped]]:
        """The newest checkpoint that passes :func:`verify_checkpoint`, and the newer ones skipped, newest first.

        Rank 0 verifies and every rank gets its answer (call it on every rank).
        """

        def newest_intact() -> tuple[Path | None, list[Skipped]]:
            skipped: list[Skipped] = []
            for folder in reversed(self.step_folders()):
                try:
                    verify_checkpoint(folder)
                except CheckpointDamagedError as e:
                    skipped.append(Skipped(folder, str(e)))
                    continue
                return folder, skipped
            return None, skipped

        return from_rank0(newest_intact)

    def resume_point(self, say: Callable[[str], None]) -> Path | None:
        """The checkpoint a resume continues from: the newest intact one, damaged newer ones set aside.

        Verifies once; every rank calls it and gets the same answer. Each skipped checkpoint is reported through
        ``say`` with its reason and renamed ``step_<step>.damaged`` (see :meth:`set_aside`).
        """
        path, skipped = self.latest_intact()
        for item in skipped:
            say(f"skipping checkpoint {item.path.name}: {item.reason}")
        if skipped:
            self.set_aside(skipped)
            say(f"renamed the skipped checkpoint(s) to *.damaged; resuming from "
                f"{path.name if path else 'nothing (fresh start)'}")
        return path

    def set_aside(self, skipped: list[Skipped]) -> None:
        """Renames damaged checkpoints to ``step_<step>.damaged`` (rank 0), so they are never picked again."""
        if _rank() == 0:
            for item in skipped:
                aside = item.path.with_name(item.path.name + ".damaged")
                if aside.exists():
                    shutil.rmtree(aside)
                os.replace(item.path, aside)
        _barrier()

    def save(self, step: int, model: nn.Module, optimizer: Any, meta: Mapping[str, Any],
             extra_files: Mapping[str, bytes] | None = None) -> Path:
        """Writes checkpoint ``step`` atomically, with its manifest, and prunes old ones.

        Args:
            step: The global step the state belongs to (after that many optimizer steps).
            model: The (sharded) model; its ``state_dict`` is saved.
            optimizer: An optimizer with ``state_dict`` (torchrec KeyedOptimizer / CombinedOptimizer).
            meta: JSON-serialisable metadata (data position, config, ...); ``step`` and ``world_size`` are added.
            extra_files: More files for the folder, ``{name: content}``, written by rank 0 (covered by the
                manifest like every other file).

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
            (tmp / META).write_text(json.dumps({**meta, "step": step, "world_size": world_size}, indent=2))
            for name, content in (extra_files or {}).items():
                (tmp / name).write_bytes(content)
        _barrier()  # every rank's files are on disk before the manifest and the commit
        if _rank() == 0:
            write_manifest(tmp)
            if final.exists():  # the same step saved again (e.g. final save right after a periodic one)
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
            done = [p for p in self.complete() if p.name <= final.name]  # never prune past the step just saved
            for old in done[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            for stale in self.root.glob("step_*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
        _barrier()
        return final

    @staticmethod
    def read_meta(path: str | Path) -> dict[str, Any]:
        """The ``meta.json`` of a checkpoint."""
        meta_path = Path(path) / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path}: not a smes-rec checkpoint (no meta.json)")
        try:
            return json.loads(meta_path.read_text())
        except ValueError as e:
            raise CheckpointDamagedError(f"{meta_path}: damaged checkpoint: not valid JSON ({e})") from None

    def load(self, path: str | Path, model: nn.Module, optimizer: Any | None, verify: bool = True) -> dict[str, Any]:
        """Restores model weights (resharding as needed), and optimizer and RNG state at the same world size.

        Args:
            path: A complete checkpoint folder.
            model: The (sharded) model to load into.
            optimizer: The optimizer, or None to load weights only. Its state is restored only when the world size
                matches the checkpoint's; otherwise it starts fresh.
            verify: Check the folder against its manifest first (rank 0 reads it; skip when just verified).

        Returns:
            The checkpoint's metadata, with ``optimizer_restored`` added.

        Raises:
            CheckpointDamagedError: The checkpoint is incomplete or damaged (naming the file), on every rank.
        """
        path = Path(path)
        if verify:
            _verify_on_rank0(path)
        meta = self.read_meta(path)
        world_size = dist.get_world_size() if dist.is_initialized() else 1
        restore = optimizer if optimizer is not None and meta["world_size"] == world_size else None
        state: dict[str, Any] = {"model": model.state_dict()}
        if restore is not None:
            state["optimizer"] = restore.state_dict()  # lazy state must be materialised (init_state) already
        dcp.load(state, checkpoint_id=path)
        model.load_state_dict(state["model"])
        if restore is not None:
            restore.load_state_dict(state["optimizer"])
            rng = path / f"rng_rank{_rank()}.pt"
            if not rng.is_file():  # verified folders always have it; a fresh RNG would silently change the run
                raise CheckpointDamagedError(f"{rng}: damaged checkpoint: RNG state file missing")
            _set_rng_state(torch.load(rng, weights_only=False))
        return {**meta, "optimizer_restored": restore is not None}


def _verify_on_rank0(path: Path) -> None:
    """Rank 0 verifies ``path``; every rank raises the same :class:`CheckpointDamagedError` if it is damaged."""

    def damage() -> str | None:
        try:
            verify_checkpoint(path)
        except CheckpointDamagedError as e:
            return str(e)
        return None

    problem = from_rank0(damage)
    if problem is not None:
        raise CheckpointDamagedError(problem)


def load_model_weights(path: str | Path, model: nn.Module, verify: bool = True) -> dict[str, Any]:
    """Loads a checkpoint's weights into an unsharded model in one process (inference, evaluation).

    Args:
        path: A complete checkpoint folder.
        model: The unsharded model (the train wrapper, embeddings on CPU), same config as the checkpoint.
        verify: Check the folder against its manifest first.

    Returns:
        The checkpoint's metadata.

    Raises:
        CheckpointDamagedError: The checkpoint is incomplete or damaged (naming the file).
    """
    if verify:
        verify_checkpoint(path)
    meta = CheckpointManager.read_meta(path)
    load_weights(path, model, no_dist=True)
    return meta


def load_weights(path: str | Path, model: nn.Module, *, no_dist: bool = False) -> None:
    """Loads a verified checkpoint's model weights, nothing else (no metadata read, no optimizer).

    Args:
        path: A complete, already verified checkpoint folder.
        model: The model, sharded (every rank calls this) or unsharded (``no_dist=True``, one process).
        no_dist: Load in this process alone, whatever process group exists.
    """
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=Path(path), no_dist=no_dist)
    model.load_state_dict(state["model"])


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
