"""What the offline metrics accept: the checks every metric function runs on its inputs, in one place.

Legend: N rows.

The checks read values on the host (``bool(...)``), which is intended for offline evaluation, not for use inside a
traced model.
"""

from __future__ import annotations

import torch

__all__ = ["check_auc_inputs", "check_labels_and_weights", "check_probability_inputs", "is_integer_tensor"]


def is_integer_tensor(tensor: torch.Tensor) -> bool:
    """True for integer dtypes; False for floating-point, complex and bool tensors (ids must be integers)."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def check_labels_and_weights(labels_N: torch.Tensor, weights_N: torch.Tensor | None) -> None:
    """Labels must be 0 or 1, weights (when given) finite and non-negative.

    Args:
        labels_N: ``[N]`` labels.
        weights_N: ``[N]`` example weights, or None.

    Raises:
        ValueError: on any other label (NaN and soft labels included) or on a negative or non-finite weight.
    """
    if not bool(((labels_N == 0) | (labels_N == 1)).all()):
        raise ValueError("labels_N must be 0 or 1 (NaN and soft labels are not supported)")
    if weights_N is not None and not bool((torch.isfinite(weights_N) & (weights_N >= 0)).all()):
        raise ValueError("weights_N must be finite and non-negative")


def check_auc_inputs(
    preds_N: torch.Tensor,
    labels_N: torch.Tensor,
    weights_N: torch.Tensor | None,
    groups_N: torch.Tensor | None = None,
) -> None:
    """Validates the inputs of the AUC functions (``smes_rec.metrics.auc``: auc, per_group_auc, gauc).

    Args:
        preds_N: ``[N]`` floating-point scores.
        labels_N: ``[N]`` labels.
        weights_N: ``[N]`` example weights, or None.
        groups_N: ``[N]`` group ids, or None.

    Raises:
        ValueError: on mismatched shapes, non-float scores, NaN scores, labels other than 0/1, negative or
            non-finite weights, or non-integer group ids.
    """
    tensors = {"preds_N": preds_N, "labels_N": labels_N}
    if weights_N is not None:
        tensors["weights_N"] = weights_N
    if groups_N is not None:
        tensors["groups_N"] = groups_N
    for name, tensor in tensors.items():
        if tensor.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    sizes = {name: tensor.numel() for name, tensor in tensors.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"inputs must have the same length, got {sizes}")
    if not preds_N.is_floating_point():
        raise ValueError(f"preds_N must be a floating-point tensor, got {preds_N.dtype}")
    if groups_N is not None and not is_integer_tensor(groups_N):
        raise ValueError(f"groups_N must be an integer tensor, got {groups_N.dtype}")
    if bool(torch.isnan(preds_N).any()):
        raise ValueError("preds_N contains NaN")
    check_labels_and_weights(labels_N, weights_N)


def check_probability_inputs(preds_N: torch.Tensor, labels_N: torch.Tensor, weights_N: torch.Tensor | None) -> None:
    """Validates the inputs of the pointwise metrics (``smes_rec.metrics.pointwise``).

    Args:
        preds_N: ``[N]`` predicted probabilities in ``[0, 1]``.
        labels_N: ``[N]`` labels.
        weights_N: ``[N]`` example weights, or None.

    Raises:
        ValueError: on mismatched shapes, predictions outside ``[0, 1]`` or NaN, labels other than 0/1, negative or
            non-finite weights.
    """
    shapes = [tuple(t.shape) for t in (preds_N, labels_N, weights_N) if t is not None]
    if len(shapes[0]) != 1 or len(set(shapes)) != 1:
        raise ValueError(f"preds_N, labels_N and weights_N must be 1-D with the same length, got {shapes}")
    if not bool(((preds_N >= 0) & (preds_N <= 1)).all()):
        raise ValueError("preds_N must be probabilities in [0, 1] (apply a sigmoid to logits); NaN is rejected")
    check_labels_and_weights(labels_N, weights_N)
