"""Real-data quality comparison: SMES against MMoE, PLE, SharedBottom and naive top-K on the KuaiRand subset.

``--paper`` runs the SMES paper's comparison instead: SMES, MMoE, PLE, MoME, HoME, RankMixer and sparse RankMixer
(MoME's stage 1 is the first fifth of the steps; MoME's and sparse RankMixer's auxiliary losses carry their own
lambda, so those runs set ``model.aux_loss_weight=1``). Every arch's parameters and inference FLOPs per instance
(``arch_cost``) are reported next to its quality.

The first, small comparison; ``benchmarks/study.py`` runs issue 14's full protocol (budget-matched baselines, both
data sets, LR grid, ablations, scaling, sensitivity); both share the run machinery in ``benchmarks/_runs.py``.

Every model trains from ``configs/kuairand_subset.yaml`` with only ``model.arch``, ``seed`` and ``output_dir``
changed: the same embeddings, bottom MLP, expert and tower widths, steps, batch size and optimizers; SMES and
naive top-K share E and K = K_s + K_a. Each (arch, seed) run is trained in this process, its final checkpoint
evaluated on the test split with apps/evaluate.py's code, and the runs are summarised as mean +- sample std over
seeds of per-task GAUC and AUC, experts executed per instance and training examples/s.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/quality.py --out runs/quality

Writes OUT/<arch>_s<seed>/ (checkpoint, TensorBoard, train.log, eval_test/ report), OUT/results.md,
OUT/results.json and OUT/quality.png. ``--reuse`` keeps finished runs of an earlier invocation (those with
eval_test/metrics.json) instead of refusing a non-empty OUT. Needs ../shared/data (the KuaiRand subset).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
import datetime
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from smes_rec.utils.logging import quiet_third_party

quiet_third_party()

import torch
from _runs import arch_overrides, load_finished, mean_std, pm, train_and_evaluate

from smes_rec.train.app import TrainConfig
from smes_rec.utils.config import apply_overrides, load_yaml

ARCHS = ("smes", "naive_topk", "mmoe", "ple", "shared_bottom")
PAPER = ("smes", "mmoe", "ple", "mome", "home", "rankmixer", "rankmixer_sparse")
ALL_ARCHS = (*ARCHS, "omoe", "home", "mome", "rankmixer", "rankmixer_sparse")
LABELS = {"smes": "SMES", "naive_topk": "naive top-K", "mmoe": "MMoE", "ple": "PLE", "shared_bottom": "SharedBottom",
          "omoe": "OMoE", "home": "HoME", "mome": "MoME", "rankmixer": "RankMixer",
          "rankmixer_sparse": "RankMixer (sparse MoE)"}


def _train_or_reuse(cfg: TrainConfig, split: str, name: str, reuse: bool) -> dict[str, Any]:
    """A run's record (as ``name``) with ``metrics`` the ``split`` evaluation; a finished run is reused."""
    record = load_finished(Path(cfg.output_dir), [split]) if reuse else None
    record = record or train_and_evaluate(cfg, [split], extra={"arch": name})
    return {**record, "metrics": record["metrics"][split]}


def summarise(records: Sequence[dict[str, Any]], archs: Sequence[str]) -> dict[str, Any]:
    """Per arch: mean and std over seeds of every task's GAUC/AUC, their means over tasks, |U|, examples/s."""
    tasks = list(records[0]["metrics"]["tasks"])
    out: dict[str, Any] = {"tasks": tasks, "archs": {}}
    for arch in archs:
        rs = [r for r in records if r["arch"] == arch]
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rs]}
        for metric in ("gauc", "auc"):
            per_task = {t: [r["metrics"]["tasks"][t][metric] for r in rs] for t in tasks}
            entry[metric] = {t: mean_std(v) for t, v in per_task.items()}
            entry[f"{metric}_values"] = per_task
            entry[f"mean_{metric}"] = mean_std([r["metrics"]["mean"][metric] for r in rs])
            entry[f"mean_{metric}_values"] = [r["metrics"]["mean"][metric] for r in rs]
        routing = [r["metrics"]["routing"] for r in rs]
        entry["unique"] = mean_std([x["mean_unique_experts"] for x in routing])
        entry["max_unique"] = max(x["max_unique_experts"] for x in routing)
        entry["bound"] = routing[0]["bound"]
        entry["num_experts"] = routing[0]["num_experts"]
        entry["load_cv"] = mean_std([x["expert_load_cv"] for x in routing])
        entry["examples_per_s"] = mean_std([r["examples_per_s"] for r in rs])
        entry["examples_per_s_values"] = [r["examples_per_s"] for r in rs]
        entry["train_seconds"] = mean_std([r["train_seconds"] for r in rs])
        entry["dense_params"] = rs[0]["dense_params"]
        entry["arch_flops"] = rs[0].get("arch_flops", math.nan)  # records of older runs lack the arch's cost
        entry["arch_active_params"] = rs[0].get("arch_active_params", math.nan)
        out["archs"][arch] = entry
    first = records[0]["metrics"]["tasks"]
    out["num_groups"] = {t: first[t]["num_groups"] for t in tasks}
    out["positives"] = {t: round(first[t]["positive_rate"] * first[t]["num_examples"]) for t in tasks}
    out["num_examples"] = first[tasks[0]]["num_examples"]
    return out


def results_markdown(summary: dict[str, Any], archs: Sequence[str], header: str) -> str:
    """The results tables (GAUC, AUC, routing and speed) as Markdown."""
    tasks = summary["tasks"]
    lines = [header, ""]
    for metric, name in (("gauc", "GAUC (impression-weighted, per user)"), ("auc", "AUC")):
        lines += [f"**Test {name}**, mean ± std over seeds", "",
                  "| model | " + " | ".join(tasks) + " | mean over tasks |", "|" + "---|" * (len(tasks) + 2)]
        for arch in archs:
            e = summary["archs"][arch]
            cells = [pm(e[f"{metric}_values"][t]) for t in tasks] + [pm(e[f"mean_{metric}_values"])]
            lines.append(f"| {LABELS.get(arch, arch)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Test positives per task (users with both classes, i.e. the users GAUC averages over): "
        + ", ".join(f"{t} {summary['positives'][t]} ({summary['num_groups'][t]})" for t in tasks)
        + f"; {summary['num_examples']} test rows.",
        "",
        "**Routing and speed**, mean ± std over seeds",
        "",
        "| model | experts in pool | experts run per instance (mean, max) | bound | expert load CV | dense params "
        "| arch active params | arch MFLOPs/instance | train examples/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in archs:
        e = summary["archs"][arch]
        unique, _ = e["unique"]
        bound = e["bound"]["max_unique"] if e["bound"]["sparse"] else f"{e['bound']['max_unique']} (dense)"
        lines.append(
            f"| {LABELS.get(arch, arch)} | {e['num_experts']} | {unique:.2f}, {e['max_unique']} | {bound} | "
            f"{e['load_cv'][0]:.3f} | {e['dense_params']:,} | {e['arch_active_params']:,.0f} | "
            f"{e['arch_flops'] / 1e6:.4f} | {pm(e['examples_per_s_values'], 0)} |"
        )
    return "\n".join(lines)


def quality_chart(path: Path, summary: dict[str, Any], archs: Sequence[str]) -> None:
    """GAUC per task (bars: mean over seeds, error bars: std) for every arch, and the mean over tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = summary["tasks"]
    labels = [*tasks, "mean"]
    x = np.arange(len(labels))
    width = 0.8 / len(archs)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    for i, arch in enumerate(archs):
        e = summary["archs"][arch]
        means = [e["gauc"][t][0] for t in tasks] + [e["mean_gauc"][0]]
        stds = [e["gauc"][t][1] for t in tasks] + [e["mean_gauc"][1]]
        offset = (i - (len(archs) - 1) / 2) * width
        ax.bar(x + offset, np.nan_to_num(means, nan=0.0), width, yerr=np.nan_to_num(stds, nan=0.0), capsize=2,
               label=LABELS.get(arch, arch))
        ax2.bar(i, e["unique"][0], color=f"C{i}")
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0)
    ax.set_xticks(x, labels, rotation=25, ha="right")
    ax.set_ylabel("test GAUC (mean ± std over seeds)")
    ax.set_title("KuaiRand-27K like/hate subset, test split")
    ax.legend(fontsize=8, ncol=len(archs), loc="upper left")
    ax2.set_xticks(range(len(archs)), [LABELS.get(a, a) for a in archs], rotation=25, ha="right")
    ax2.set_ylabel("experts run per instance (mean)")
    ax2.set_title("activated experts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/kuairand_subset.yaml", help="the shared training config")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ALL_ARCHS, help="models to compare")
    parser.add_argument("--paper", action="store_true",
                        help=f"the SMES paper's comparison: {' '.join(PAPER)} (replaces --archs)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (model init and data order)")
    parser.add_argument("--split", choices=["valid", "test"], default="test", help="split to report")
    parser.add_argument("--out", default="runs/quality", help="output folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override the shared config for every run, e.g. schedule.max_steps=200")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs already in OUT")
    args = parser.parse_args(argv)
    if args.paper:
        args.archs = list(PAPER)

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.reuse:
        print(f"quality.py: {out} is not empty; choose another --out or pass --reuse", file=sys.stderr)
        return 2
    base = load_yaml(TrainConfig, args.config, args.set)
    from smes_rec.data.schema import load_schema

    if base.data.schema != "synthetic":
        schema = load_schema(base.data.schema, base.data.data_root)
        if not Path(schema.data_root or ".").is_dir():
            print(f"quality.py: data folder {schema.data_root} not found (the KuaiRand subset lives in ../shared/data "
                  "relative to the repository root; set --set data.data_root=...)", file=sys.stderr)
            return 2
    # Same threads for every run; the data loader works in the main process (num_workers: 0 in the config).
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    records = []
    # Seed-major order: every arch's runs are spread over the whole session, so a busy period of a shared machine
    # does not land on one arch's throughput only.
    jobs = [(arch, seed) for seed in args.seeds for arch in args.archs]
    started = time.perf_counter()
    bar = tqdm(jobs, desc="quality", unit="run", dynamic_ncols=True)
    for arch, seed in bar:
        bar.set_postfix(run=f"{arch}/seed {seed}")
        cfg = apply_overrides(base, [*arch_overrides(arch, base.schedule.max_steps), f"seed={seed}",
                                     f"data.seed={seed}", f"output_dir={out / f'{arch}_s{seed}'}"])
        record = _train_or_reuse(cfg, args.split, arch, args.reuse)
        m = record["metrics"]["mean"]
        tqdm.write(f"{arch:>13} seed {seed}: mean GAUC {m['gauc']:.4f}, mean AUC {m['auc']:.4f}, "
                   f"experts/instance {record['metrics']['routing']['mean_unique_experts']:.2f}, "
                   f"{record['examples_per_s']:.0f} train examples/s")
        records.append(record)
    minutes = (time.perf_counter() - started) / 60

    summary = summarise(records, args.archs)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    machine = f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}, torch {torch.__version__}"
    header = (f"Measured {datetime.date.today().isoformat()} on {machine}; {len(jobs)} runs in {minutes:.1f} min. "
              f"Config `{args.config}`" + (f" with {' '.join('--set ' + s for s in args.set)}" if args.set else "")
              + f"; seeds {args.seeds}; {args.split} split.")
    text = results_markdown(summary, args.archs, header)
    (out / "results.md").write_text(text + "\n")
    runs = [{**{k: v for k, v in r.items() if k != "metrics"}, "tasks": r["metrics"]["tasks"],
             "mean_unique_experts": r["metrics"]["routing"]["mean_unique_experts"]} for r in records]
    (out / "results.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2, default=float))
    quality_chart(out / "quality.png", summary, args.archs)
    print(text)
    print(f"\nWrote {out / 'results.md'}, {out / 'results.json'}, {out / 'quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
