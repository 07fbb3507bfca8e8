"""A tiny synthetic training run to evaluate, and helpers shared by the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from smes_rec.train.config import TrainConfig
from smes_rec.utils.config import apply_overrides, load_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = REPO_ROOT / "configs" / "tiny.yaml"
# configs/tiny.yaml, smaller: about 6k synthetic rows, a few steps, checkpoints at steps 4 and 8.
TINY_OVERRIDES = (
    "data.synthetic.num_rows=6000",
    "data.synthetic.num_users=200",
    "data.synthetic.num_items=1000",
    "data.synthetic.rows_per_file=3000",
    "data.batch_size=128",
    "data.block_rows=1024",
    "schedule.max_steps=8",
    "schedule.log_every=4",
    "schedule.eval_every=0",
    "schedule.eval_batches=2",
    "schedule.checkpoint_every=4",
    "device=cpu",
)


def tiny_config(output_dir: Path, cache_dir: Path, *overrides: str) -> TrainConfig:
    """The tiny run config writing to ``output_dir``, caching synthetic data in ``cache_dir``."""
    cfg = load_yaml(TrainConfig, TINY, TINY_OVERRIDES)
    return apply_overrides(cfg, [f"output_dir={output_dir}", f"data.cache_dir={cache_dir}", *overrides])


def train_in_process(cfg: TrainConfig) -> None:
    """Trains ``cfg`` in this process (one rank) and tears the process group down again."""
    from smes_rec.train.app import run

    try:
        run(cfg, progress=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
