"""MultiTaskEvaluator: streaming accumulation equals the pure functions on all rows; errors name the task."""

from __future__ import annotations

import math

import pytest
import torch

from smes_rec.metrics import MultiTaskEvaluator, TaskMetrics, auc, binary_metrics, gauc

from .reference import random_ranking_data

TASKS = ("click", "like", "follow")


def _batches(seed: int, num_batches: int = 4, batch_size: int = 150):
    """Yields (preds_TB, labels_TB, weights_TB, group_ids_B); groups recur across batches."""
    for b in range(num_batches):
        rows = [random_ranking_data(batch_size, 25, seed=seed * 100 + b * 10 + t) for t in range(len(TASKS))]
        preds_TB = torch.stack([r[0] for r in rows]).clamp(0.0, 1.0)
        labels_TB = torch.stack([r[1] for r in rows])
        weights_TB = torch.stack([r[2] for r in rows])
        yield preds_TB, labels_TB, weights_TB, rows[0][3]


def _assert_metrics_equal(actual: TaskMetrics, expected: TaskMetrics, tol: float = 1e-9) -> None:
    for field, a, e in zip(TaskMetrics._fields, actual, expected, strict=True):
        if isinstance(e, float) and math.isnan(e):
            assert math.isnan(a), field
        else:
            assert a == pytest.approx(e, abs=tol), field


def test_fields_are_the_documented_ones() -> None:
    assert TaskMetrics._fields == (
        "auc",
        "gauc",
        "gauc_uniform",
        "num_groups",
        "log_loss",
        "ne",
        "calibration",
        "positive_rate",
        "num_examples",
    )


def test_streaming_equals_pure_functions_on_all_rows() -> None:
    evaluator = MultiTaskEvaluator(TASKS)
    batches = list(_batches(seed=1))
    for batch in batches:
        evaluator.update(*batch)
    assert evaluator.num_rows == 600
    preds_TN, labels_TN, weights_TN = (torch.cat([b[i] for b in batches], dim=1) for i in range(3))
    groups_N = torch.cat([b[3] for b in batches])
    result = evaluator.compute()
    assert list(result) == list(TASKS)
    for t, name in enumerate(TASKS):
        p, y, w = preds_TN[t], labels_TN[t], weights_TN[t]
        by_impressions = gauc(p, y, groups_N, "impressions", w)
        pointwise = binary_metrics(p, y, w)
        expected = TaskMetrics(
            auc=float(auc(p, y, w)),
            gauc=float(by_impressions.value),
            gauc_uniform=float(gauc(p, y, groups_N, "uniform", w).value),
            num_groups=int(by_impressions.num_groups),
            log_loss=float(pointwise.log_loss),
            ne=float(pointwise.ne),
            calibration=float(pointwise.calibration),
            positive_rate=float(pointwise.positive_rate),
            num_examples=int((w > 0).sum()),
        )
        _assert_metrics_equal(result[name], expected)
        assert result[name].num_groups > 0 and result[name].gauc != result[name].gauc_uniform
    # Tasks see different data, so a mix-up between tasks would show.
    assert result["click"].auc != result["like"].auc
    # compute keeps the state: a second call gives the same numbers.
    for name in TASKS:
        _assert_metrics_equal(evaluator.compute()[name], result[name], tol=0.0)


def test_update_logits_equals_update_with_sigmoid() -> None:
    gen = torch.Generator().manual_seed(2)
    logits_TB = torch.randn(3, 200, generator=gen) * 3
    labels_TB = (torch.rand(3, 200, generator=gen) < torch.sigmoid(logits_TB)).float()
    groups_B = torch.randint(0, 20, (200,), generator=gen)
    from_logits, from_probs = MultiTaskEvaluator(TASKS), MultiTaskEvaluator(TASKS)
    from_logits.update_logits(logits_TB, labels_TB, None, groups_B)
    from_probs.update(torch.sigmoid(logits_TB), labels_TB, torch.ones(3, 200), groups_B)
    a, b = from_logits.compute(), from_probs.compute()
    for name in TASKS:
        _assert_metrics_equal(a[name], b[name], tol=0.0)
        assert a[name].num_examples == 200


def test_stores_detached_cpu_copies() -> None:
    preds_TB = torch.full((3, 4), 0.5, requires_grad=True)
    labels_TB = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 3)
    groups_B = torch.tensor([1, 1, 2, 2])
    evaluator = MultiTaskEvaluator(TASKS)
    evaluator.update(preds_TB * 1.0, labels_TB, None, groups_B)
    with torch.no_grad():
        preds_TB.fill_(0.9)
    labels_TB.fill_(1.0)
    groups_B.fill_(7)
    result = evaluator.compute()["like"]
    assert result.auc == 0.5 and result.positive_rate == 0.5 and result.num_groups == 2


def test_reset_and_empty_split() -> None:
    evaluator = MultiTaskEvaluator(TASKS)
    with pytest.raises(ValueError, match="empty"):
        evaluator.compute()
    evaluator.update(*next(_batches(seed=3)))
    assert evaluator.compute()["click"].num_examples > 0
    evaluator.reset()
    assert evaluator.num_rows == 0
    with pytest.raises(ValueError, match="split is empty"):
        evaluator.compute()


def test_task_without_weight_reports_nan() -> None:
    preds_TB, labels_TB, weights_TB, groups_B = next(_batches(seed=4))
    weights_TB[1] = 0.0
    evaluator = MultiTaskEvaluator(TASKS)
    evaluator.update(preds_TB, labels_TB, weights_TB, groups_B)
    like = evaluator.compute()["like"]
    assert like.num_examples == 0 and like.num_groups == 0
    assert all(math.isnan(v) for v in (like.auc, like.gauc, like.gauc_uniform, like.log_loss, like.ne))


@pytest.mark.parametrize(
    ("tensor", "row", "value", "match"),
    [
        ("preds", 1, float("nan"), "task 'like': predictions contain NaN"),
        ("preds", 2, 1.5, "task 'follow': predictions must be probabilities .* update_logits"),
        ("labels", 0, float("nan"), "task 'click': labels contain NaN"),
        ("labels", 2, 0.5, "task 'follow': labels must be 0 or 1"),
        ("weights", 1, -1.0, "task 'like': weights"),
    ],
)
def test_bad_values_name_the_task(tensor: str, row: int, value: float, match: str) -> None:
    preds_TB, labels_TB, weights_TB, groups_B = next(_batches(seed=5))
    {"preds": preds_TB, "labels": labels_TB, "weights": weights_TB}[tensor][row, 17] = value
    evaluator = MultiTaskEvaluator(TASKS)
    with pytest.raises(ValueError, match=match):
        evaluator.update(preds_TB, labels_TB, weights_TB, groups_B)
    assert evaluator.num_rows == 0  # nothing from the bad batch was kept


def test_nan_logits_name_the_task() -> None:
    logits_TB = torch.zeros(3, 5)
    logits_TB[2, 0] = float("nan")
    with pytest.raises(ValueError, match="task 'follow': predictions contain NaN"):
        MultiTaskEvaluator(TASKS).update_logits(logits_TB, torch.zeros(3, 5), None, torch.arange(5))


def test_bad_shapes_and_names_raise() -> None:
    evaluator = MultiTaskEvaluator(TASKS)
    with pytest.raises(ValueError, match="T=3"):
        evaluator.update(torch.zeros(2, 4), torch.zeros(2, 4), None, torch.arange(4))
    with pytest.raises(ValueError, match="labels_TB"):
        evaluator.update(torch.zeros(3, 4), torch.zeros(3, 5), None, torch.arange(4))
    with pytest.raises(ValueError, match="group_ids_B"):
        evaluator.update(torch.zeros(3, 4), torch.zeros(3, 4), None, torch.arange(5))
    with pytest.raises(ValueError, match="integer"):
        evaluator.update(torch.zeros(3, 4), torch.zeros(3, 4), None, torch.zeros(4))
    with pytest.raises(ValueError, match="distinct"):
        MultiTaskEvaluator(["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        MultiTaskEvaluator([])


def test_without_groups_gauc_is_not_available_and_the_rest_is_unchanged() -> None:
    g = torch.Generator().manual_seed(5)
    preds = torch.rand(2, 300, generator=g)
    labels = (torch.rand(2, 300, generator=g) < 0.4).float()
    weights = torch.ones(2, 300)
    groups = torch.zeros(300, dtype=torch.long)
    with_groups, without = MultiTaskEvaluator(["a", "b"]), MultiTaskEvaluator(["a", "b"], grouped=False)
    for ev in (with_groups, without):
        ev.update(preds, labels, weights, groups)
    grouped, plain = with_groups.compute(), without.compute()
    for task in ("a", "b"):
        assert plain[task].gauc is None and plain[task].gauc_uniform is None and plain[task].num_groups is None
        assert grouped[task].gauc == pytest.approx(grouped[task].auc)  # one group: what used to be reported
        same = ("auc", "log_loss", "ne", "calibration", "positive_rate", "num_examples")
        assert [getattr(plain[task], f) for f in same] == [getattr(grouped[task], f) for f in same]
