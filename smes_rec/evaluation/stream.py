"""Streaming a split through a model: per-task metrics, routing telemetry and (optionally) the predictions.

Legend: B instances in a batch, T tasks, K experts per task, N evaluated rows.

Two sources produce the same stream of :class:`~smes_rec.train.wrapper.StepOutput`:

- :func:`unsharded_outputs`: an unsharded :class:`~smes_rec.train.wrapper.TrainWrapper` in one process (embeddings
  on the CPU), called batch by batch;
- ``smes_rec.train.pipeline.eval_outputs``: the sharded model (``train.build.build_for_eval``) under
  ``torch.distributed``, driven by TorchRec's ``EvalPipelineSparseDist`` exactly as the trainer validates.

Every output carries the arch's routing (``StepOutput.routing``: the experts every task selected for every
instance), so routing statistics are computed here over the evaluated rows only, leaving out padding rows.
:func:`evaluate_stream` consumes either stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from smes_rec.data.batch import Batch
from smes_rec.evaluation.telemetry import RoutingAccumulator, RoutingSummary
from smes_rec.metrics import MultiTaskEvaluator, TaskMetrics
from smes_rec.train.wrapper import StepOutput, TrainWrapper

__all__ = ["EvalResult", "evaluate_stream", "unsharded_outputs"]


class EvalResult(NamedTuple):
    """The outcome of streaming one split.

    Attributes:
        metrics: ``{task: TaskMetrics}``, exact over all ranks.
        routing: Routing telemetry over the evaluated rows of all ranks.
        num_batches: Batches streamed (this process).
        seconds: Wall-clock time of the stream (this process).
        predictions: With ``keep_predictions``, the evaluated rows as columns (on rank 0 when distributed, gathered
            from every rank; None elsewhere): ``group_id``, ``num_unique_experts``, and ``pred_<task>``,
            ``label_<task>``, ``weight_<task>`` per task.
    """

    metrics: dict[str, TaskMetrics]
    routing: RoutingSummary
    num_batches: int
    seconds: float
    predictions: dict[str, np.ndarray] | None


def unsharded_outputs(wrapper: TrainWrapper, batches: Iterable[Batch]) -> Iterator[StepOutput]:
    """Runs an unsharded model over batches in eval mode, without gradients.

    Args:
        wrapper: The model (on the CPU, weights loaded).
        batches: The batches.

    Yields:
        One :class:`StepOutput` per batch.
    """
    wrapper.eval()
    with torch.no_grad():
        for batch in batches:
            yield wrapper(batch)[1]


class _Predictions:
    """Columns of the evaluated rows, batch by batch."""

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = tuple(task_names)
        self.parts: dict[str, list[np.ndarray]] = {"group_id": [], "num_unique_experts": []}
        for t in self.task_names:
            for kind in ("pred", "label", "weight"):
                self.parts[f"{kind}_{t}"] = []

    def add(self, out: StepOutput, mask_B: torch.Tensor, num_unique_N: torch.Tensor) -> None:
        self.parts["group_id"].append(out.group_ids_B[mask_B].cpu().numpy())
        self.parts["num_unique_experts"].append(num_unique_N.cpu().numpy().astype(np.int32))
        for t, name in enumerate(self.task_names):
            self.parts[f"pred_{name}"].append(out.probs_TB[t][mask_B].float().cpu().numpy())
            self.parts[f"label_{name}"].append(out.labels_TB[t][mask_B].float().cpu().numpy())
            self.parts[f"weight_{name}"].append(out.weights_TB[t][mask_B].float().cpu().numpy())

    def columns(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.parts.items()}


def _gather_columns(columns: dict[str, np.ndarray], process_group: dist.ProcessGroup) -> dict[str, np.ndarray] | None:
    """Concatenates every rank's columns on rank 0 (in rank order); None on the other ranks."""
    rank = dist.get_rank(process_group)
    gathered: list[dict[str, np.ndarray]] | None = [{} for _ in range(dist.get_world_size(process_group))]
    dist.gather_object(columns, gathered if rank == 0 else None, dst=dist.get_global_rank(process_group, 0),
                       group=process_group)
    if rank != 0 or gathered is None:
        return None
    return {k: np.concatenate([g[k] for g in gathered]) for k in columns}


def evaluate_stream(
    outputs: Iterable[StepOutput],
    task_names: Sequence[str],
    *,
    split: str = "eval",
    process_group: dist.ProcessGroup | None = None,
    keep_predictions: bool = False,
    progress: bool = False,
    total_batches: int | None = None,
    grouped: bool = True,
) -> EvalResult:
    """Consumes a stream of step outputs into metrics, routing telemetry and optional predictions.

    Rows count when they have a positive weight for at least one task; padding rows (weight 0 everywhere) are
    ignored by every statistic, as rows of weight 0 are by the metrics.

    Args:
        outputs: Step outputs (see :func:`unsharded_outputs`, ``smes_rec.train.pipeline.eval_outputs``).
        task_names: The task names, in the model's order.
        split: The split's name, for messages.
        process_group: None in one process; the group of all evaluating ranks otherwise (every rank must call).
        keep_predictions: Collect the rows' predictions (gathered to rank 0).
        progress: Show a progress bar.
        total_batches: The number of batches, for the progress bar.
        grouped: Whether the data has a group column; without one GAUC is reported as not available (None).

    Returns:
        The :class:`EvalResult`.

    Raises:
        ValueError: Naming the split, batch and task, on NaN predictions or labels or other invalid values; or if
            no row was evaluated on any rank.
    """
    evaluator = MultiTaskEvaluator(task_names, grouped)
    routing: RoutingAccumulator | None = None
    predictions = _Predictions(task_names) if keep_predictions else None
    start = time.perf_counter()
    num_batches = 0
    bar = tqdm(total=total_batches, desc=f"evaluate {split}", unit="batch", disable=not progress, dynamic_ncols=True)
    for i, out in enumerate(outputs):
        mask_B = (out.weights_TB > 0).any(dim=0)
        try:
            evaluator.update(out.probs_TB, out.labels_TB, out.weights_TB, out.group_ids_B)
        except ValueError as e:
            raise ValueError(f"split {split!r}, batch {i}: {e}") from None
        if routing is None:
            routing = RoutingAccumulator(len(task_names), out.routing.probs_BTE.size(-1))
        stats = routing.update(out.routing.ids_BTK, mask_B)
        if predictions is not None:
            predictions.add(out, mask_B, stats.num_unique_B)
        num_batches += 1
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start

    # Every rank must take part in the collectives below, also one that saw no batch.
    num_experts = routing.num_experts if routing is not None else 0
    if process_group is not None:
        experts_1 = torch.tensor([num_experts])
        dist.all_reduce(experts_1, op=dist.ReduceOp.MAX, group=process_group)
        num_experts = int(experts_1.item())
    if routing is None:
        routing = RoutingAccumulator(len(task_names), num_experts)
    try:
        metrics = evaluator.compute(process_group)
    except ValueError as e:
        raise ValueError(f"split {split!r}: {e}") from None
    if all(m.num_examples == 0 for m in metrics.values()):
        raise ValueError(f"split {split!r}: no row has a positive weight for any task; nothing was evaluated")
    summary = routing.compute(process_group)
    columns = None
    if predictions is not None:
        columns = predictions.columns()
        if process_group is not None:
            columns = _gather_columns(columns, process_group)
    return EvalResult(metrics, summary, num_batches, seconds, columns)
