"""What scores rows: an exported package (TorchScript) or a checkpoint (the eager ranker), behind one interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from smes_rec.data.config import DataConfig
from smes_rec.serving.module import ServingModule
from smes_rec.serving.package import MODEL_FILE, is_package, read_manifest, verify_package
from smes_rec.serving.transform import FrozenTransform, load_transform
from smes_rec.utils.config import from_mapping

__all__ = ["Scorer", "load_scorer"]


class Scorer(NamedTuple):
    """A model ready to score requests.

    Attributes:
        model: ``(dense_BD, values_N, lengths_FB) -> probabilities [T, B]``.
        tasks: The task names, in the order of the output rows.
        transform: The frozen feature transform.
        data: The training run's data config (for ``--split``).
        kind: ``package`` or ``checkpoint``.
    """

    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    tasks: tuple[str, ...]
    transform: FrozenTransform
    data: DataConfig
    kind: str


def load_scorer(path: str | Path) -> Scorer:
    """Loads a serving package (verified against its manifest) or a checkpoint / run folder.

    Args:
        path: A package folder, a checkpoint folder, a ``checkpoints`` folder or a run's output folder.

    Returns:
        The :class:`Scorer`.
    """
    path = Path(path)
    if is_package(path):
        manifest = read_manifest(path)
        verify_package(path, manifest)
        model = torch.jit.load(str(path / MODEL_FILE)).eval()
        data = from_mapping(DataConfig, manifest["data"], source=f"{path}/manifest.json data")
        return Scorer(model, tuple(manifest["tasks"]), load_transform(path / "transform"), data, "package")
    from smes_rec.serving.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)
    model = ServingModule(loaded.ranker, loaded.data.feature_names).eval()
    return Scorer(model, tuple(loaded.data.task_names), loaded.transform, loaded.config.data, "checkpoint")
