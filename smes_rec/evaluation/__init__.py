"""Offline evaluation of checkpoints: per-task metrics, routing telemetry, reports and run comparisons."""

from smes_rec.evaluation.app import EmptySplitError, EvalConfig, EvalOutcome, evaluate_checkpoint
from smes_rec.evaluation.checkpoint import SchemaMismatchError, check_fingerprint, resolve_checkpoint
from smes_rec.evaluation.compare import Comparison, RunMetrics, compare_runs, load_run
from smes_rec.evaluation.stream import EvalResult, evaluate_stream
from smes_rec.evaluation.telemetry import ActivationBound, RoutingAccumulator, RoutingSummary, activation_bound

__all__ = [
    "ActivationBound",
    "Comparison",
    "EmptySplitError",
    "EvalConfig",
    "EvalOutcome",
    "EvalResult",
    "RoutingAccumulator",
    "RoutingSummary",
    "RunMetrics",
    "SchemaMismatchError",
    "activation_bound",
    "check_fingerprint",
    "compare_runs",
    "evaluate_checkpoint",
    "evaluate_stream",
    "load_run",
    "resolve_checkpoint",
]
