"""Offline evaluation (docs/design.md §4): AUC, GAUC and pointwise metrics per task, exact at any world size."""

from smes_rec.metrics.accumulator import MultiTaskEvaluator, TaskMetrics
from smes_rec.metrics.auc import GAUCResult, PerGroupAUC, auc, gauc, per_group_auc
from smes_rec.metrics.distributed import distributed_auc, distributed_gauc
from smes_rec.metrics.pointwise import (
    BinaryMetrics,
    binary_metrics,
    calibration,
    log_loss,
    normalized_entropy,
    positive_rate,
)

__all__ = [
    "BinaryMetrics",
    "GAUCResult",
    "MultiTaskEvaluator",
    "PerGroupAUC",
    "TaskMetrics",
    "auc",
    "binary_metrics",
    "calibration",
    "distributed_auc",
    "distributed_gauc",
    "gauc",
    "log_loss",
    "normalized_entropy",
    "per_group_auc",
    "positive_rate",
]
