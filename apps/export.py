"""Export a smes-rec checkpoint as a self-contained serving package (TorchScript, quantized embeddings).

    python apps/export.py --checkpoint runs/tiny --out runs/tiny/serving
    python apps/export.py --checkpoint runs/tiny/checkpoints/step_000000040 --out pkg_fp32 --embeddings fp32

The package (OUT/model.pt, example_inputs.pt, transform/, manifest.json) loads with `import torch, fbgemm_gpu`
alone: see docs/serving.md. A checkpoint saved at any world size exports the same way.
Exit status: 0 on success, 2 on a usage, config or data error.
"""

from __future__ import annotations

import argparse
import sys

from smes_rec.utils.logging import quiet_third_party

quiet_third_party()  # before torchrec is imported

from smes_rec.data.schema import DataError
from smes_rec.serving.export import EMBEDDING_DTYPES, export_checkpoint
from smes_rec.utils.cli import report_error
from smes_rec.utils.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint folder (step_XXXXXXXXX), or a checkpoints/ or output_dir folder (latest)")
    parser.add_argument("--out", required=True, help="the package folder to write")
    parser.add_argument("--embeddings", choices=sorted(EMBEDDING_DTYPES), default="int8",
                        help="embedding weights: int8 row-wise (default), fp16 or fp32")
    args = parser.parse_args(argv)
    try:
        manifest = export_checkpoint(args.checkpoint, args.out, args.embeddings)
    except (ConfigError, DataError, FileNotFoundError, FileExistsError, ValueError) as e:
        return report_error("export.py", e)
    size = sum(f["bytes"] for f in manifest["files"].values())
    check = manifest["export_check"]
    print(f"{manifest['model']['arch']} step {manifest['source']['step']} -> {args.out} ({args.embeddings} "
          f"embeddings, {len(manifest['files'])} files, {size / 1e6:.2f} MB); max |dp| vs the checkpoint on "
          f"{check['rows']} example rows: {check['max_abs_diff_vs_checkpoint']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
