"""Exact ids against hashing on the real KuaiRand subset: the same SMES run with the shipped (hashed) schema and
with every hashed categorical feature switched to ``ids: vocab`` (a vocabulary fitted on the train split).

Everything else is ``configs/kuairand_subset.yaml``: time split, model, steps, optimizers. Each (variant, seed) run
trains in this process and its final checkpoint is evaluated on the test split; the script prints per-task test AUC
and GAUC (means over seeds) side by side and writes every run's numbers to OUT/results.json. (How many values the
hashed schema merges: ``apps/prepare.py validate --schema configs/data/kuairand_subset.yaml``.)

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/exact_ids.py --out runs/exact_ids --seeds 0 1

Needs ../shared/data (the KuaiRand subset).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spin-waiting stalls 2 cores

import argparse
import json
import statistics
from pathlib import Path

import yaml

from smes_rec.utils.logging import quiet_third_party

quiet_third_party()

import torch.distributed as dist

from smes_rec.evaluation.app import EvalConfig, evaluate_checkpoint
from smes_rec.train.app import TrainConfig, run
from smes_rec.utils.config import apply_overrides, load_yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "kuairand_subset.yaml"


def vocab_schema(out: Path) -> Path:
    """The shipped KuaiRand subset schema with every hashed feature on ``ids: vocab``."""
    src = ROOT / "configs" / "data" / "kuairand_subset.yaml"
    schema = yaml.safe_load(src.read_text())
    schema["data_root"] = str((src.parent / schema["data_root"]).resolve())
    for f in schema["sparse"]:
        if "boundaries" not in f:
            f.pop("num_embeddings", None)
            f["ids"] = "vocab"
    path = out / "kuairand_subset_vocab.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    return path


def train_and_test(cfg: TrainConfig) -> dict[str, dict[str, float]]:
    """Trains ``cfg`` in this process and returns the test metrics of its final checkpoint."""
    try:
        run(cfg, progress=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    outcome = evaluate_checkpoint(EvalConfig(checkpoint=cfg.output_dir, split="test", progress=False))
    return {task: {"auc": m.auc, "gauc": m.gauc} for task, m in outcome.result.metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/exact_ids")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=None, help="override schedule.max_steps (tests use a few)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = {"hash": str(ROOT / "configs" / "data" / "kuairand_subset.yaml"), "vocab": str(vocab_schema(out))}
    results: dict[str, list[dict[str, dict[str, float]]]] = {v: [] for v in variants}
    for seed in args.seeds:
        for name, schema in variants.items():  # interleaved, so load changes hit both alike
            cfg = apply_overrides(load_yaml(TrainConfig, CONFIG), [
                f"data.schema={schema}", f"seed={seed}", f"output_dir={out / f'{name}_s{seed}'}",
                f"data.cache_dir={out / 'cache'}", *([f"schedule.max_steps={args.steps}"] if args.steps else [])])
            results[name].append(train_and_test(cfg))
            print(f"done: {name} seed {seed}", flush=True)
    tasks = list(results["hash"][0])
    print(f"\ntest split, SMES, mean over seeds {args.seeds}")
    print("| task | AUC hash | AUC vocab | GAUC hash | GAUC vocab |")
    print("|---|---:|---:|---:|---:|")
    means: dict[str, dict[str, float]] = {}
    for task in [*tasks, "mean"]:
        row = {}
        for name in variants:
            for metric in ("auc", "gauc"):
                if task == "mean":
                    row[f"{metric}_{name}"] = statistics.fmean(means[t][f"{metric}_{name}"] for t in tasks)
                else:
                    row[f"{metric}_{name}"] = statistics.fmean(r[task][metric] for r in results[name])
        means[task] = row
        print(f"| {task} | {row['auc_hash']:.4f} | {row['auc_vocab']:.4f} | {row['gauc_hash']:.4f} | "
              f"{row['gauc_vocab']:.4f} |")
    (out / "results.json").write_text(json.dumps({"seeds": args.seeds, "runs": results, "means": means}, indent=1))


if __name__ == "__main__":
    main()
