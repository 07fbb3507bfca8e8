"""smes-rec: SMES sparse multi-task mixture-of-experts ranking on TorchRec.

The dense archs (``SMESArch`` and the baselines) depend on torch alone, so they can be embedded in any model.
"""

from smes_rec.models.multitask import MultiTaskModel, MultiTaskOutput
from smes_rec.modules import (
    MLP,
    ArchOutput,
    DenseMoEArch,
    MMoEArch,
    PLEArch,
    RoutingTelemetry,
    SharedBottomArch,
    SMESArch,
    TaskTowers,
)

__all__ = [
    "MLP",
    "ArchOutput",
    "DenseMoEArch",
    "MMoEArch",
    "MultiTaskModel",
    "MultiTaskOutput",
    "PLEArch",
    "RoutingTelemetry",
    "SMESArch",
    "SharedBottomArch",
    "TaskTowers",
]

__version__ = "0.1.0"
