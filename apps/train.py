"""Train a multi-task ranker (SMES or a baseline) with TorchRec.

Runs as a plain process or under torchrun at any world size:

    python apps/train.py --config configs/smes_synthetic.yaml --set schedule.max_steps=500
    torchrun --nproc_per_node 2 apps/train.py --config configs/smes_synthetic.yaml

Exit status: 0 on success; 2 on a usage, config, data or output-folder error, a folder in use by another run, or
a resume that changes the run (the message says what); 3 when training stopped on a NaN or infinite loss (the last
good checkpoint stays intact).
"""

from __future__ import annotations

import argparse
import sys

from smes_rec.utils.logging import quiet_third_party

quiet_third_party()  # before torchrec is imported

from smes_rec.train.app import run
from smes_rec.train.config import TrainConfig
from smes_rec.train.loop import NonFiniteLossError
from smes_rec.utils.cli import EXIT_ERROR, closing_process_group, report_error
from smes_rec.utils.config import ConfigError, load_yaml
from smes_rec.utils.memory import keep_freed_memory

EXIT_NON_FINITE_LOSS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config YAML (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value (repeatable), e.g. --set model.num_experts=32")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest complete checkpoint in output_dir (fresh start if none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = load_yaml(TrainConfig, args.config, args.set)
    except ConfigError as e:
        print(f"train.py: config error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        with closing_process_group():
            run(cfg, resume=args.resume, progress=not args.no_progress)
    except NonFiniteLossError as e:
        print(file=sys.stderr)
        report_error("train.py", e, what="stopped")
        return EXIT_NON_FINITE_LOSS
    except (ValueError, FileExistsError) as e:
        return report_error("train.py", e)
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # a process-wide setting: the process, not main(), owns it (tests call main in-process)
    sys.exit(main())
