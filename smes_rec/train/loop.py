"""The training loop: TrainPipelineSparseDist steps, periodic validation and checkpoints, the NaN guard, logs.

The loop is given a built model (``train/build.py``) and a :class:`~smes_rec.train.pipeline.DataSource`, so the
same code trains on the schema-driven pipeline, the synthetic data, or in-memory batches in tests.

The hot path holds no per-step host synchronisation: step losses stay on the device until the next log step
(or validation, checkpoint, end of training), where one all-reduce compares every rank's losses of the whole
interval, checks them for NaN/inf and names the first bad step; routing statistics are computed on log steps only.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from tqdm import tqdm

from smes_rec.data.fitted import META_KEY as FITTED_KEY
from smes_rec.data.fitted import FittedTransform
from smes_rec.metrics import MultiTaskEvaluator, TaskMetrics
from smes_rec.modules.routing import Routing, routing_stats
from smes_rec.train.build import TrainModel
from smes_rec.train.checkpoint import CheckpointManager
from smes_rec.train.config import ScheduleConfig
from smes_rec.train.distributed import DistContext
from smes_rec.train.pipeline import DataSource, agreed_batches, eval_outputs
from smes_rec.train.resume import SAFE_KEYS, ResumeMismatchError, resume_differences
from smes_rec.train.wrapper import StepOutput

__all__ = ["NonFiniteLossError", "Trainer"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class _Interval:
    """This rank's losses of the steps since the last check, left on the device (no per-step host copy).

    Attributes:
        first_step: The optimizer step before the interval's first step.
        task_losses: ``[T]`` per step.
        aux_losses: Scalar per step.
    """

    first_step: int
    task_losses: list[torch.Tensor] = field(default_factory=list)
    aux_losses: list[torch.Tensor] = field(default_factory=list)

    def add(self, out: StepOutput) -> None:
        self.task_losses.append(out.task_losses_T)
        self.aux_losses.append(out.aux_loss)

    def losses(self) -> torch.Tensor:
        """``[S, T + 1]`` float32: each step's task losses and aux loss."""
        return torch.cat([torch.stack(self.task_losses), torch.stack(self.aux_losses).unsqueeze(1)], dim=1).float()


@dataclass
class _Telemetry:
    """Running sums between two logs (this rank's batches; rank 0 logs them).

    Attributes:
        steps: Steps since the last log.
        examples: This rank's rows since the last log.
        start: When the interval started.
        loss_sums: ``[T + 1]`` this rank's task losses and aux loss summed over the checked steps.
    """

    steps: int = 0
    examples: int = 0
    start: float = field(default_factory=time.perf_counter)
    loss_sums: torch.Tensor = field(default_factory=lambda: torch.zeros(()))


class Trainer:
    """Runs training of a built model with periodic validation and checkpoints.

    Args:
        data: The batches and data shape.
        built: The sharded model and its optimizer (``train.build.build_for_training``).
        schedule: Steps, logging, validation, checkpoints.
        ctx: This process's distributed context.
        output_dir: Checkpoints in ``output_dir/checkpoints``, TensorBoard in ``output_dir/tensorboard``.
        config_record: The whole run configuration as plain data, saved in every checkpoint and compared with
            the saved one on a resume.
        progress: Show a tqdm bar on rank 0.
        fitted: The feature transform fitted on the train split, saved in every checkpoint's ``meta.json`` (under
            ``smes_rec.data.fitted.META_KEY``) for evaluation and serving.
    """

    def __init__(
        self,
        data: DataSource,
        built: TrainModel,
        *,
        schedule: ScheduleConfig,
        ctx: DistContext,
        output_dir: str | Path,
        config_record: Mapping[str, Any] | None = None,
        progress: bool = True,
        fitted: FittedTransform | None = None,
    ):
        self.data = data
        self.model, self.optimizer = built
        self.fitted = fitted
        self.schedule = schedule
        self.ctx = ctx
        self.output_dir = Path(output_dir)
        self.config_record = dict(config_record or {})
        self.progress = progress and ctx.rank == 0
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", schedule.keep_last)
        # Metrics reduce CPU tensors: under nccl they need a gloo group of their own.
        self.cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        self.step = 0
        self.epoch = 0
        self.position = 0  # batches of the current epoch already trained on
        self.history: list[dict[str, Any]] = []
        self.step_losses: list[float] = []  # global mean loss of every step of this process's run
        self.examples_trained = 0  # this rank's training rows in this process's run
        self.train_seconds = 0.0  # wall time of fit(), validation and checkpoints included

    # ---------------------------------------------------------------- checkpoints
    def _fingerprint(self) -> dict[str, Any]:
        return {
            "tasks": list(self.data.task_names),
            "features": list(self.data.feature_names),
            "tables": [[t.name, t.num_embeddings, t.dim, list(t.feature_names)] for t in self.data.tables],
            "num_dense": self.data.num_dense,
        }

    def _say(self, message: str) -> None:
        if self.ctx.rank == 0:
            print(f"smes-rec: {message}", file=sys.stderr, flush=True)

    def restore(self, path: str | Path | None = None, verify: bool | None = None) -> bool:
        """Restores the given checkpoint, or the newest intact one; returns False when there is none.

        Without ``path``, damaged or incomplete checkpoints newer than the newest intact one are skipped (rank 0
        says which step and why) and renamed ``step_<step>.damaged``. Before anything loads, the checkpoint's data
        fingerprint and run config are compared with this run's: every difference outside
        :data:`smes_rec.train.resume.SAFE_KEYS` is an error. A world-size change is allowed (said on rank 0):
        the weights reshard and the optimizer state restarts.

        Args:
            path: A checkpoint folder; without it, :meth:`CheckpointManager.resume_point` picks one.
            verify: Check the folder's manifest before loading; by default only a given ``path`` is checked
                (the resume point was verified when it was picked). Pass False for a path from ``resume_point``.

        Raises:
            ResumeMismatchError: Listing every differing key with the checkpoint's and the requested value.
            CheckpointDamagedError: ``path`` was given and is damaged (naming the file).
        """
        if verify is None:
            verify = path is not None
        if path is None:
            path = self.checkpoints.resume_point(self._say)
        if path is None:
            return False
        path = Path(path)
        saved = CheckpointManager.read_meta(path)
        diffs = []
        if self.config_record and isinstance(saved.get("config"), Mapping):
            diffs += resume_differences(saved["config"], self.config_record)
        diffs += resume_differences(saved.get("data_fingerprint") or {}, self._fingerprint(), "data_fingerprint.")
        if diffs:
            lines = "\n".join(f"  {d.key}: checkpoint {d.saved!r}, requested {d.requested!r}" for d in diffs)
            raise ResumeMismatchError(
                f"cannot resume from {path}: {len(diffs)} setting(s) differ from the checkpoint's run:\n{lines}\n"
                f"Resume with the checkpoint's values, or start a new run in another output_dir. A resume may "
                f"change only: {', '.join(k + '*' if k.endswith('.') else k for k in SAFE_KEYS)}"
            )
        if saved.get("world_size") != self.ctx.world_size:
            self._say(f"checkpoint {path.name} was saved by {saved.get('world_size')} process(es), this run has "
                      f"{self.ctx.world_size}: the weights reshard; optimizer state and RNG restart fresh")
        meta = self.checkpoints.load(path, self.model, self.optimizer, verify=verify)
        self.step, self.epoch, self.position = meta["step"], meta["epoch"], meta["position"]
        self.history = meta.get("history", [])
        return True

    def save(self) -> Path:
        """Writes a checkpoint of the current step."""
        meta = {
            "epoch": self.epoch,
            "position": self.position,
            "data_fingerprint": self._fingerprint(),
            "config": self.config_record,
            "history": self.history,
        }
        if self.fitted is not None:
            meta[FITTED_KEY] = self.fitted.to_dict()
        return self.checkpoints.save(self.step, self.model, self.optimizer, meta)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, split: str = "valid", max_batches: int | None = None) -> dict[str, TaskMetrics]:
        """Exact per-task metrics of ``split`` over all ranks, through ``EvalPipelineSparseDist`` (every rank calls).

        Args:
            split: The split.
            max_batches: Batches per rank (None: the whole split).
        """
        evaluator = MultiTaskEvaluator(self.data.task_names, self.data.has_groups)
        batches = agreed_batches(self.data, split, self.ctx.device, limit=max_batches)
        for out in eval_outputs(self.model, batches, self.ctx.device):
            evaluator.update(out.probs_TB, out.labels_TB, out.weights_TB, out.group_ids_B)
        return evaluator.compute(self.cpu_group or dist.group.WORLD)  # exact over every rank's rows

    # ---------------------------------------------------------------- training
    def _check_losses(self, interval: _Interval) -> torch.Tensor:
        """Averages the interval's losses over ranks (one all-reduce); raises on every rank together if any is
        not finite, naming the interval's first bad step.

        Args:
            interval: This rank's losses since the last check.

        Returns:
            ``[T + 1]`` this rank's task and aux losses summed over the interval's steps (zeros without steps).

        Raises:
            NonFiniteLossError: A rank-averaged task or aux loss of a step is NaN or infinite.
        """
        num_tasks = len(self.data.task_names)
        if not interval.task_losses:
            return torch.zeros(num_tasks + 1)
        local_SL = interval.losses()  # L = T + 1
        global_SL = local_SL.clone()
        dist.all_reduce(global_SL)
        local_SL, global_SL = torch.stack([local_SL, global_SL]).cpu().unbind(0)  # one device-to-host copy
        global_SL = global_SL / self.ctx.world_size
        finite_S = torch.isfinite(global_SL).all(dim=1)
        if not bool(finite_S.all()):
            first = int((~finite_S).nonzero()[0])
            losses_L = global_SL[first]
            names = [*self.data.task_names, "aux (load balance)"]
            bad = [f"{names[i]}={losses_L[i].item()}" for i in range(len(names)) if not math.isfinite(losses_L[i])]
            latest = self.checkpoints.latest()
            raise NonFiniteLossError(
                f"non-finite loss at step {interval.first_step + first + 1}: {', '.join(bad)}. Training stopped; the "
                f"last good checkpoint is {latest if latest else 'none (no checkpoint was written yet)'}"
            )
        self.step_losses.extend(global_SL.sum(dim=1).tolist())
        return local_SL.sum(dim=0)

    def _log(self, writer: Any, tel: _Telemetry, bar: tqdm, routing: Routing) -> None:
        """Rank 0: the interval's mean losses and throughput, and the routing statistics of the log step's batch."""
        if tel.steps == 0 or self.ctx.rank != 0:
            return
        seconds = time.perf_counter() - tel.start
        num_tasks = len(self.data.task_names)
        mean_L = (tel.loss_sums / tel.steps).tolist()
        stats = routing_stats(routing.ids_BTK, routing.probs_BTE.size(-1))
        unique_B = stats.num_unique_B.float()
        unique_mean, unique_max, load_cv = torch.stack([unique_B.mean(), unique_B.max(), stats.load_cv]).tolist()
        scalars = {f"loss/{name}": mean_L[t] for t, name in enumerate(self.data.task_names)}
        scalars.update({
            "loss/aux_load_balance": mean_L[num_tasks],
            "routing/mean_unique_experts": unique_mean,
            "routing/max_unique_experts": int(unique_max),
            "routing/expert_load_cv": load_cv,
            "throughput/examples_per_s": tel.examples * self.ctx.world_size / max(seconds, 1e-9),
        })
        if writer is not None:
            for key, value in scalars.items():
                writer.add_scalar(key, value, self.step)
        bar.set_postfix(loss=f"{sum(mean_L[:num_tasks]):.4f}", experts=f"{unique_mean:.2f}",
                        ex_s=f"{scalars['throughput/examples_per_s']:.0f}")

    def _record_eval(self, writer: Any, metrics: Mapping[str, TaskMetrics]) -> None:
        self.history.append({"step": self.step, "metrics": {k: v._asdict() for k, v in metrics.items()}})
        if writer is not None:
            for task, m in metrics.items():
                writer.add_scalar(f"valid_auc/{task}", m.auc, self.step)
                if m.gauc is not None:
                    writer.add_scalar(f"valid_gauc/{task}", m.gauc, self.step)

    def _done(self) -> bool:
        if self.schedule.max_steps is not None:
            return self.step >= self.schedule.max_steps
        return self.epoch >= self.schedule.epochs  # type: ignore[operator]

    def fit(self) -> dict[str, TaskMetrics]:
        """Trains to ``schedule.max_steps`` or the end of epoch ``schedule.epochs`` from the current state, then
        validates and checkpoints.

        Returns:
            The final validation metrics per task.

        Raises:
            NonFiniteLossError: A task or aux loss was NaN or infinite (on every rank together).
            ValueError: An epoch of the train split has no batch.
        """
        start = time.perf_counter()
        try:
            return self._fit()
        finally:
            self.train_seconds += time.perf_counter() - start


    def _fit(self) -> dict[str, TaskMetrics]:
        sched = self.schedule
        total = sched.max_steps
        if total is None:
            total = self.data.num_batches("train") * sched.epochs  # type: ignore[operator]
        writer = None
        if self.ctx.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=self.step or None)
        bar = tqdm(total=total, initial=self.step, desc="train", disable=not self.progress,
                   dynamic_ncols=True)
        pipeline = TrainPipelineSparseDist(self.model, self.optimizer, self.ctx.device, execute_all_batches=True)
        tel, interval = _Telemetry(), _Interval(self.step)
        batches = agreed_batches(self.data, "train", self.ctx.device, epoch=self.epoch, skip=self.position)
        self.model.train()
        while not self._done():
            try:
                out: StepOutput = pipeline.progress(batches)
            except StopIteration:  # end of an epoch: the next one starts from its first batch
                if self.position == 0:
                    raise ValueError(f"epoch {self.epoch} of the train split has no batch on some rank (fewer "
                                     "rows than batch_size x world size?)") from None
                self.epoch, self.position = self.epoch + 1, 0
                if self._done():
                    break
                batches = agreed_batches(self.data, "train", self.ctx.device, epoch=self.epoch)
                continue
            interval.add(out)
            self.step += 1
            self.position += 1
            tel.steps += 1
            tel.examples += out.labels_TB.size(1)
            self.examples_trained += out.labels_TB.size(1)
            bar.update(1)
            last = self.step == sched.max_steps  # (with epochs, the end shows only when the split runs out)
            log = self.step % sched.log_every == 0
            validate = bool(sched.eval_every) and self.step % sched.eval_every == 0 and not last
            save = bool(sched.checkpoint_every) and self.step % sched.checkpoint_every == 0 and not last
            if log or validate or save:  # never validate or save weights whose losses were not checked
                tel.loss_sums = tel.loss_sums + self._check_losses(interval)
                interval = _Interval(self.step)
            if log:
                self._log(writer, tel, bar, out.routing)
                tel = _Telemetry()
            if validate:
                pipeline.detach()
                self._record_eval(writer, self.evaluate("valid", sched.eval_batches))
                pipeline.attach(self.model)
            if save:
                self.save()
        self._check_losses(interval)
        bar.close()
        pipeline.detach()
        metrics = self.evaluate("valid", sched.eval_batches)
        self._record_eval(writer, metrics)
        self.save()
        if writer is not None:
            writer.close()
        return metrics
