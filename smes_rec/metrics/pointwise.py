"""Per-task pointwise metrics: log loss, normalised entropy, calibration, positive rate, example count.

Legend: N rows.

All of them are ratios of five weighted sums (:class:`BinarySums`), so a distributed evaluation reduces the sums
and divides once, which is exact at any world size. With weights ``w`` (unit weights by default), predicted
probabilities ``p`` (clamped to ``[eps, 1 - eps]`` inside the logarithms) and 0/1 labels ``y``:

- ``log_loss = sum w * (-y ln p - (1 - y) ln(1 - p)) / sum w`` (natural log, i.e. the mean BCE);
- ``positive_rate = sum w * y / sum w``;
- ``ne = log_loss / H(positive_rate)`` with ``H(q) = -q ln q - (1 - q) ln(1 - q)``: the Facebook / torchrec
  normalised entropy (its ratio does not depend on the log base). NaN when the positive rate is 0 or 1;
- ``calibration = sum w * p / sum w * y`` (mean prediction over mean label); NaN when there is no positive;
- ``num_examples``: rows with a positive weight.

When no row has a positive weight every metric is NaN and ``num_examples`` is 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from smes_rec.metrics.inputs import check_probability_inputs

DEFAULT_EPS = 1e-12  # torchrec's default eta: keeps log(0) finite for saturated predictions.


class BinarySums(NamedTuple):
    """Additive (all-reducible) statistics of one task; all 0-dim float64 tensors.

    Attributes:
        num_examples: number of rows with a positive weight.
        weight: sum of w.
        weighted_labels: sum of w * y.
        weighted_preds: sum of w * p.
        weighted_log_loss: sum of w * BCE(p, y), natural log.
    """

    num_examples: torch.Tensor
    weight: torch.Tensor
    weighted_labels: torch.Tensor
    weighted_preds: torch.Tensor
    weighted_log_loss: torch.Tensor

    def to_tensor(self) -> torch.Tensor:
        """Returns the sums stacked into one ``[5]`` float64 tensor (for a single all-reduce)."""
        return torch.stack(list(self))

    @classmethod
    def from_tensor(cls, sums_5: torch.Tensor) -> BinarySums:
        """Inverse of :meth:`to_tensor`."""
        return cls(*sums_5.unbind(0))


class BinaryMetrics(NamedTuple):
    """The pointwise metrics of one task (0-dim float64 tensors except the int64 ``num_examples``)."""

    log_loss: torch.Tensor
    ne: torch.Tensor
    calibration: torch.Tensor
    positive_rate: torch.Tensor
    num_examples: torch.Tensor


def binary_sums(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    weights_N: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
) -> BinarySums:
    """Computes the additive statistics behind every pointwise metric.

    Args:
        preds_N: ``[N]`` predicted probabilities in ``[0, 1]``.
        labels_N: ``[N]`` labels, each 0 or 1.
        weights_N: ``[N]`` finite non-negative example weights, or None for unit weights.
        eps: probabilities are clamped to ``[eps, 1 - eps]`` inside the logarithms.

    Returns:
        The :class:`BinarySums` of the rows.

    Raises:
        ValueError: on shape mismatch, probabilities outside ``[0, 1]`` or NaN, non-binary labels, or
            negative / non-finite weights.
    """
    check_probability_inputs(preds_N, labels_N, weights_N)
    p_N = preds_N.to(torch.float64)
    y_N = labels_N.to(torch.float64)
    w_N = torch.ones_like(p_N) if weights_N is None else weights_N.to(torch.float64)
    p_clamped_N = p_N.clamp(eps, 1.0 - eps)
    bce_N = -(y_N * torch.log(p_clamped_N) + (1.0 - y_N) * torch.log1p(-p_clamped_N))
    return BinarySums(
        num_examples=(w_N > 0).sum().to(torch.float64),
        weight=w_N.sum(),
        weighted_labels=(w_N * y_N).sum(),
        weighted_preds=(w_N * p_N).sum(),
        weighted_log_loss=(w_N * bce_N).sum(),
    )


def _safe_div(num: torch.Tensor, den: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``ok``, NaN elsewhere (no division by zero is evaluated)."""
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, float("nan")))


def binary_metrics_from_sums(sums: BinarySums) -> BinaryMetrics:
    """Turns (possibly all-reduced) :class:`BinarySums` into metrics; see the module docstring for definitions.

    Args:
        sums: the statistics of one task.

    Returns:
        The :class:`BinaryMetrics`.
    """
    has_weight = sums.weight > 0
    log_loss = _safe_div(sums.weighted_log_loss, sums.weight, has_weight)
    positive_rate = _safe_div(sums.weighted_labels, sums.weight, has_weight)
    both_classes = has_weight & (positive_rate > 0) & (positive_rate < 1)
    q = torch.where(both_classes, positive_rate, torch.full_like(positive_rate, 0.5))
    base_entropy = -(q * torch.log(q) + (1.0 - q) * torch.log1p(-q))
    ne = _safe_div(log_loss, base_entropy, both_classes)
    calibration = _safe_div(sums.weighted_preds, sums.weighted_labels, sums.weighted_labels > 0)
    return BinaryMetrics(
        log_loss=log_loss,
        ne=ne,
        calibration=calibration,
        positive_rate=positive_rate,
        num_examples=sums.num_examples.round().long(),
    )


def binary_metrics(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    weights_N: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
) -> BinaryMetrics:
    """All pointwise metrics of one task at once.

    Args:
        preds_N: ``[N]`` predicted probabilities in ``[0, 1]``.
        labels_N: ``[N]`` labels, each 0 or 1.
        weights_N: ``[N]`` finite non-negative example weights, or None for unit weights.
        eps: clamp for the logarithms.

    Returns:
        The :class:`BinaryMetrics`.

    Raises:
        ValueError: as :func:`binary_sums`.
    """
    return binary_metrics_from_sums(binary_sums(preds_N, labels_N, weights_N, eps))


def log_loss(
    preds_N: torch.Tensor, labels_N: torch.Tensor, weights_N: torch.Tensor | None = None, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Weighted mean binary cross-entropy in nats (0-dim float64); see :func:`binary_metrics`."""
    return binary_metrics(preds_N, labels_N, weights_N, eps).log_loss


def normalized_entropy(
    preds_N: torch.Tensor, labels_N: torch.Tensor, weights_N: torch.Tensor | None = None, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Log loss divided by the entropy of the base rate (0-dim float64); see :func:`binary_metrics`."""
    return binary_metrics(preds_N, labels_N, weights_N, eps).ne


def calibration(preds_N: torch.Tensor, labels_N: torch.Tensor, weights_N: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean prediction over weighted mean label (0-dim float64); see :func:`binary_metrics`."""
    return binary_metrics(preds_N, labels_N, weights_N).calibration


def positive_rate(labels_N: torch.Tensor, weights_N: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted fraction of positive labels (0-dim float64; NaN when no row has weight); see :func:`binary_metrics`."""
    return binary_metrics(torch.zeros_like(labels_N, dtype=torch.float64), labels_N, weights_N).positive_rate
