"""The SMES study (issue 14): comparison, ablations, scaling and sensitivity on real and synthetic data.

Protocol. Within a data set every model gets the same embeddings, shared bottom, towers, optimizers, steps, batch
size and data; only the arch differs. Budgets are matched with ``smes_rec.modules.cost.arch_cost``: MMoE with E0
experts of the shared expert widths sets the dense parameter budget (bottom + arch + towers); SMES-S and naive top-K
use the same E0 experts (same parameters); PLE, SharedBottom, HoME and MoME get the expert hidden width, RankMixer
(dense and sparse) the token width, whose dense parameters come closest to that budget; SMES-L has 4 x E0 experts
with the hidden width whose arch FLOPs per instance come closest to SMES-S's. One learning-rate grid (the dense
Adam LR) per model and data set is run with seed 0 and the LR with the best mean valid GAUC is kept; the other seeds
run at that LR only. A seed sets the initialisation and the training data order. Test per-task AUC and
impression-weighted GAUC are reported as mean ± sample std over seeds, and SMES-S against each baseline as a paired
bootstrap over test users (per-user AUCs averaged over seeds, users resampled with replacement) of the mean-over-
tasks GAUC difference, 95% interval. Ablations (K_s = 0, K_a = 0, beta = 0), scaling (SMES and MMoE at E in the
scaling list, same K) and sensitivity (SMES expert width x E) run on the heterogeneous synthetic set at SMES-S's
(MMoE's, for MMoE) chosen LR. p99 serving latency comes from ``--serving FILE`` (benchmarks/serving.py's JSON) when
given; otherwise the column says "not measured".

Usage (from the repository root; the KuaiRand subset in ../shared/data)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/study.py --out runs/study           # full preset
    .venv/bin/python benchmarks/study.py --quick --out runs/study_quick                   # CI smoke preset
    .venv/bin/python benchmarks/study.py --out runs/study --sections comparison --datasets kuairand --seeds 0
    .venv/bin/python benchmarks/study.py --out runs/study --docs     # also write docs/results.md + PNGs

Every run lives in OUT/runs/<data set>/<arch>-<hash>-s<seed>/ with its checkpoint, TensorBoard log, train.log,
eval_<split>/metrics.json, record.json and (test split of comparison runs) user_auc.npz; a finished run is reused,
so an interrupted invocation continues where it stopped (a half-trained run is restarted). OUT/results.md,
OUT/results.json and OUT/scaling.png are the report; ``--docs`` copies them to docs/results.md, docs/study_*.png.

Cost, measured 2026-11-30 on the 2-core CPU VM while about five other engineers' jobs shared it (load average 8-12):
a KuaiRand-subset run (420 steps of 512 plus a valid evaluation) took about 60 s (the 20-run LR grid with 10 test
evaluations: 19.5 min); on the synthetic set (1,200 steps of 512) SMES-S trained in 188 s, MMoE in 61 s, and one
evaluation of the 200k-row valid or test split took about 25 s. benchmarks/quality.py's 15 KuaiRand runs took 25 s
each on a quieter machine, so these loaded figures are about 2x an idle machine's. Hence the full preset: synthetic
runs train 800 steps and choose the LR on the first 200 valid batches (102k rows); extrapolated to an idle 2-core
machine: KuaiRand 40 runs x ~28 s (19 min) + synthetic comparison 20 grid runs x ~50 s (17 min) and 20 seed runs x
~65 s (22 min) + 10 test evaluations (3 min) + 6 new ablation runs (7 min) + scaling: 3 SMES runs (4 min) and MMoE at
E = 32, 64, 128 (about 2x, 4x, 8x MMoE-16's cost: 9 min) + 7 new sensitivity runs (8 min): about 90 minutes (expect
about twice that on a machine as busy as it was when this was measured).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
import datetime
import hashlib
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from smes_rec.utils.logging import quiet_third_party

quiet_third_party()

import numpy as np
import torch
from _runs import arch_overrides, load_finished, train_and_evaluate
from _study_report import build_report

from smes_rec.data.config import DataConfig
from smes_rec.evaluation.app import EvalConfig, evaluate_checkpoint
from smes_rec.metrics.auc import per_group_auc
from smes_rec.models.factory import build_ranker
from smes_rec.modules.cost import arch_cost
from smes_rec.train.app import TrainConfig
from smes_rec.train.checkpoint import CheckpointManager
from smes_rec.train.data import LoaderSource
from smes_rec.utils.config import apply_overrides, from_mapping, load_yaml, to_mapping

COMPARISON = ("smes_s", "smes_l", "naive_topk", "mmoe", "ple", "shared_bottom", "home", "mome", "rankmixer",
              "rankmixer_sparse")
LABELS = {"smes_s": "SMES-S", "smes_l": "SMES-L", "naive_topk": "naive top-K", "mmoe": "MMoE", "ple": "PLE",
          "shared_bottom": "SharedBottom", "home": "HoME", "mome": "MoME", "rankmixer": "RankMixer",
          "rankmixer_sparse": "RankMixer (sparse MoE)", "no_shared": "SMES, K_s = 0",
          "no_adaptive": "SMES, K_a = 0", "no_regulariser": "SMES, beta = 0"}
SECTIONS = ("comparison", "ablations", "scaling", "sensitivity")
DATASETS = ("kuairand", "synthetic")


@dataclass(frozen=True)
class Preset:
    """What one invocation runs.

    Attributes:
        datasets: ``kuairand`` and/or ``synthetic`` (ablations, scaling, sensitivity always use ``synthetic``).
        models: The comparison's models (keys of ``LABELS``).
        seeds: Seeds of the comparison and ablations (the first one also runs the LR grid, scaling, sensitivity).
        lrs: The dense-optimizer LR grid.
        steps: Training steps per data set.
        valid_batches: Valid batches the LR choice evaluates per data set (None: the whole split; its first
            batches otherwise, the same rows for every run).
        experts: E0, the experts of SMES-S, naive top-K, MMoE (and the budget); SMES-L has ``large_factor`` x E0.
        large_factor: SMES-L's experts per SMES-S expert.
        k_shared: K_s of every SMES model.
        k_adaptive: K_a of every SMES model.
        scaling_experts: E of the scaling section.
        widths: Expert hidden widths of the sensitivity section.
        sensitivity_experts: E of the sensitivity section.
        model: Shared model overrides (``model.*=...``) on top of the base config.
        kuairand: Data overrides of the KuaiRand runs.
        synthetic: Data overrides of the synthetic runs (on top of ``configs/data/synthetic_heterogeneous.yaml``).
        bootstrap: Bootstrap resamples.
    """

    datasets: tuple[str, ...] = DATASETS
    models: tuple[str, ...] = COMPARISON
    seeds: tuple[int, ...] = (0, 1, 2)
    lrs: tuple[float, ...] = (1e-3, 3e-3)
    steps: dict[str, int] = field(default_factory=lambda: {"kuairand": 420, "synthetic": 800})
    valid_batches: dict[str, int | None] = field(default_factory=lambda: {"kuairand": None, "synthetic": 200})
    experts: int = 16
    large_factor: int = 4
    k_shared: int = 2
    k_adaptive: int = 1
    scaling_experts: tuple[int, ...] = (16, 32, 64, 128)
    widths: tuple[int, ...] = (32, 64, 128)
    sensitivity_experts: tuple[int, ...] = (8, 16, 32)
    model: tuple[str, ...] = ()
    kuairand: tuple[str, ...] = ()
    synthetic: tuple[str, ...] = ()
    bootstrap: int = 2000


FULL = Preset()
QUICK = Preset(
    datasets=("synthetic",), models=("smes_s", "smes_l", "mmoe"), seeds=(0,), lrs=(1e-3, 3e-3),
    steps={"kuairand": 20, "synthetic": 24}, valid_batches={"kuairand": None, "synthetic": 3}, experts=4,
    large_factor=2, scaling_experts=(4, 8), widths=(16, 32), sensitivity_experts=(4, 8),
    model=("model.bottom_layers=[32]", "model.expert_layers=[16,8]", "model.tower_layers=[8]"),
    kuairand=("data.batch_size=256",),
    synthetic=("data.synthetic.num_rows=12000", "data.synthetic.num_users=300", "data.synthetic.num_items=800",
               "data.synthetic.rows_per_file=12000", "data.batch_size=256", "data.block_rows=4096"),
    bootstrap=200)


@dataclass(frozen=True)
class RunSpec:
    """One training run: a data set, a model (overrides of the base config), an LR and a seed."""

    dataset: str
    arch: str
    overrides: tuple[str, ...]
    lr: float
    seed: int

    def config(self, base: TrainConfig, out: Path | None = None) -> TrainConfig:
        """The run's training config (``output_dir`` under ``out``, or empty)."""
        cfg = apply_overrides(base, [*self.overrides, f"optim.dense_lr={self.lr}", f"seed={self.seed}",
                                     f"data.seed={self.seed}"])
        return replace(cfg, output_dir=str(out / "runs" / self.key(base)) if out else "")

    def key(self, base: TrainConfig) -> str:
        """``<data set>/<arch>-<digest of the whole config>-s<seed>``: one key per distinct configuration."""
        cfg = self.config(base)
        digest = hashlib.sha256(json.dumps(to_mapping(cfg), sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.dataset}/{self.arch}-{digest[:10]}-s{self.seed}"


# ------------------------------------------------------------------------------------------------ budgets and sizing
class Sizer:
    """Dense parameters and FLOPs per instance of a model config on one data set's features.

    Args:
        base: The data set's base training config.
    """

    def __init__(self, base: TrainConfig) -> None:
        data = LoaderSource(base.data)  # generates the synthetic data on first use
        self.tables, self.features = data.tables, data.feature_names
        self.num_dense, self.tasks = data.num_dense, data.task_names
        self.base = base
        self._costs: dict[tuple[str, ...], dict[str, float]] = {}  # deterministic (seeded), so computed once each

    def cost(self, overrides: Sequence[str]) -> dict[str, float]:
        """``dense_params`` (bottom + arch + towers), ``active_params`` and ``flops`` (per instance, inference)."""
        key = tuple(overrides)
        if key not in self._costs:
            self._costs[key] = self._measure(key)
        return self._costs[key]

    def _measure(self, overrides: Sequence[str]) -> dict[str, float]:
        cfg = apply_overrides(self.base, list(overrides)).model
        # A fixed initialisation: sparse archs' FLOPs follow their routing, and the sizes they choose (hence the
        # run keys) must be the same in every invocation.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            ranker = build_ranker(cfg, self.tables, self.features, self.num_dense, len(self.tasks), "meta",
                                  task_names=self.tasks)
            dense = ranker.dense_model
            arch = arch_cost(dense.arch, dense.bottom.out_features)
        # Bottom and towers are MLPs: 2 FLOPs per weight and instance.
        mlp_flops = 2 * sum(p.numel() for m in (dense.bottom, dense.towers) for p in m.parameters() if p.dim() > 1)
        shell = sum(p.numel() for m in (dense.bottom, dense.towers) for p in m.parameters())
        return {"dense_params": float(shell + arch.total_params), "active_params": float(shell + arch.active_params),
                "flops": float(arch.flops_per_instance + mlp_flops)}

    def fit(self, make: Callable[[int], list[str]], candidates: Sequence[int], metric: str, target: float) -> int:
        """The candidate (ascending; ``metric`` increasing in it) whose cost is closest to ``target`` (bisection)."""
        lo, hi = 0, len(candidates) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.cost(make(candidates[mid]))[metric] < target:
                lo = mid
            else:
                hi = mid
        return min((candidates[lo], candidates[hi]), key=lambda c: abs(self.cost(make(c))[metric] - target))


def comparison_models(preset: Preset, sizer: Sizer, steps: int) -> dict[str, list[str]]:
    """Model overrides of every comparison model, budget-matched on this data set."""
    h = list(sizer.base.model.expert_layers)[-1]
    smes = ["model.arch=smes", f"model.k_shared={preset.k_shared}", f"model.k_adaptive={preset.k_adaptive}"]
    e0 = f"model.num_experts={preset.experts}"
    models = {"smes_s": [*smes, e0], "naive_topk": [*arch_overrides("naive_topk", steps), e0,
                                                    f"model.k_shared={preset.k_shared}",
                                                    f"model.k_adaptive={preset.k_adaptive}"],
              "mmoe": [*arch_overrides("mmoe", steps), e0]}
    budget = sizer.cost(models["mmoe"])["dense_params"]
    widths = list(range(4, 4097, 4))
    for arch in ("ple", "shared_bottom", "home", "mome"):
        if arch not in preset.models:
            continue
        extra = [e0] if arch == "mome" else []

        def make(w: int, arch: str = arch, extra: list[str] = extra) -> list[str]:
            return [*arch_overrides(arch, steps), f"model.expert_layers=[{w},{h}]", *extra]

        models[arch] = make(sizer.fit(make, widths, "dense_params", budget))
    for name in ("rankmixer", "rankmixer_sparse"):
        if name not in preset.models:
            continue

        def make_rm(d: int, name: str = name) -> list[str]:
            return [*arch_overrides(name, steps), f"model.rankmixer_dim={d}"]

        models[name] = make_rm(sizer.fit(make_rm, list(range(8, 1025, 8)), "dense_params", budget))
    if "smes_l" in preset.models:
        flops = sizer.cost(models["smes_s"])["flops"]

        def make_l(w: int) -> list[str]:
            return [*smes, f"model.num_experts={preset.large_factor * preset.experts}",
                    f"model.expert_layers=[{w},{h}]"]

        models["smes_l"] = make_l(sizer.fit(make_l, widths, "flops", flops))
    return {m: models[m] for m in preset.models}


# ---------------------------------------------------------------------------------------------------------- running
def base_config(dataset: str, args: argparse.Namespace, preset: Preset) -> TrainConfig:
    """The shared config of one data set: the base config's model, optimizers and schedule, that data set's data."""
    base = load_yaml(TrainConfig, args.config, list(preset.model) + args.set)
    if dataset == "synthetic":
        data = load_yaml(DataConfig, args.synthetic_data)
        base = from_mapping(TrainConfig, {**to_mapping(base), "data": to_mapping(data)})
        extra = list(preset.synthetic)
    else:
        extra = list(preset.kuairand)
    steps = preset.steps[dataset]
    return apply_overrides(base, [*extra, f"schedule.max_steps={steps}", f"schedule.log_every={max(1, steps // 12)}",
                                  "schedule.eval_every=0", "schedule.checkpoint_every=0", "schedule.keep_last=1"])


def user_auc(run_dir: Path, split: str) -> None:
    """Reduces ``eval_<split>/predictions.parquet`` to per-user AUCs and impressions (``user_auc.npz``)."""
    import pyarrow.parquet as pq

    path = run_dir / f"eval_{split}" / "predictions.parquet"
    table = pq.read_table(path)
    tasks = [c[len("pred_"):] for c in table.column_names if c.startswith("pred_")]
    groups = torch.from_numpy(table.column("group_id").to_numpy().astype(np.int64))
    auc_TG, rows_TG, ids = [], [], None
    for t in tasks:
        def col(name: str) -> torch.Tensor:
            return torch.from_numpy(table.column(name).to_numpy().copy())

        g = per_group_auc(col(f"pred_{t}"), col(f"label_{t}"), groups, col(f"weight_{t}"))
        ids = g.group_ids_G.numpy()
        auc_TG.append(g.auc_G.numpy())
        rows_TG.append(g.num_rows_G.numpy())
    np.savez(run_dir / "user_auc.npz", tasks=np.array(tasks), group_ids=ids, auc_TG=np.stack(auc_TG),
             rows_TG=np.stack(rows_TG))
    path.unlink()  # large; the per-user AUCs are all the bootstrap needs


def ensure_run(spec: RunSpec, base: TrainConfig, out: Path, splits: Sequence[str], keep_users: bool,
               valid_batches: int | None) -> dict[str, Any]:
    """The run's record with metrics on ``splits``: reused when finished, else trained and/or evaluated."""
    cfg = spec.config(base, out)
    run_dir = Path(cfg.output_dir)
    if not (run_dir / "record.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)  # a half-trained run starts over
        train_and_evaluate(cfg, [], extra={"key": spec.key(base), "dataset": spec.dataset, "name": spec.arch,
                                           "overrides": list(spec.overrides), "lr": spec.lr,
                                           "valid_batches": valid_batches})
    for split in splits:
        if not (run_dir / f"eval_{split}" / "metrics.json").is_file():
            checkpoint = CheckpointManager(run_dir / "checkpoints").latest()
            evaluate_checkpoint(EvalConfig(checkpoint=str(checkpoint), split=split, out=str(run_dir / f"eval_{split}"),
                                           progress=False, predictions=keep_users and split == "test",
                                           max_batches=valid_batches if split == "valid" else None))
    if keep_users and not (run_dir / "user_auc.npz").is_file():
        if not (run_dir / "eval_test" / "predictions.parquet").is_file():
            shutil.rmtree(run_dir / "eval_test")
            checkpoint = CheckpointManager(run_dir / "checkpoints").latest()
            evaluate_checkpoint(EvalConfig(checkpoint=str(checkpoint), split="test", out=str(run_dir / "eval_test"),
                                           progress=False, predictions=True))
        user_auc(run_dir, "test")
    record = load_finished(run_dir, splits)
    assert record is not None, run_dir
    return record


def plan(preset: Preset, sections: Sequence[str]) -> int:
    """Run requests of an invocation (a configuration asked for twice counts twice), for the progress bar."""
    total = 0
    comparison_synthetic = "comparison" in sections and "synthetic" in preset.datasets
    if "comparison" in sections:
        total += len(preset.datasets) * len(preset.models) * (len(preset.lrs) + len(preset.seeds))
    if set(sections) - {"comparison"}:
        total += len({"smes_s", "mmoe"} - (set(preset.models) if comparison_synthetic else set())) * len(preset.lrs)
    second = 0
    if "ablations" in sections:
        second += 4 * len(preset.seeds)
    if "scaling" in sections:
        second += 2 * len(preset.scaling_experts)
    if "sensitivity" in sections:
        second += len(preset.widths) * len(preset.sensitivity_experts)
    return total + second


def serving_records(paths: Sequence[str], embeddings: str, threads: str, candidates: str) -> list[dict[str, Any]]:
    """p99 records ``{arch, num_experts, p99_ms}`` from benchmarks/serving.py ``--json`` files at one point.

    serving.py names its models ``smes``, ``mmoe_E<E>`` (same experts), ``mmoe_E'<E'>`` (equal-FLOP, not a study
    model: skipped) and ``naive_topk``, each followed by the embedding precision; E is the file's ``--experts``.

    Args:
        paths: serving.py JSON files.
        embeddings: Embedding precision of the reported point (``int8``, ``fp16``, ``fp32``).
        threads: Thread count of the reported point.
        candidates: Candidates per request of the reported point.

    Returns:
        One record per (arch, E) measured at that point.

    Raises:
        ValueError: A file is not serving.py output, or lacks the requested point.
    """
    records = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or "results" not in data or "experts" not in data.get("args", {}):
            raise ValueError(f"{path}: not a benchmarks/serving.py --json output")
        experts = int(data["args"]["experts"])
        found = 0
        for row in data["results"]:
            name, _, emb = row["model"].rpartition(" ")
            if emb != embeddings or row["threads"] != int(threads) or row["C"] != int(candidates):
                continue
            arch = "mmoe" if name == f"mmoe_E{experts}" else name
            if arch in ("smes", "mmoe", "naive_topk"):
                records.append({"arch": arch, "num_experts": experts, "p99_ms": float(row["p99_ms"])})
                found += 1
        if not found:
            raise ValueError(f"{path}: no {embeddings} measurement with {threads} thread(s) at C = {candidates}")
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/kuairand_subset.yaml",
                        help="base training config: model, optimizers and the KuaiRand data")
    parser.add_argument("--synthetic-data", default="configs/data/synthetic_heterogeneous.yaml",
                        help="the data section of the synthetic runs")
    parser.add_argument("--quick", action="store_true", help="tiny CI preset (synthetic only, 1 seed, few steps)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, help="comparison data sets (default: preset's)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: preset's)")
    parser.add_argument("--lrs", nargs="+", type=float, help="the dense LR grid (default: preset's)")
    parser.add_argument("--models", nargs="+", choices=COMPARISON, help="comparison models (default: preset's)")
    parser.add_argument("--steps", nargs=2, action="append", metavar=("DATASET", "STEPS"), default=[],
                        help="training steps of a data set (default: preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override the base config of every run")
    parser.add_argument("--serving", nargs="+", metavar="JSON",
                        help="benchmarks/serving.py --json outputs (one per E) with p99 latencies (optional)")
    parser.add_argument("--serving-point", nargs=3, default=["int8", "1", "512"],
                        metavar=("EMBEDDINGS", "THREADS", "C"),
                        help="which serving measurement the p99 column reports (default: int8 1 512)")
    parser.add_argument("--out", default="runs/study", help="output folder (runs and report)")
    parser.add_argument("--docs", action="store_true", help="also write docs/results.md and docs/study_*.png")
    args = parser.parse_args(argv)

    preset = QUICK if args.quick else FULL
    if args.datasets:
        preset = replace(preset, datasets=tuple(args.datasets))
    if args.seeds:
        preset = replace(preset, seeds=tuple(args.seeds))
    if args.lrs:
        preset = replace(preset, lrs=tuple(args.lrs))
    if args.models:
        preset = replace(preset, models=tuple(m for m in COMPARISON if m in args.models))
    for dataset, steps in args.steps:
        preset = replace(preset, steps={**preset.steps, dataset: int(steps)})
    sections = list(args.sections)
    needs = set(preset.datasets) if "comparison" in sections else set()
    if set(sections) - {"comparison"}:
        needs.add("synthetic")
    if "kuairand" in needs:
        from smes_rec.data.schema import load_schema

        kuairand = load_yaml(TrainConfig, args.config).data
        schema = load_schema(kuairand.schema, kuairand.data_root)
        if not Path(schema.data_root or ".").is_dir():
            print(f"study.py: KuaiRand data folder {schema.data_root} not found (../shared/data from the repository "
                  "root); pass --datasets synthetic", file=sys.stderr)
            return 2
    serving = serving_records(args.serving, *args.serving_point) if args.serving else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.perf_counter()

    bases = {d: base_config(d, args, preset) for d in sorted(needs)}
    sizers = {d: Sizer(bases[d]) for d in bases}
    models = {d: comparison_models(preset, sizers[d], preset.steps[d]) for d in sizers}
    bar = tqdm(total=plan(preset, sections), desc="study", unit="run", dynamic_ncols=True)
    done: dict[str, dict[str, Any]] = {}

    def go(spec: RunSpec, splits: Sequence[str], keep_users: bool = False) -> dict[str, Any]:
        key = spec.key(bases[spec.dataset])
        bar.set_postfix(run=key)
        cached = done.get(key)
        users = (out / "runs" / key / "user_auc.npz").is_file()
        if cached is None or not set(splits) <= set(cached["metrics"]) or (keep_users and not users):
            record = ensure_run(spec, bases[spec.dataset], out, splits, keep_users,
                                preset.valid_batches.get(spec.dataset))
            if cached is None:
                m = record["metrics"][splits[-1]]["mean"]
                tqdm.write(f"{key}: lr {spec.lr:g}, mean {splits[-1]} GAUC {m['gauc']:.4f}, AUC {m['auc']:.4f}, "
                           f"{record['examples_per_s']:.0f} train examples/s")
            done[key] = record
        bar.update(1)
        return done[key]

    # Phase 1: the LR grid with the first seed, chosen on valid.
    seed0 = preset.seeds[0]
    chosen: dict[str, dict[str, float]] = {d: {} for d in bases}
    grid: dict[str, dict[str, dict[float, float]]] = {d: {} for d in bases}
    comparison_sets = preset.datasets if "comparison" in sections else ()
    for dataset in comparison_sets:
        for name, overrides in models[dataset].items():
            scores = {}
            for lr in preset.lrs:
                record = go(RunSpec(dataset, name, tuple(overrides), lr, seed0), ["valid"])
                scores[lr] = record["metrics"]["valid"]["mean"]["gauc"]
            grid[dataset][name] = scores
            chosen[dataset][name] = max(preset.lrs, key=lambda lr: np.nan_to_num(scores[lr], nan=-1.0))
    # Sections on the synthetic set without a comparison there use SMES-S's / MMoE's LR grid too.
    for name in ("smes_s", "mmoe"):
        if "synthetic" in bases and name not in chosen["synthetic"] and set(sections) - {"comparison"}:
            scores = {lr: go(RunSpec("synthetic", name, tuple(models["synthetic"][name]), lr, seed0),
                             ["valid"])["metrics"]["valid"]["mean"]["gauc"] for lr in preset.lrs}
            grid["synthetic"][name] = scores
            chosen["synthetic"][name] = max(preset.lrs, key=lambda lr: np.nan_to_num(scores[lr], nan=-1.0))

    # Phase 2.
    results: dict[str, Any] = {"comparison": {}, "ablations": {}, "scaling": {}, "sensitivity": {}}
    for dataset in comparison_sets:
        results["comparison"][dataset] = {
            name: [go(RunSpec(dataset, name, tuple(o), chosen[dataset][name], s), ["valid", "test"], keep_users=True)
                   for s in preset.seeds]
            for name, o in models[dataset].items()}
    if "synthetic" in bases:
        smes_s, lr_s = models["synthetic"]["smes_s"], chosen["synthetic"]["smes_s"]
        h = list(bases["synthetic"].model.expert_layers)[-1]
        if "ablations" in sections:
            variants = {"smes_s": smes_s,
                        "no_shared": [*smes_s, "model.k_shared=0",
                                      f"model.k_adaptive={preset.k_shared + preset.k_adaptive}"],
                        "no_adaptive": [*smes_s, f"model.k_shared={preset.k_shared + preset.k_adaptive}",
                                        "model.k_adaptive=0"],
                        "no_regulariser": [*smes_s, "model.aux_loss_weight=0.0"]}
            results["ablations"] = {name: [go(RunSpec("synthetic", name, tuple(o), lr_s, s), ["valid", "test"])
                                           for s in preset.seeds] for name, o in variants.items()}
        if "scaling" in sections:
            lr_m = chosen["synthetic"]["mmoe"]
            results["scaling"] = {
                arch: {e: go(RunSpec("synthetic", key, tuple([*o, f"model.num_experts={e}"]), lr, seed0),
                             ["valid", "test"]) for e in preset.scaling_experts}
                for arch, key, o, lr in (("smes", "smes_s", smes_s, lr_s),
                                         ("mmoe", "mmoe", models["synthetic"]["mmoe"], lr_m))}
        if "sensitivity" in sections:
            results["sensitivity"] = {
                (w, e): go(RunSpec("synthetic", "smes_s", tuple([*smes_s, f"model.num_experts={e}",
                                                                 f"model.expert_layers=[{w},{h}]"]), lr_s, seed0),
                           ["valid", "test"])
                for w in preset.widths for e in preset.sensitivity_experts}
    bar.close()
    minutes = (time.perf_counter() - started) / 60

    # Costs of every configuration that ran (params, FLOPs), from the same sizer as the budgets.
    costs = {}
    for record in done.values():
        key = (record["dataset"], tuple(record["overrides"]))
        if key not in costs:
            costs[key] = sizers[record["dataset"]].cost(record["overrides"])
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    command = "python benchmarks/study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}, torch {torch.__version__}",
        "minutes": minutes, "command": command, "preset": "quick" if args.quick else "full",
        "sections": sections, "seeds": list(preset.seeds), "lrs": list(preset.lrs), "steps": preset.steps,
        "valid_batches": preset.valid_batches,
        "experts": preset.experts, "large_factor": preset.large_factor, "k_shared": preset.k_shared,
        "k_adaptive": preset.k_adaptive, "bootstrap": preset.bootstrap, "chosen_lr": chosen, "lr_grid": grid,
        "models": models,
        "serving": None if not args.serving else (", ".join(args.serving) + " at {} embeddings, {} thread(s), C = {}"
                                                  .format(*args.serving_point)),
        "partial": set(sections) != set(SECTIONS) or preset != FULL or bool(args.set),
        "base": {d: {"batch_size": b.data.batch_size, "bottom": list(b.model.bottom_layers),
                     "experts": list(b.model.expert_layers), "towers": list(b.model.tower_layers),
                     "optim": to_mapping(b.optim), "aux_loss_weight": b.model.aux_loss_weight,
                     "data": b.data.schema if d == "kuairand" else to_mapping(b.data.synthetic)}
                 for d, b in bases.items()},
    }
    report = build_report(results, costs, meta, out, serving)
    (out / "results.md").write_text(report.markdown)
    report.data["runs"] = [{"key": r["key"], "dataset": r["dataset"], "name": r["name"], "lr": r["lr"],
                            "seed": r["seed"], "examples_per_s": r["examples_per_s"],
                            "mean": {split: m["mean"] for split, m in r["metrics"].items()}} for r in done.values()]
    (out / "results.json").write_text(json.dumps(report.data, indent=1, default=float))
    if args.docs:
        docs = Path("docs")
        text = report.markdown
        for png in report.plots:
            shutil.copy(out / png, docs / f"study_{png}")
            text = text.replace(f"]({png})", f"](study_{png})")
        (docs / "results.md").write_text(text)
    print(report.markdown)
    print(f"\nWrote {out / 'results.md'}, {out / 'results.json'}" + ", docs/results.md" * args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
