"""Dense multi-task building blocks: routing, dispatch, experts, SMES and its baselines, towers, cost report."""

from smes_rec.modules.baselines import DenseMoEArch, MMoEArch, PLEArch, SharedBottomArch
from smes_rec.modules.cost import ArchCost, arch_cost
from smes_rec.modules.home import HoMEArch, HoMEExperts
from smes_rec.modules.mome import MoMEArch, MoMEMasks
from smes_rec.modules.outputs import ArchOutput
from smes_rec.modules.rankmixer import RankMixerArch, RankMixerShape, SparseMoE
from smes_rec.modules.routing import Routing, RoutingStats, routing_stats
from smes_rec.modules.smes import SMESArch
from smes_rec.modules.towers import MLP, TaskTowers

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
    "PLEArch",
    "RankMixerArch",
    "RankMixerShape",
    "Routing",
    "RoutingStats",
    "SMESArch",
    "SharedBottomArch",
    "SparseMoE",
    "TaskTowers",
    "arch_cost",
    "routing_stats",
]
