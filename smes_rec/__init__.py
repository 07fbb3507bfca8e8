"""smes-rec: SMES sparse multi-task mixture-of-experts ranking on TorchRec.

The dense archs (``SMESArch`` and the baselines) depend on torch alone, so they can be embedded in any model.
"""

from smes_rec.models.multitask import MultiTaskModel, MultiTaskOutput
from smes_rec.modules import (
    MLP,
    ArchCost,
    ArchOutput,
    DenseMoEArch,
    HoMEArch,
    HoMEExperts,
    MMoEArch,
    MoMEArch,
    MoMEMasks,
    PLEArch,
    RankMixerArch,
    RankMixerShape,
    RoutingStats,
    SharedBottomArch,
    SMESArch,
    SparseMoE,
    TaskTowers,
    arch_cost,
    routing_stats,
)

__all__ = [
    "MLP",
    "ArchCost",
    "ArchOutput",
    "DenseMoEArch",
    "HoMEArch",
    "HoMEExperts",
    "MMoEArch",
    "MoMEArch",
    "MoMEMasks",
    "MultiTaskModel",
    "MultiTaskOutput",
    "PLEArch",
    "RankMixerArch",
    "RankMixerShape",
    "RoutingStats",
    "SMESArch",
    "SharedBottomArch",
    "SparseMoE",
    "TaskTowers",
    "arch_cost",
    "routing_stats",
]

__version__ = "0.1.0"
