"""Parity of exported packages with their checkpoint on a split: max |dp| and per-task AUC / GAUC deltas.

Exports the checkpoint with fp32 and int8 (row-wise) embeddings, scores the split with each package and with the
checkpoint itself through ``apps/predict.py``'s code, and prints one row per task (figures for docs/serving.md).
For an arch with top-K routing it then shows where the quantized scores move: the share of rows whose routed experts
change when the embeddings are quantized (a discrete switch), and max |dp| on those rows against all others.

    .venv/bin/python benchmarks/serving_parity.py --checkpoint runs/kuairand_subset --split test
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from smes_rec.metrics.auc import auc, gauc
from smes_rec.serving.checkpoint import load_checkpoint
from smes_rec.serving.export import export_checkpoint, quantize_ranker
from smes_rec.serving.predict import PredictConfig, predict
from smes_rec.serving.scorer import load_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", choices=["valid", "test"], default="test")
    parser.add_argument("--embeddings", nargs="+", default=["fp32", "int8"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for emb in args.embeddings:
            export_checkpoint(args.checkpoint, tmp / emb, embeddings=emb)
        schema = load_scorer(tmp / args.embeddings[0]).transform.schema
        if not schema.group:
            raise SystemExit("the data schema has no group column: GAUC needs one")
        keep = tuple(dict.fromkeys([schema.group, *(t.column for t in schema.tasks)]))
        tables = {}
        for name, model in [("checkpoint", args.checkpoint), *((e, tmp / e) for e in args.embeddings)]:
            predict(PredictConfig(model=str(model), out=str(tmp / f"{name}.parquet"), split=args.split, keep=keep,
                                  progress=False))
            tables[name] = pq.read_table(tmp / f"{name}.parquet")
    ref = tables["checkpoint"]
    groups = torch.from_numpy(np.unique(ref.column(schema.group).to_numpy().astype(str), return_inverse=True)[1])
    print(f"\n{args.checkpoint}, {args.split} split, {ref.num_rows} rows, {len(np.unique(groups))} groups\n")
    head = " | ".join(f"{e} max\\|dp\\| | {e} dAUC | {e} dGAUC" for e in args.embeddings)
    print(f"| task | positives | AUC | GAUC | {head} |")
    print("|---|---|---|---|" + "---|" * (3 * len(args.embeddings)))
    for task in schema.tasks:
        labels = torch.from_numpy(ref.column(task.column).to_numpy().astype(np.float64).astype(np.float32))
        p_ref = torch.from_numpy(ref.column(f"p_{task.name}").to_numpy())
        a_ref, g_ref = float(auc(p_ref, labels)), float(gauc(p_ref, labels, groups).value)
        cells = []
        for e in args.embeddings:
            p = torch.from_numpy(tables[e].column(f"p_{task.name}").to_numpy())
            cells.append(f"{float((p - p_ref).abs().max()):.1e} | {float(auc(p, labels)) - a_ref:+.5f} | "
                         f"{float(gauc(p, labels, groups).value) - g_ref:+.5f}")
        print(f"| {task.name} | {int(labels.sum())} | {a_ref:.4f} | {g_ref:.4f} | {' | '.join(cells)} |")

    print("\n| embeddings | rows | rows whose routing changed | max\\|dp\\| on them | max\\|dp\\| on the others |")
    print("|---|---|---|---|---|")
    for e, (rows, changed, on, off) in routing_changes(args.checkpoint, args.split, args.embeddings).items():
        print(f"| {e} | {rows} | {changed} ({changed / rows:.2%}) | {on:.1e} | {off:.1e} |")


def routing_changes(checkpoint: str, split: str, embeddings: list[str]) -> dict[str, tuple[int, int, float, float]]:
    """Rows of the split whose routing differs between the checkpoint and each quantized copy, and max |dp|.

    One pass over the split: the checkpoint's outputs are computed once per batch and compared with every copy.

    Returns:
        Per embedding type, ``(rows, rows with a changed routing, max |dp| on those rows, max |dp| on the others)``.
    """
    loaded = load_checkpoint(checkpoint)
    copies = {e: quantize_ranker(loaded.ranker, loaded.data.feature_names, e).ranker for e in embeddings}
    changed: dict[str, list[torch.Tensor]] = {e: [] for e in embeddings}
    dp: dict[str, list[torch.Tensor]] = {e: [] for e in embeddings}
    with torch.no_grad():
        for batch in loaded.data.batches(split, 0, 0):
            real_B = (batch.weights > 0).any(dim=0)  # the last batch is padded with zero-weight rows
            ref = loaded.ranker(batch.dense_features, batch.sparse_features)
            for e, quantized in copies.items():
                out = quantized(batch.dense_features, batch.sparse_features)
                changed[e].append((ref.routing.ids_BTK != out.routing.ids_BTK).flatten(1).any(dim=1)[real_B])
                dp[e].append((ref.logits.sigmoid() - out.logits.sigmoid()).abs().amax(dim=0)[real_B])
    result = {}
    for e in embeddings:
        changed_R, dp_R = torch.cat(changed[e]), torch.cat(dp[e])
        on = float(dp_R[changed_R].max()) if changed_R.any() else 0.0
        off = float(dp_R[~changed_R].max()) if not changed_R.all() else 0.0
        result[e] = (changed_R.numel(), int(changed_R.sum()), on, off)
    return result


if __name__ == "__main__":
    main()
