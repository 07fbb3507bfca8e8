"""Streaming multi-task evaluator: accumulate batches, then compute every offline metric per task.

Legend: T tasks, B instances in a batch, N rows accumulated.

Per task it reports AUC, GAUC weighted by impressions and its unweighted (uniform) mean, the number of groups
GAUC used, log loss, normalised entropy, calibration, positive rate and the number of examples; definitions in
:mod:`smes_rec.metrics.auc` and :mod:`smes_rec.metrics.pointwise`. Example weights apply to every metric and a
row with weight 0 counts as absent for that task (e.g. a missing label). With a process group the result is
exact: the same numbers as one process seeing every rank's rows.

Memory: the evaluator keeps detached CPU copies of every row (per task: prediction, label and weight, 4 bytes
each for float32 predictions; 8 bytes per row for the group id). ``compute`` with a process group additionally
gathers one task's rows from all ranks at a time for the pooled AUC (24 bytes per global row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.distributed as dist

from smes_rec.metrics.auc import auc, gauc_from_partial_sums, gauc_partial_sums, per_group_auc
from smes_rec.metrics.distributed import all_reduce_sum, distributed_auc, distributed_gauc_partial_sums
from smes_rec.metrics.inputs import is_integer_tensor
from smes_rec.metrics.pointwise import BinarySums, binary_metrics_from_sums, binary_sums


class TaskMetrics(NamedTuple):
    """The offline metrics of one task (Python numbers; NaN where a metric is undefined).

    Attributes:
        auc: AUC over all rows, ties counting one half (NaN if one class is absent).
        gauc: GAUC, groups weighted by their number of rows (NaN if no group has both classes; None when the data
            has no group column: not available).
        gauc_uniform: GAUC as the plain mean over the same groups (None likewise).
        num_groups: number of groups GAUC used (groups with both classes; None without a group column).
        log_loss: weighted mean binary cross-entropy, natural log.
        ne: normalised entropy, log loss over the entropy of the positive rate (NaN if the rate is 0 or 1).
        calibration: weighted mean prediction over weighted mean label (NaN without positives).
        positive_rate: weighted fraction of positive labels.
        num_examples: number of rows with a positive weight.
    """

    auc: float
    gauc: float | None
    gauc_uniform: float | None
    num_groups: int | None
    log_loss: float
    ne: float
    calibration: float
    positive_rate: float
    num_examples: int


def _first(mask_T: torch.Tensor) -> int | None:
    """Index of the first True task, or None."""
    hits = torch.nonzero(mask_T).flatten()
    return int(hits[0]) if hits.numel() else None


class MultiTaskEvaluator:
    """Accumulates predictions of T tasks over an evaluation split and computes :class:`TaskMetrics` per task.

    Example::

        evaluator = MultiTaskEvaluator(["click", "like"])
        for batch in loader:
            evaluator.update_logits(model(batch), batch.labels, batch.weights, batch.group_ids)
        metrics = evaluator.compute(process_group=torch.distributed.group.WORLD)  # or None on one process
    """

    def __init__(self, task_names: Sequence[str], grouped: bool = True) -> None:
        """Creates an empty evaluator.

        Args:
            task_names: one distinct name per task, in the order of the first dimension of ``preds_TB``.
            grouped: whether the group ids are real (the data has a group column). Without groups GAUC is not
                computed and is reported as None ("not available"), never as an AUC over one group.

        Raises:
            ValueError: if there is no task or a name repeats.
        """
        names = tuple(task_names)
        if not names:
            raise ValueError("task_names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError(f"task_names must be distinct, got {names}")
        self._task_names = names
        self.grouped = grouped
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._weights: list[torch.Tensor] = []
        self._groups: list[torch.Tensor] = []

    @property
    def task_names(self) -> tuple[str, ...]:
        """The task names, in order."""
        return self._task_names

    @property
    def num_rows(self) -> int:
        """The number of rows accumulated on this process."""
        return sum(g.numel() for g in self._groups)

    def reset(self) -> None:
        """Drops every accumulated row."""
        self._preds.clear()
        self._labels.clear()
        self._weights.clear()
        self._groups.clear()

    def _validate(
        self,
        preds_TB: torch.Tensor,
        labels_TB: torch.Tensor,
        weights_TB: torch.Tensor | None,
        group_ids_B: torch.Tensor,
        hint: str,
    ) -> None:
        num_tasks = len(self._task_names)
        if preds_TB.dim() != 2 or preds_TB.shape[0] != num_tasks:
            raise ValueError(f"preds must have shape [T={num_tasks}, B], got {tuple(preds_TB.shape)}")
        for name, tensor in (("labels_TB", labels_TB), ("weights_TB", weights_TB)):
            if tensor is not None and tensor.shape != preds_TB.shape:
                raise ValueError(f"{name} must have shape {tuple(preds_TB.shape)}, got {tuple(tensor.shape)}")
        if group_ids_B.shape != preds_TB.shape[1:]:
            raise ValueError(f"group_ids_B must have shape [{preds_TB.shape[1]}], got {tuple(group_ids_B.shape)}")
        if not is_integer_tensor(group_ids_B):
            raise ValueError(f"group_ids_B must be an integer tensor, got {group_ids_B.dtype}")
        if not preds_TB.is_floating_point():
            raise ValueError(f"preds must be a floating-point tensor, got {preds_TB.dtype}")
        checks = [
            (torch.isnan(preds_TB).any(dim=1), "predictions contain NaN"),
            (((preds_TB < 0) | (preds_TB > 1)).any(dim=1), f"predictions must be probabilities in [0, 1]{hint}"),
            (torch.isnan(labels_TB).any(dim=1), "labels contain NaN"),
            (((labels_TB != 0) & (labels_TB != 1)).any(dim=1), "labels must be 0 or 1"),
        ]
        if weights_TB is not None:
            checks.append(((~torch.isfinite(weights_TB) | (weights_TB < 0)).any(dim=1), "weights must be finite, >= 0"))
        for bad_T, message in checks:
            task = _first(bad_T)
            if task is not None:
                raise ValueError(f"task '{self._task_names[task]}': {message}")

    def update(
        self,
        preds_TB: torch.Tensor,
        labels_TB: torch.Tensor,
        weights_TB: torch.Tensor | None,
        group_ids_B: torch.Tensor,
    ) -> None:
        """Appends one batch (detached CPU copies).

        Args:
            preds_TB: ``[T, B]`` predicted probabilities in ``[0, 1]`` (use :meth:`update_logits` for logits).
            labels_TB: ``[T, B]`` labels, each 0 or 1.
            weights_TB: ``[T, B]`` finite non-negative example weights, or None for unit weights.
            group_ids_B: ``[B]`` integer group (user) ids for GAUC.

        Raises:
            ValueError: on wrong shapes or dtypes, or, naming the task, on NaN predictions or labels,
                predictions outside ``[0, 1]``, labels other than 0/1, or negative / non-finite weights.
        """
        self._append(preds_TB, labels_TB, weights_TB, group_ids_B, hint=" (pass logits to update_logits)")

    def update_logits(
        self,
        logits_TB: torch.Tensor,
        labels_TB: torch.Tensor,
        weights_TB: torch.Tensor | None,
        group_ids_B: torch.Tensor,
    ) -> None:
        """Like :meth:`update`, with logits: predictions are ``sigmoid(logits_TB)``.

        Args:
            logits_TB: ``[T, B]`` logits.
            labels_TB: ``[T, B]`` labels, each 0 or 1.
            weights_TB: ``[T, B]`` example weights, or None for unit weights.
            group_ids_B: ``[B]`` integer group ids.

        Raises:
            ValueError: as :meth:`update`.
        """
        if not logits_TB.is_floating_point():
            raise ValueError(f"logits must be a floating-point tensor, got {logits_TB.dtype}")
        self._append(torch.sigmoid(logits_TB.detach()), labels_TB, weights_TB, group_ids_B, hint="")

    def _append(
        self,
        preds_TB: torch.Tensor,
        labels_TB: torch.Tensor,
        weights_TB: torch.Tensor | None,
        group_ids_B: torch.Tensor,
        hint: str,
    ) -> None:
        preds_TB, labels_TB = preds_TB.detach(), labels_TB.detach()
        weights_TB = None if weights_TB is None else weights_TB.detach()
        self._validate(preds_TB, labels_TB, weights_TB, group_ids_B, hint)
        # float64 predictions are kept as they are: rounding them to float32 could create ties.
        pred_dtype = torch.float64 if preds_TB.dtype == torch.float64 else torch.float32
        # copy=True: .to() returns the caller's own tensor when it is already on the CPU with that dtype.
        self._preds.append(preds_TB.to("cpu", pred_dtype, copy=True))
        self._labels.append(labels_TB.to("cpu", torch.float32, copy=True))
        if weights_TB is None:
            self._weights.append(torch.ones(preds_TB.shape, dtype=torch.float32))
        else:
            self._weights.append(weights_TB.to("cpu", torch.float32, copy=True))
        self._groups.append(group_ids_B.detach().to("cpu", torch.int64, copy=True))

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        num_tasks = len(self._task_names)
        if not self._groups:
            empty_TN = torch.zeros(num_tasks, 0)
            return empty_TN, empty_TN, empty_TN, torch.zeros(0, dtype=torch.int64)
        return (
            torch.cat(self._preds, dim=1),
            torch.cat(self._labels, dim=1),
            torch.cat(self._weights, dim=1),
            torch.cat(self._groups),
        )

    def compute(self, process_group: dist.ProcessGroup | None = None) -> dict[str, TaskMetrics]:
        """Computes every task's metrics from the rows accumulated so far (the state is kept).

        Args:
            process_group: None to use this process's rows only (no communication); otherwise every rank of the
                group must call ``compute`` and all get the exact metrics of the union of their rows (pass
                ``torch.distributed.group.WORLD`` for the default group).

        Returns:
            ``{task_name: TaskMetrics}`` in task order.

        Raises:
            ValueError: if the split is empty (no rows on any rank).
        """
        preds_TN, labels_TN, weights_TN, groups_N = self._rows()
        num_tasks = len(self._task_names)
        num_rows = torch.tensor([groups_N.numel()], dtype=torch.int64)
        if process_group is not None:
            num_rows = all_reduce_sum(num_rows, process_group)  # every rank raises together on an empty split
        if int(num_rows.item()) == 0:
            raise ValueError("the evaluation split is empty: no rows were passed to update() on any rank")

        sums_T5 = torch.stack(
            [binary_sums(preds_TN[t], labels_TN[t], weights_TN[t]).to_tensor() for t in range(num_tasks)]
        )
        if process_group is None:
            auc_T = [auc(preds_TN[t], labels_TN[t], weights_TN[t]) for t in range(num_tasks)]
            gauc_sums_T4 = torch.stack(
                [
                    gauc_partial_sums(per_group_auc(preds_TN[t], labels_TN[t], groups_N, weights_TN[t]))
                    for t in range(num_tasks)
                ]
            ) if self.grouped else None
        else:
            sums_T5 = all_reduce_sum(sums_T5, process_group)
            # One task at a time, so a rank holds one task's global rows at most.
            auc_T = [distributed_auc(preds_TN[t], labels_TN[t], weights_TN[t], process_group) for t in range(num_tasks)]
            gauc_sums_T4 = (distributed_gauc_partial_sums(preds_TN, labels_TN, groups_N, weights_TN, process_group)
                            if self.grouped else None)

        results = {}
        for t, name in enumerate(self._task_names):
            pointwise = binary_metrics_from_sums(BinarySums.from_tensor(sums_T5[t]))
            gauc = gauc_uniform = num_groups = None
            if gauc_sums_T4 is not None:
                by_impressions = gauc_from_partial_sums(gauc_sums_T4[t], "impressions")
                uniform = gauc_from_partial_sums(gauc_sums_T4[t], "uniform")
                gauc, gauc_uniform = float(by_impressions.value), float(uniform.value)
                num_groups = int(by_impressions.num_groups)
            results[name] = TaskMetrics(
                auc=float(auc_T[t]),
                gauc=gauc,
                gauc_uniform=gauc_uniform,
                num_groups=num_groups,
                log_loss=float(pointwise.log_loss),
                ne=float(pointwise.ne),
                calibration=float(pointwise.calibration),
                positive_rate=float(pointwise.positive_rate),
                num_examples=int(pointwise.num_examples),
            )
        return results
