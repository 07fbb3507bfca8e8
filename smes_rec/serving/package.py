"""The serving package on disk: its files, the manifest, and checking them.

A package folder holds ``model.pt`` (TorchScript), ``example_inputs.pt`` (a tuple, so ``m(*torch.load(...))``
runs), ``example_outputs.pt`` (what the model returned for them at export), ``transform/`` (the frozen feature
transform) and ``manifest.json``, which records the tasks, features, input contract, source checkpoint, package
versions and the sha256 of every other file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smes_rec.utils.files import sha256_file

__all__ = ["MANIFEST", "MODEL_FILE", "PACKAGE_FORMAT", "file_digests", "is_package", "read_manifest", "verify_package"]

PACKAGE_FORMAT = "smes-rec-serving/1"
MANIFEST = "manifest.json"
MODEL_FILE = "model.pt"


def file_digests(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``relative path -> {sha256, bytes}`` of every file under ``folder`` except the manifest."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST
    }


def is_package(path: str | Path) -> bool:
    """Whether ``path`` is a serving package folder."""
    return (Path(path) / MANIFEST).is_file() and (Path(path) / MODEL_FILE).is_file()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a package.

    Raises:
        ValueError: If the folder holds no manifest of this format.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder}: not a serving package (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != PACKAGE_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, this smes-rec reads {PACKAGE_FORMAT!r}")
    return manifest


def verify_package(folder: str | Path, manifest: Mapping[str, Any] | None = None) -> None:
    """Checks that the files of a package are exactly those its manifest lists, byte for byte.

    Raises:
        ValueError: Naming every missing, extra or changed file.
    """
    manifest = manifest or read_manifest(folder)
    listed, found = manifest["files"], file_digests(folder)
    problems = [f"missing {name}" for name in listed if name not in found]
    problems += [f"unlisted {name}" for name in found if name not in listed]
    problems += [f"changed {name} (sha256 differs)" for name in listed
                 if name in found and found[name]["sha256"] != listed[name]["sha256"]]
    if problems:
        raise ValueError(f"serving package {folder} does not match its manifest: " + "; ".join(problems))
