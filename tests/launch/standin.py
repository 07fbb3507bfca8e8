"""A stand-in for ``apps/train.py`` and ``apps/evaluate.py`` that exercises the launch plumbing only.

It accepts the apps' command-line contract strictly, records what it was started with (argv, the torchrun
environment, the working directory) as one JSON file per process, and can crash on purpose:

- ``STANDIN_RECORD_DIR``: where the records go (required).
- ``STANDIN_CRASH_RANK=N``: the process with global rank N SIGKILLs itself, once: a marker file in the record
  directory makes every later attempt run normally.
- ``STANDIN_SLEEP=S``: every process sleeps S seconds before finishing (keeps the group alive around a crash).
- ``STANDIN_ALLREDUCE=1``: join a gloo process group through torchrun's rendezvous and all-reduce the ranks.
- ``STANDIN_EXIT=C``: exit with status C after recording (a failing app).
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint")
    parser.add_argument("--split")
    parser.add_argument("--out")
    return parser.parse_args(argv)


def _allreduce_ranks() -> float:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        value = torch.tensor([float(dist.get_rank())])
        dist.all_reduce(value)
        return value.item()
    finally:
        dist.destroy_process_group()


def main() -> int:
    args = _parse(sys.argv[1:])
    record_dir = Path(os.environ["STANDIN_RECORD_DIR"])
    record_dir.mkdir(parents=True, exist_ok=True)
    env_keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                "TORCHELASTIC_RESTART_COUNT", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS"]
    record = {
        "argv": sys.argv[1:],
        "args": vars(args),
        "env": {key: os.environ.get(key) for key in env_keys},
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "pid": os.getpid(),
    }
    if os.environ.get("STANDIN_ALLREDUCE") == "1":
        record["allreduce_sum"] = _allreduce_ranks()
    rank = os.environ.get("RANK", "0")
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    (record_dir / f"rank{rank}-restart{restart}-pid{os.getpid()}.json").write_text(json.dumps(record, indent=1))

    marker = record_dir / "crashed"
    if os.environ.get("STANDIN_CRASH_RANK") == rank and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("STANDIN_SLEEP", "0")))
    return int(os.environ.get("STANDIN_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
