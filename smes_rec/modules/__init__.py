"""Dense multi-task building blocks: routing, dispatch, experts, SMES and its baselines, towers."""

from smes_rec.modules.baselines import DenseMoEArch, MMoEArch, PLEArch, SharedBottomArch
from smes_rec.modules.outputs import ArchOutput
from smes_rec.modules.routing import Routing, RoutingTelemetry
from smes_rec.modules.smes import SMESArch
from smes_rec.modules.towers import MLP, TaskTowers

__all__ = [
    "MLP",
    "ArchOutput",
    "DenseMoEArch",
    "MMoEArch",
    "PLEArch",
    "Routing",
    "RoutingTelemetry",
    "SMESArch",
    "SharedBottomArch",
    "TaskTowers",
]
