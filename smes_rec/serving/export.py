"""Quantize, script and package a trained ranker.

The route is the one verified on CPU (``docs/design.md`` §6): torchrec's inference quantization swaps the
EmbeddingBagCollection for its quantized counterpart (fbgemm table-batched embeddings), the plain-tensor
:class:`~smes_rec.serving.module.ServingModule` is traced with ``torchrec.fx.symbolic_trace`` (data-dependent helpers
such as the dispatch plan are fx leaves, so the sparse deduplicated execution is kept as is) and compiled with
``torch.jit.script``. The file loads with ``import torch, fbgemm_gpu`` alone.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import platform
import shutil
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torchrec.fx
from torchrec.inference.modules import quantize_inference_model

import smes_rec
from smes_rec.models.ranker import Ranker
from smes_rec.modules.smes import SMESArch
from smes_rec.serving.checkpoint import load_checkpoint
from smes_rec.serving.module import ServingModule
from smes_rec.serving.package import MANIFEST, MODEL_FILE, PACKAGE_FORMAT, file_digests
from smes_rec.serving.transform import save_transform
from smes_rec.utils.config import to_mapping
from smes_rec.utils.files import write_json

__all__ = ["EMBEDDING_DTYPES", "export_checkpoint", "quantize_ranker", "script_ranker"]

EMBEDDING_DTYPES = {"int8": torch.int8, "fp16": torch.float16, "fp32": torch.float32}


def quantize_ranker(ranker: Ranker, feature_names: Sequence[str], embeddings: str = "int8") -> ServingModule:
    """A copy of the ranker behind :class:`ServingModule`, its embeddings quantized by torchrec (eager, unscripted).

    SMES experts (naive top-K included) are stored output-major in the copy
    (:meth:`~smes_rec.modules.experts.GroupedMLP.store_output_major`): the same products, faster on CPU for the few
    rows per expert of a small request.

    Args:
        ranker: The unsharded ranker (left unchanged: a copy is quantized).
        feature_names: Sparse features in KJT key order.
        embeddings: Embedding weight type: ``int8`` (row-wise, the default), ``fp16`` or ``fp32``.

    Returns:
        The quantized module; its ``ranker`` still returns the full output (logits, auxiliary loss, routing).
    """
    if embeddings not in EMBEDDING_DTYPES:
        raise ValueError(f"embeddings must be one of {sorted(EMBEDDING_DTYPES)}, got {embeddings!r}")
    module = ServingModule(copy.deepcopy(ranker), feature_names).eval()
    for arch in module.modules():
        if isinstance(arch, SMESArch):  # sparse execution: few rows per expert run faster output-major
            arch.experts.store_output_major()
    quantized: ServingModule = quantize_inference_model(module, quantization_dtype=EMBEDDING_DTYPES[embeddings],
                                                        output_dtype=torch.float32)
    return quantized


def script_ranker(ranker: Ranker, feature_names: Sequence[str], embeddings: str = "int8") -> torch.jit.ScriptModule:
    """The TorchScript serving module of a ranker, with embeddings quantized by torchrec.

    Args:
        ranker: The unsharded ranker (left unchanged: a copy is quantized).
        feature_names: Sparse features in KJT key order.
        embeddings: Embedding weight type: ``int8`` (row-wise, the default), ``fp16`` or ``fp32``.

    Returns:
        The scripted module: ``(dense_BD, values_N, lengths_FB) -> probabilities [T, B]``.
    """
    graph_module = torchrec.fx.symbolic_trace(quantize_ranker(ranker, feature_names, embeddings))
    # Training-only outputs (aux loss, routing telemetry) have no users here: drop them from the serving graph.
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return torch.jit.script(graph_module)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "smes_rec": smes_rec.__version__, "torch": torch.__version__}
    for dist in ("torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, embeddings: str = "int8",
                      example_rows: int = 64) -> dict[str, Any]:
    """Writes a serving package for a checkpoint saved at any world size.

    Args:
        checkpoint: A checkpoint folder, ``checkpoints`` folder or run output folder (the latest checkpoint).
        out: The package folder (replaced if it is a package already; must not be another non-empty folder).
        embeddings: ``int8``, ``fp16`` or ``fp32`` embedding weights.
        example_rows: Rows of the example request (taken from the run's test split).

    Returns:
        The manifest.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise FileExistsError(f"--out {out} is a non-empty folder that is not a serving package")
    loaded = load_checkpoint(checkpoint)
    data, ranker = loaded.data, loaded.ranker
    scripted = script_ranker(ranker, data.feature_names, embeddings)

    batch = next(iter(data.batches("test", 0, 0)))
    example = _head(batch.dense_features, batch.sparse_features.values(), batch.sparse_features.lengths(),
                    len(data.feature_names), example_rows)
    with torch.no_grad():
        reference = ServingModule(ranker, data.feature_names).eval()(*example)
        scored = scripted(*example)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scripted.save(str(out / MODEL_FILE))
    torch.save(example, out / "example_inputs.pt")
    torch.save(scored, out / "example_outputs.pt")
    save_transform(loaded.transform, out / "transform")
    schema = loaded.transform.schema
    table_of = {name: t for t in data.tables for name in t.feature_names}
    manifest = {
        "format": PACKAGE_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": MODEL_FILE, "arch": loaded.config.model.arch, "config": to_mapping(loaded.config.model)},
        "embeddings": embeddings,
        "tasks": list(data.task_names),
        "features": {
            "sparse": [{"name": f.name, "table": table_of[f.name].name, "ids": f.ids,
                        "num_embeddings": table_of[f.name].num_embeddings, "dim": table_of[f.name].dim}
                       for f in schema.sparse],  # in KJT key order
            "dense": list(schema.dense_feature_names),
        },
        "inputs": [
            {"name": "dense_BD", "dtype": "float32", "shape": ["B", data.num_dense]},
            {"name": "values_N", "dtype": "int64", "shape": ["N"], "layout": "ids of every sparse feature, "
             "key-major: feature 0's ids of rows 0..B-1, then feature 1's, ..."},
            {"name": "lengths_FB", "dtype": "int32", "shape": [len(data.feature_names), "B"],
             "layout": "flattened: ids per (feature, row), key-major, summing to N"},
        ],
        "output": {"name": "probabilities_TB", "dtype": "float32", "shape": [len(data.task_names), "B"]},
        "transform": "transform/transform.json",
        "source": {"checkpoint": str(loaded.path), "step": loaded.meta.get("step"),
                   "world_size": loaded.meta.get("world_size")},
        "data": to_mapping(loaded.config.data),
        "export_check": {"rows": int(example[0].size(0)),
                         "max_abs_diff_vs_checkpoint": float((scored - reference).abs().max())},
        "versions": _versions(),
        "files": file_digests(out),
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def _head(dense_BD: torch.Tensor, values_N: torch.Tensor, lengths_FB: torch.Tensor, num_features: int,
          rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``rows`` rows of a request in the serving layout."""
    B = dense_BD.size(0)
    b = min(rows, B)
    lengths_F_B = lengths_FB.view(num_features, B)
    ends_F = lengths_F_B.sum(1).cumsum(0)
    starts_F = ends_F - lengths_F_B.sum(1)
    take_F = lengths_F_B[:, :b].sum(1)
    values = [values_N[int(s) : int(s) + int(n)] for s, n in zip(starts_F, take_F, strict=True)]
    return (dense_BD[:b].contiguous(), torch.cat(values).long() if values else values_N[:0].long(),
            lengths_F_B[:, :b].reshape(-1).int().contiguous())
