"""Pointwise metrics against hand computations and torchrec's definitions."""

from __future__ import annotations

import math

import pytest
import torch

from smes_rec.metrics import binary_metrics, calibration, log_loss, normalized_entropy, positive_rate
from smes_rec.metrics.pointwise import BinarySums, binary_metrics_from_sums, binary_sums

PREDS = [0.9, 0.2, 0.6, 0.4, 0.7]
LABELS = [1.0, 0.0, 0.0, 1.0, 1.0]
WEIGHTS = [1.0, 2.0, 1.0, 0.5, 0.0]


def _hand(preds: list[float], labels: list[float], weights: list[float]) -> dict[str, float]:
    total = sum(weights)
    bce = [-(y * math.log(p) + (1 - y) * math.log(1 - p)) for p, y in zip(preds, labels, strict=True)]
    loss = sum(w * b for w, b in zip(weights, bce, strict=True)) / total
    rate = sum(w * y for w, y in zip(weights, labels, strict=True)) / total
    entropy = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    mean_pred = sum(w * p for w, p in zip(weights, preds, strict=True)) / total
    return {
        "log_loss": loss,
        "positive_rate": rate,
        "ne": loss / entropy,
        "calibration": mean_pred / rate,
        "num_examples": sum(1 for w in weights if w > 0),
    }


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_hand_computation(weighted: bool) -> None:
    weights = WEIGHTS if weighted else [1.0] * len(PREDS)
    expected = _hand(PREDS, LABELS, weights)
    # float64 inputs, so the tensors hold exactly the numbers the hand computation uses.
    preds_N, labels_N = torch.tensor(PREDS, dtype=torch.float64), torch.tensor(LABELS, dtype=torch.float64)
    result = binary_metrics(preds_N, labels_N, torch.tensor(weights, dtype=torch.float64) if weighted else None)
    assert float(result.log_loss) == pytest.approx(expected["log_loss"], rel=1e-12)
    assert float(result.positive_rate) == pytest.approx(expected["positive_rate"], rel=1e-12)
    assert float(result.ne) == pytest.approx(expected["ne"], rel=1e-12)
    assert float(result.calibration) == pytest.approx(expected["calibration"], rel=1e-12)
    assert int(result.num_examples) == expected["num_examples"]


def test_hand_numbers_unweighted() -> None:
    # Positive rate 3/5 and mean prediction 2.8/5, so calibration 2.8/3 (independent of the helper above).
    preds_N, labels_N = torch.tensor(PREDS), torch.tensor(LABELS)
    assert float(positive_rate(labels_N)) == pytest.approx(0.6)
    assert float(calibration(preds_N, labels_N)) == pytest.approx(2.8 / 3)
    bce = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.4) + math.log(0.7)) / 5
    assert float(log_loss(preds_N, labels_N)) == pytest.approx(bce)
    assert float(normalized_entropy(preds_N, labels_N)) == pytest.approx(
        bce / -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    )


def test_log_loss_matches_torch_bce() -> None:
    gen = torch.Generator().manual_seed(0)
    preds_N = torch.rand(1000, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    labels_N = (torch.rand(1000, generator=gen) < preds_N).double()
    weights_N = torch.rand(1000, generator=gen, dtype=torch.float64)
    expected = torch.nn.functional.binary_cross_entropy(preds_N, labels_N, weight=weights_N, reduction="sum")
    assert float(log_loss(preds_N, labels_N, weights_N)) == pytest.approx(float(expected / weights_N.sum()), rel=1e-10)


def test_agrees_with_torchrec_ne_and_calibration() -> None:
    from torchrec.metrics.calibration import compute_calibration, get_calibration_states
    from torchrec.metrics.ne import compute_ne, get_ne_states

    gen = torch.Generator().manual_seed(1)
    preds_N = torch.rand(2000, generator=gen, dtype=torch.float64)
    labels_N = (torch.rand(2000, generator=gen) < 0.3 + 0.4 * preds_N).double()
    weights_N = torch.rand(2000, generator=gen, dtype=torch.float64)
    states = get_ne_states(labels_N, preds_N, weights_N, eta=1e-12)
    torchrec_ne = compute_ne(
        states["cross_entropy_sum"],
        states["weighted_num_samples"],
        states["pos_labels"],
        states["neg_labels"],
        eta=1e-12,
    )
    cal = get_calibration_states(labels_N, preds_N, weights_N)
    torchrec_cal = compute_calibration(cal["calibration_num"], cal["calibration_denom"])
    result = binary_metrics(preds_N, labels_N, weights_N)
    assert float(result.ne) == pytest.approx(float(torchrec_ne), rel=1e-9)
    assert float(result.calibration) == pytest.approx(float(torchrec_cal), rel=1e-9)


def test_sums_round_trip_and_add_up() -> None:
    preds_N, labels_N, weights_N = torch.tensor(PREDS), torch.tensor(LABELS), torch.tensor(WEIGHTS)
    whole = binary_sums(preds_N, labels_N, weights_N).to_tensor()
    parts = (
        binary_sums(preds_N[:2], labels_N[:2], weights_N[:2]).to_tensor()
        + binary_sums(preds_N[2:], labels_N[2:], weights_N[2:]).to_tensor()
    )
    assert torch.allclose(whole, parts, rtol=1e-12)
    from_parts = [float(v) for v in binary_metrics_from_sums(BinarySums.from_tensor(parts))]
    assert from_parts == pytest.approx([float(v) for v in binary_metrics(preds_N, labels_N, weights_N)], rel=1e-12)


def test_undefined_cases_are_nan() -> None:
    preds_N = torch.tensor([0.3, 0.6])
    all_pos = binary_metrics(preds_N, torch.ones(2))
    assert math.isnan(float(all_pos.ne)) and float(all_pos.calibration) == pytest.approx(0.45)
    all_neg = binary_metrics(preds_N, torch.zeros(2))
    assert math.isnan(float(all_neg.ne)) and math.isnan(float(all_neg.calibration))
    assert float(all_neg.positive_rate) == 0.0 and math.isfinite(float(all_neg.log_loss))
    no_weight = binary_metrics(preds_N, torch.tensor([0.0, 1.0]), torch.zeros(2))
    assert int(no_weight.num_examples) == 0
    assert all(math.isnan(float(v)) for v in (no_weight.log_loss, no_weight.ne, no_weight.positive_rate))
    empty = binary_metrics(torch.zeros(0), torch.zeros(0))
    assert int(empty.num_examples) == 0 and math.isnan(float(empty.log_loss))


def test_saturated_predictions_are_clamped() -> None:
    result = binary_metrics(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert float(result.log_loss) == pytest.approx(-math.log(1e-12), rel=1e-6)


@pytest.mark.parametrize(
    ("preds", "labels", "weights", "match"),
    [
        ([0.5, 1.5], [0, 1], None, r"\[0, 1\]"),
        ([0.5, float("nan")], [0, 1], None, "NaN"),
        ([0.5, 0.5], [0, 0.5], None, "0 or 1"),
        ([0.5, 0.5], [0, 1], [1.0, -2.0], "non-negative"),
        ([0.5, 0.5], [0, 1, 1], None, "same length"),
    ],
)
def test_bad_inputs_raise(preds, labels, weights, match) -> None:
    with pytest.raises(ValueError, match=match):
        binary_metrics(torch.tensor(preds), torch.tensor(labels), None if weights is None else torch.tensor(weights))
