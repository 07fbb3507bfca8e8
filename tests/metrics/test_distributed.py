"""One and two gloo ranks give the same AUC, GAUC and pointwise metrics when a group's rows span ranks; the
distributed functions equal the single-process ones; input errors are raised on every rank."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from smes_rec.metrics import MultiTaskEvaluator, TaskMetrics, distributed_auc, distributed_gauc, gauc

from .reference import random_ranking_data

TASKS = ("click", "like")
NUM_ROWS = 1200
WORLD_SIZE = 2


def _global_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global split: ``[T, N]`` preds, labels, weights and ``[N]`` groups, identical in every process."""
    rows = [random_ranking_data(NUM_ROWS, 80, seed=100 + t) for t in range(len(TASKS))]
    preds_TN, labels_TN, weights_TN = (torch.stack([r[i] for r in rows]) for i in range(3))
    return preds_TN, labels_TN, weights_TN, rows[0][3]


def _rank_of_row() -> torch.Tensor:
    """Rows are dealt to ranks at random, independently of their group, so most groups span both ranks."""
    return torch.randint(0, WORLD_SIZE, (NUM_ROWS,), generator=torch.Generator().manual_seed(7))


def _feed(evaluator: MultiTaskEvaluator, preds_TN, labels_TN, weights_TN, groups_N) -> None:
    """Updates in uneven batches, as an evaluation loop would."""
    for chunk in torch.arange(groups_N.numel()).tensor_split(3):
        evaluator.update(preds_TN[:, chunk], labels_TN[:, chunk], weights_TN[:, chunk], groups_N[chunk])


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        preds_TN, labels_TN, weights_TN, groups_N = _global_data()
        mine_N = _rank_of_row() == rank
        local = (preds_TN[:, mine_N], labels_TN[:, mine_N], weights_TN[:, mine_N], groups_N[mine_N])
        out: dict[str, object] = {}

        evaluator = MultiTaskEvaluator(TASKS)
        _feed(evaluator, *local)
        out["world2"] = dict(evaluator.compute(dist.group.WORLD))
        p, y, w, g = local[0][0], local[1][0], local[2][0], local[3]
        out["auc2"] = float(distributed_auc(p, y, w))
        for weighting in ("impressions", "uniform"):
            out[f"gauc2_{weighting}"] = tuple(float(v) for v in distributed_gauc(p, y, g, weighting, w))

        # World size 1 through a real one-rank process group (every rank must create it).
        solo = dist.new_group([0])
        if rank == 0:
            single = MultiTaskEvaluator(TASKS)
            _feed(single, preds_TN, labels_TN, weights_TN, groups_N)
            out["world1"] = dict(single.compute(solo))
            out["auc1"] = float(distributed_auc(preds_TN[0], labels_TN[0], weights_TN[0], solo))
            out["gauc1_impressions"] = tuple(
                float(v)
                for v in distributed_gauc(preds_TN[0], labels_TN[0], groups_N, "impressions", weights_TN[0], solo)
            )

        # Lopsided: rank 1 has no rows at all.
        lopsided = MultiTaskEvaluator(TASKS)
        if rank == 0:
            _feed(lopsided, preds_TN, labels_TN, weights_TN, groups_N)
        out["lopsided"] = dict(lopsided.compute(dist.group.WORLD))

        # Errors are raised on every rank together, so no rank waits forever in a collective.
        bad_p = p.clone()
        if rank == 0:
            bad_p[0] = float("nan")
        try:
            distributed_gauc(bad_p, y, g)
            out["bad_input"] = "no error"
        except ValueError as exc:
            out["bad_input"] = str(exc)
        try:
            MultiTaskEvaluator(TASKS).compute(dist.group.WORLD)
            out["empty"] = "no error"
        except ValueError as exc:
            out["empty"] = str(exc)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _assert_tasks_close(actual: dict, expected: dict, tol: float = 1e-6) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        for field, a, e in zip(TaskMetrics._fields, actual[name], expected[name], strict=True):
            if isinstance(e, float) and math.isnan(e):
                assert math.isnan(a), (name, field)
            else:
                assert a == pytest.approx(e, abs=tol), (name, field)


@pytest.fixture(scope="module")
def rank_outputs(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp: Path = tmp_path_factory.mktemp("gloo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # inherited by the spawned ranks
        mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]


def _reference() -> dict[str, TaskMetrics]:
    evaluator = MultiTaskEvaluator(TASKS)
    _feed(evaluator, *_global_data())
    return evaluator.compute()


def test_routing_matters_for_this_data() -> None:
    """Without routing by group owner, per-rank GAUCs would be wrong: the data really spreads groups."""
    preds_TN, labels_TN, weights_TN, groups_N = _global_data()
    rank_N = _rank_of_row()
    spanning = [gid for gid in torch.unique(groups_N).tolist() if rank_N[groups_N == gid].unique().numel() == 2]
    assert len(spanning) >= 20
    exact = gauc(preds_TN[0], labels_TN[0], groups_N, weights_N=weights_TN[0])
    naive_parts = [
        gauc(preds_TN[0, m], labels_TN[0, m], groups_N[m], weights_N=weights_TN[0, m])
        for m in (rank_N == 0, rank_N == 1)
    ]
    naive_groups = sum(int(r.num_groups) for r in naive_parts)
    naive_rows = sum(int(r.num_rows_used) for r in naive_parts)
    naive = sum(float(r.value) * int(r.num_rows_used) for r in naive_parts) / naive_rows
    # 100 times the tolerance the rank comparisons use, and the group count is visibly off.
    assert abs(naive - float(exact.value)) > 1e-4
    assert naive_groups != int(exact.num_groups)


@pytest.mark.dist
def test_two_ranks_equal_one_rank(rank_outputs: list[dict]) -> None:
    reference = _reference()
    assert all(m.num_groups > 10 for m in reference.values())
    rank0, rank1 = rank_outputs
    _assert_tasks_close(rank0["world1"], reference)
    _assert_tasks_close(rank0["world2"], reference)
    _assert_tasks_close(rank1["world2"], reference)
    _assert_tasks_close(rank0["lopsided"], reference)
    _assert_tasks_close(rank1["lopsided"], reference)


@pytest.mark.dist
def test_distributed_functions_equal_single_process(rank_outputs: list[dict]) -> None:
    reference = _reference()["click"]
    preds_TN, labels_TN, weights_TN, groups_N = _global_data()
    uniform = gauc(preds_TN[0], labels_TN[0], groups_N, "uniform", weights_TN[0])
    for out in rank_outputs:
        assert out["auc2"] == pytest.approx(reference.auc, abs=1e-6)
        assert out["gauc2_impressions"][0] == pytest.approx(reference.gauc, abs=1e-6)
        assert out["gauc2_impressions"][1] == reference.num_groups
        assert out["gauc2_uniform"][0] == pytest.approx(float(uniform.value), abs=1e-6)
        assert out["gauc2_uniform"][2] == int(uniform.num_rows_used)
    assert rank_outputs[0]["auc1"] == pytest.approx(reference.auc, abs=1e-6)
    assert rank_outputs[0]["gauc1_impressions"][0] == pytest.approx(reference.gauc, abs=1e-6)


@pytest.mark.dist
def test_errors_are_raised_on_every_rank(rank_outputs: list[dict]) -> None:
    assert "NaN" in rank_outputs[0]["bad_input"]
    assert "another rank" in rank_outputs[1]["bad_input"]
    for out in rank_outputs:
        assert "split is empty" in out["empty"]
