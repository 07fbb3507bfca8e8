"""The training loop: TrainPipelineSparseDist steps, validation, telemetry, NaN guard and checkpoints.

The loop is independent of where batches come from: it takes a :class:`DataSource`, so the same code trains on
the schema-driven pipeline, the synthetic data, or in-memory batches in tests.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import EvalPipelineSparseDist, TrainPipelineSparseDist
from tqdm import tqdm

from smes_rec.data.batch import Batch
from smes_rec.data.fitted import META_KEY as FITTED_KEY
from smes_rec.data.fitted import FittedTransform
from smes_rec.metrics import MultiTaskEvaluator, TaskMetrics
from smes_rec.models.factory import ModelConfig, build_ranker
from smes_rec.models.sparse import TableSpec
from smes_rec.train.checkpoint import CheckpointManager
from smes_rec.train.distributed import DistContext
from smes_rec.train.resume import SAFE_KEYS, ResumeMismatchError, resume_differences
from smes_rec.train.sharding import (
    EmbeddingOptimizer,
    ShardingName,
    apply_embedding_optimizer,
    make_dense_optimizer,
    shard_model,
)
from smes_rec.train.wrapper import StepOutput, TrainWrapper

__all__ = [
    "DataSource",
    "NonFiniteLossError",
    "OptimConfig",
    "ScheduleConfig",
    "Trainer",
    "synchronized",
]


class DataSource(Protocol):
    """Where the loop's batches come from, and the shape of the data the model is built for."""

    task_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    tables: tuple[TableSpec, ...]
    num_dense: int
    has_groups: bool  # False: no group column, so GAUC is not available

    def batches(self, split: str, epoch: int, skip: int) -> Iterator[Batch]:
        """This rank's batches of ``split`` in ``epoch``'s order, skipping the first ``skip`` of them."""
        ...


@dataclass(frozen=True)
class OptimConfig:
    """Optimizers.

    Attributes:
        embedding: Fused embedding optimizer (CPU supports rowwise_adagrad, adagrad and sgd).
        embedding_lr: Its learning rate.
        dense: Optimizer of every other parameter (and of data-parallel tables).
        dense_lr: Its learning rate.
    """

    embedding: EmbeddingOptimizer = "rowwise_adagrad"
    embedding_lr: float = 0.05
    dense: Literal["adam", "adagrad", "sgd"] = "adam"
    dense_lr: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("embedding_lr", "dense_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ScheduleConfig:
    """How long to train and how often to log, validate and checkpoint (all in optimizer steps).

    Attributes:
        max_steps: Total optimizer steps (set this or ``epochs``, not both).
        epochs: Train until this many passes over the train split are complete (set this or ``max_steps``).
        log_every: TensorBoard scalars and the progress bar's postfix.
        eval_every: Validate every this many steps (0: only at the end).
        eval_batches: Validation batches per rank (None: the whole split).
        checkpoint_every: Save every this many steps (0: only at the end).
        keep_last: Complete checkpoints to keep.
    """

    max_steps: int | None = None
    epochs: int | None = None
    log_every: int = 50
    eval_every: int = 0
    eval_batches: int | None = None
    checkpoint_every: int = 0
    keep_last: int = 3

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError(f"max_steps ({self.max_steps}) and epochs ({self.epochs}) are both set: set exactly one "
                             "(null the other, e.g. --set schedule.max_steps=null)")
        if self.max_steps is None and self.epochs is None:
            raise ValueError("neither max_steps nor epochs is set: set exactly one of them")
        if (self.max_steps is not None and self.max_steps < 1) or (self.epochs is not None and self.epochs < 1):
            raise ValueError(f"max_steps / epochs must be >= 1, got {self.max_steps} / {self.epochs}")
        if self.log_every < 1 or self.keep_last < 1:
            raise ValueError("log_every and keep_last must be >= 1")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("eval_every and checkpoint_every must be >= 0")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ValueError(f"eval_batches must be >= 1 or null, got {self.eval_batches}")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def synchronized(batches: Iterator[Batch], group: dist.ProcessGroup | None) -> Iterator[Batch]:
    """Stops every rank together when any rank runs out of batches (sharded embeddings need equal counts)."""
    for batch in itertools.chain(batches, [None]):
        has_batch = torch.tensor([0 if batch is None else 1])
        dist.all_reduce(has_batch, op=dist.ReduceOp.MIN, group=group)
        if not has_batch.item():
            return
        yield batch


def build_train_wrapper(model_cfg: ModelConfig, data: DataSource, embedding_device: str) -> TrainWrapper:
    """The ranker for ``data``'s shape wrapped with its losses (``loss_weights`` default to 1 per task).

    Args:
        model_cfg: The model.
        data: The data shape (tasks, tables, features).
        embedding_device: Where the embedding tables live: ``meta`` before sharding, ``cpu`` for unsharded use.
    """
    num_tasks = len(data.task_names)
    if model_cfg.loss_weights is not None and len(model_cfg.loss_weights) != num_tasks:
        raise ValueError(f"model.loss_weights has {len(model_cfg.loss_weights)} entries for {num_tasks} tasks")
    return TrainWrapper(
        build_ranker(model_cfg, data.tables, data.feature_names, data.num_dense, num_tasks, embedding_device,
                     task_names=data.task_names),
        model_cfg.loss_weights or [1.0] * num_tasks,
        model_cfg.aux_loss_weight,
    )


def _step_stats(out: StepOutput) -> torch.Tensor:
    """Everything a training step reports, in one host tensor (one device-to-host copy per step).

    Returns:
        ``[T + 4]``: the task losses, the aux loss, mean and max |U| over the batch, and the expert-load CV.
    """
    unique_B = out.num_unique_B.float()
    parts = [out.task_losses_T, out.aux_loss.view(1), unique_B.mean().view(1), unique_B.max().view(1),
             out.load_cv.view(1)]
    return torch.cat([p.float() for p in parts]).cpu()


@dataclass
class _Telemetry:
    """Running sums of per-step statistics between two logs (this rank's batches; rank 0 logs them)."""

    steps: int = 0
    examples: int = 0
    start: float = field(default_factory=time.perf_counter)
    task_losses: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    aux: float = 0.0
    unique_mean: float = 0.0
    unique_max: int = 0
    load_cv: float = 0.0

    def add(self, stats: torch.Tensor, examples: int) -> None:
        """Adds one step's :func:`_step_stats`."""
        T = stats.numel() - 4
        self.steps += 1
        self.examples += examples
        self.task_losses = self.task_losses + stats[:T]
        aux, unique_mean, unique_max, load_cv = stats[T:].tolist()
        self.aux += aux
        self.unique_mean += unique_mean
        self.unique_max = max(self.unique_max, int(unique_max))
        self.load_cv += load_cv


class Trainer:
    """Builds the sharded model and optimizers and runs training with periodic validation and checkpoints.

    Args:
        data: The batches and data shape.
        model_cfg: The model.
        optim: Optimizers.
        schedule: Steps, logging, validation, checkpoints.
        sharding: Embedding sharding type, or ``auto``.
        batch_size: Per-rank batch size (planner cost model).
        output_dir: Checkpoints in ``output_dir/checkpoints``, TensorBoard in ``output_dir/tensorboard``.
        ctx: This process's distributed context.
        config_record: The whole run configuration as plain data, saved in every checkpoint and compared with
            the saved one on a resume.
        progress: Show a tqdm bar on rank 0.
        steps_per_epoch: Batches per epoch, if known (the progress bar's total with ``schedule.epochs``).
        fitted: The feature transform fitted on the train split, saved in every checkpoint's ``meta.json`` (under
            ``smes_rec.data.fitted.META_KEY``) for evaluation and serving.
    """

    def __init__(
        self,
        data: DataSource,
        model_cfg: ModelConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        sharding: ShardingName,
        batch_size: int,
        output_dir: str | Path,
        ctx: DistContext,
        config_record: Mapping[str, Any] | None = None,
        progress: bool = True,
        steps_per_epoch: int | None = None,
        fitted: FittedTransform | None = None,
    ):
        self.data = data
        self.fitted = fitted
        self.schedule = schedule
        self.ctx = ctx
        self.output_dir = Path(output_dir)
        self.config_record = dict(config_record or {})
        self.progress = progress and ctx.rank == 0
        self.steps_per_epoch = steps_per_epoch
        wrapper = build_train_wrapper(model_cfg, data, "meta")
        apply_embedding_optimizer(wrapper, optim.embedding, optim.embedding_lr)
        self.model: DistributedModelParallel = shard_model(
            wrapper, data.tables, sharding, ctx.device, batch_size
        )
        self.optimizer = make_dense_optimizer(self.model, optim.dense, optim.dense_lr)
        # Materialise lazy optimizer state (a zero-gradient step: parameters do not move) so that every
        # checkpoint, even one at step 0, holds the same optimizer keys a restore expects.
        self.optimizer.init_state()
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", schedule.keep_last)
        # Loss checks run on a CPU (gloo) group whatever the training backend. Batch-count agreement gets a group
        # of its own: the eval pipeline fetches batches on a background thread, concurrently with the main
        # thread's collectives, and two threads must never share a group.
        self.cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        self.batch_group = dist.new_group(backend="gloo")
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
    def eval_outputs(self, split: str, max_batches: int | None = None) -> Iterator[StepOutput]:
        """This rank's step outputs over ``split`` through ``EvalPipelineSparseDist`` (model in eval mode, no grad).

        Every rank must iterate to the end: the pipeline and the batch-count agreement are collective. The model
        is back in train mode, and the pipeline detached, once the generator finishes or is closed.
        """
        self.model.eval()
        pipeline = EvalPipelineSparseDist(self.model, self.optimizer, self.ctx.device)
        batches = synchronized(itertools.islice(self.data.batches(split, 0, 0), max_batches), self.batch_group)
        try:
            with torch.no_grad():
                while True:
                    try:
                        out: StepOutput = pipeline.progress(batches)
                    except StopIteration:
                        return
                    yield out
        finally:
            pipeline.detach()
            self.model.train()

    def evaluate(self, split: str = "valid", max_batches: int | None = None) -> dict[str, TaskMetrics]:
        """Exact per-task metrics of ``split`` over all ranks (through the eval pipeline)."""
        evaluator = MultiTaskEvaluator(self.data.task_names, self.data.has_groups)
        for out in self.eval_outputs(split, max_batches):
            evaluator.update(out.probs_TB, out.labels_TB, out.weights_TB, out.group_ids_B)
        return evaluator.compute(self.cpu_group or dist.group.WORLD)  # exact over every rank's rows

    # ---------------------------------------------------------------- training
    def _check_finite(self, losses: torch.Tensor) -> torch.Tensor:
        """Averages task and aux losses over ranks; raises on every rank together if any is not finite.

        Args:
            losses: This rank's ``[T + 1]`` task losses and aux loss, on the host.

        Returns:
            ``[T + 1]`` rank-averaged task losses and aux loss (the aux loss unweighted).
        """
        losses = losses.clone()  # all_reduce works in place
        dist.all_reduce(losses, group=self.cpu_group)
        if not torch.isfinite(losses).all():
            names = [*self.data.task_names, "aux (load balance)"]
            bad = [f"{names[i]}={losses[i].item()}" for i in range(len(names)) if not math.isfinite(losses[i])]
            latest = self.checkpoints.latest()
            raise NonFiniteLossError(
                f"non-finite loss at step {self.step + 1}: {', '.join(bad)}. Training stopped; the last good "
                f"checkpoint is {latest if latest else 'none (no checkpoint was written yet)'}"
            )
        return losses / self.ctx.world_size

    def _log(self, writer: Any, tel: _Telemetry, bar: tqdm) -> None:
        if tel.steps == 0:
            return
        seconds = time.perf_counter() - tel.start
        scalars = {f"loss/{name}": float(v) / tel.steps for name, v in zip(self.data.task_names, tel.task_losses,
                                                                          strict=True)}
        scalars.update({
            "loss/aux_load_balance": tel.aux / tel.steps,
            "routing/mean_unique_experts": tel.unique_mean / tel.steps,
            "routing/max_unique_experts": tel.unique_max,
            "routing/expert_load_cv": tel.load_cv / tel.steps,
            "throughput/examples_per_s": tel.examples * self.ctx.world_size / max(seconds, 1e-9),
        })
        if writer is not None:
            for key, value in scalars.items():
                writer.add_scalar(key, value, self.step)
        mean_loss = float(tel.task_losses.sum()) / tel.steps
        bar.set_postfix(loss=f"{mean_loss:.4f}", experts=f"{scalars['routing/mean_unique_experts']:.2f}",
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
        if total is None and self.steps_per_epoch:
            total = self.steps_per_epoch * sched.epochs  # type: ignore[operator]
        writer = None
        if self.ctx.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=self.step or None)
        bar = tqdm(total=total, initial=self.step, desc="train", disable=not self.progress,
                   dynamic_ncols=True)
        pipeline = TrainPipelineSparseDist(self.model, self.optimizer, self.ctx.device, execute_all_batches=True)
        tel = _Telemetry()
        batches = synchronized(self.data.batches("train", self.epoch, self.position), self.batch_group)
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
                batches = synchronized(self.data.batches("train", self.epoch, 0), self.batch_group)
                continue
            stats = _step_stats(out)
            self.step_losses.append(float(self._check_finite(stats[: len(self.data.task_names) + 1]).sum()))
            self.step += 1
            self.position += 1
            tel.add(stats, out.labels_TB.size(1))
            self.examples_trained += out.labels_TB.size(1)
            bar.update(1)
            if self.step % sched.log_every == 0:
                self._log(writer, tel, bar)
                tel = _Telemetry()
            last = self.step == sched.max_steps  # (with epochs, the end shows only when the split runs out)
            if sched.eval_every and self.step % sched.eval_every == 0 and not last:
                pipeline.detach()
                self._record_eval(writer, self.evaluate("valid", sched.eval_batches))
                pipeline.attach(self.model)
            if sched.checkpoint_every and self.step % sched.checkpoint_every == 0 and not last:
                self.save()
        bar.close()
        pipeline.detach()
        metrics = self.evaluate("valid", sched.eval_batches)
        self._record_eval(writer, metrics)
        self.save()
        if writer is not None:
            writer.close()
        return metrics


def metrics_table(metrics: Mapping[str, TaskMetrics], columns: Sequence[str] = ("auc", "gauc", "log_loss")) -> str:
    """A Markdown table of per-task metrics; a metric that is not available (GAUC without groups) shows ``n/a``,
    explained under the table."""
    header = "| task | " + " | ".join(columns) + " | examples |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for task, m in metrics.items():
        values = " | ".join("n/a" if getattr(m, c) is None else f"{getattr(m, c):.4f}" for c in columns)
        lines.append(f"| {task} | {values} | {m.num_examples} |")
    if any(getattr(m, c) is None for m in metrics.values() for c in columns):
        lines.append("\nn/a: GAUC is not available: the data has no group column (`group:` in the schema)")
    return "\n".join(lines)
