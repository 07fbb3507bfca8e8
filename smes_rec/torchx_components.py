"""TorchX components for smes-rec: ``train`` and ``evaluate``, built on torchx's ``dist.ddp``.

From a checkout::

    torchx run -s local_cwd torchx/components.py:train --config configs/tiny.yaml -j 1x2

With the package installed (entry point ``torchx.components``), the same components are ``smes.train`` and
``smes.evaluate``. docs/torchx.md has the commands for one host, many GPUs and Kubernetes.

Each component wraps ``torchrun`` (through ``dist.ddp``) around an app script and passes the app's arguments
through unchanged. ``max_retries`` becomes both torchrun's ``--max_restarts`` (a failed worker restarts the
worker group in place, on every scheduler) and the scheduler's job retries (Kubernetes/Volcano restarts the whole
job when a pod fails or is evicted); ``train`` always passes ``--resume``, so every restart continues from the
latest complete checkpoint.

Argument errors raise ``ComponentValidationException``, which the torchx CLI prints without a traceback. ``train``
with the default script validates the whole run config (the file with every ``--set`` applied) the way
``apps/train.py`` would, so a bad value fails once, before any process starts, instead of once per restart; when
the config file is not on the launching host (a path inside an image) it checks each ``--set`` key and value type.
Checks that only make sense on the launching host (the config file exists, the host has the requested GPUs)
run in ``Role.pre_proc`` and only for the local scheduler, so a Kubernetes dry run may ask for GPUs this
machine does not have.

Constraints of this file: torchx loads it by path by executing it inside ``torchx.specs.finder``'s namespace,
and its component linter only accepts ``Optional``/``List``/``Dict`` annotations, so: no
``from __future__ import annotations``, no ``X | None`` or ``list[...]`` in any signature, no ``__file__``,
and module-level names that cannot collide with the finder's own.
"""

# ruff: noqa: UP006, UP007, UP035  (torchx's component linter requires typing.Optional/List/Dict, see above)

import dataclasses
import logging
import os
import re
import shutil
import sys
from typing import Dict, List, Optional

from torchx import specs
from torchx.components import dist as torchx_dist
from torchx.specs.finder import ComponentValidationException

_SMES_J_PATTERN = re.compile(r"^(?:(\d+):)?(\d+)x(\d+)$|^(\d+)$")
# A comma starts a new override only when ``key.path=`` follows it, so values may hold commas ("[64,32]").
_SMES_OVERRIDE_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")
_SMES_OVERRIDE_ITEM = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=")
_SMES_TRAIN_SCRIPT = "apps/train.py"


class SmesLaunchError(ComponentValidationException):
    """A component argument is invalid; raised before any process starts."""


@dataclasses.dataclass
class _SmesRole(specs.Role):
    """A ``Role`` that checks the launching host when the scheduler is the local one.

    Attributes:
        local_files: Paths (relative to the working directory) that must exist for a local run.
    """

    local_files: List[str] = dataclasses.field(default_factory=list)

    def pre_proc(self, scheduler: str, dryrun_info: specs.AppDryRunInfo) -> specs.AppDryRunInfo:
        # "local" is the backend name of the local_cwd scheduler.
        if scheduler == "local":
            _smes_check_local_host(self)
            _smes_use_launching_env(self, dryrun_info)
        return dryrun_info


def _smes_check_local_host(role: _SmesRole) -> None:
    """Fails before anything starts when a local run could not work on this host."""
    for path in role.local_files:
        if not os.path.exists(path):
            raise SmesLaunchError(f"{path!r} does not exist (relative to {os.getcwd()})")
    gpu = role.resource.gpu
    if gpu > 0:
        available = _smes_local_gpu_count()
        needed = gpu * role.num_replicas
        if available < needed:
            raise SmesLaunchError(
                f"gpu={gpu} per node x {role.num_replicas} node(s) requested, but this host has {available} CUDA"
                " GPU(s); use --gpu 0 to train on CPU"
            )


def _smes_local_gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def _smes_use_launching_env(role: _SmesRole, dryrun_info: specs.AppDryRunInfo) -> None:
    """Puts the bin directory of the interpreter running torchx first on the workers' PATH.

    local_cwd resolves ``torchrun`` and ``python`` from PATH; this makes ``.venv/bin/torchx run ...`` use the
    virtual environment's ``torchrun`` without activating it.
    """
    bin_dir = os.path.dirname(sys.executable)
    if not os.path.exists(os.path.join(bin_dir, "torchrun")):
        if shutil.which("torchrun") is None:
            raise SmesLaunchError("torchrun is not on PATH: activate the environment smes-rec is installed in")
        return
    for replica in dryrun_info.request.role_params.get(role.name, []):
        path = replica.env.get("PATH")
        replica.env["PATH"] = os.pathsep.join(p for p in (bin_dir, path) if p)


def _smes_parse_j(j: str) -> List[int]:
    """``[min_nodes:]nodes x procs`` or ``procs`` -> [min_nodes, nodes, procs_per_node]."""
    match = _SMES_J_PATTERN.match(j.strip())
    if not match:
        raise SmesLaunchError(f"-j {j!r} does not parse: expected NODESxPROCS (e.g. 2x4), MIN:MAXxPROCS or PROCS")
    min_nodes, nodes, procs, procs_only = match.groups()
    if procs_only is not None:
        counts = [1, 1, int(procs_only)]
    else:
        counts = [int(min_nodes if min_nodes is not None else nodes), int(nodes), int(procs)]
    if counts[1] < 1 or counts[2] < 1 or not 0 < counts[0] <= counts[1]:
        raise SmesLaunchError(f"-j {j!r}: nodes and processes per node must be >= 1 (and min nodes <= nodes)")
    return counts


def _smes_set_args(overrides: Optional[str]) -> List[str]:
    """``"a.b=1,c=[2,3]"`` -> ``["--set", "a.b=1", "--set", "c=[2,3]"]``, each item checked to be key.path=value."""
    if not overrides:
        return []
    items = [item.strip() for item in _SMES_OVERRIDE_SPLIT.split(overrides)]
    for item in items:
        if not _SMES_OVERRIDE_ITEM.match(item):
            raise SmesLaunchError(f"--set: {item!r} is not key.path=value (separate several with commas)")
    return [arg for item in items for arg in ("--set", item)]


def _smes_check_run_config(config: str, set_args: List[str]) -> None:
    """Validates the training config plus overrides like ``apps/train.py`` does, before anything is launched."""
    logging.disable(logging.INFO)  # fbgemm logs every library it loads at INFO
    try:
        from smes_rec.train.config import TrainConfig
        from smes_rec.utils.config import ConfigError, check_overrides, load_yaml
    except ImportError:  # smes_rec is not installed where torchx runs: the app checks its config when it starts
        return
    finally:
        logging.disable(logging.NOTSET)
    items = set_args[1::2]
    try:
        if os.path.isfile(config):
            load_yaml(TrainConfig, config, items)
        else:  # a path inside the image: check what can be checked without the file
            check_overrides(TrainConfig, items)
    except ConfigError as e:
        raise SmesLaunchError(f"run config: {e}") from None


def _smes_app(
    script: str,
    script_args: List[str],
    local_files: List[str],
    name: str,
    j: str,
    cpu: int,
    gpu: int,
    memMB: int,
    h: Optional[str],
    image: str,
    env: Optional[Dict[str, str]],
    max_retries: int,
    mounts: Optional[List[str]],
    rdzv_port: int,
):  # no return annotation: torchx would list a function annotated "-> AppDef" as a component
    """Builds the app with ``dist.ddp`` and adds torchrun's ``--max_restarts`` and the local host checks."""
    _, _, nproc_per_node = _smes_parse_j(j)
    if cpu < 1 or memMB < 1:
        raise SmesLaunchError(f"cpu ({cpu}) and memMB ({memMB}) must be >= 1")
    if gpu < 0:
        raise SmesLaunchError(f"gpu must be >= 0, got {gpu}")
    if gpu > 0 and nproc_per_node > gpu:
        raise SmesLaunchError(f"-j {j}: {nproc_per_node} processes per node need one GPU each, but --gpu is {gpu}")
    if max_retries < 0:
        raise SmesLaunchError(f"max_retries must be >= 0, got {max_retries}")
    env = dict(env or {})
    if max_retries > 0:
        # torchrun shares its rendezvous TCPStore with the workers by default, and a restarted worker group can
        # read the previous attempt's keys and fail to form its gloo/NCCL group (pytorch/pytorch#135712; seen
        # here in most restarts with torch 2.13). Workers of each attempt get a fresh store without sharing.
        env.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    app = torchx_dist.ddp(
        *script_args,
        script=script,
        image=image,
        name=name,
        h=h,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        j=j.strip(),
        env=env,
        max_retries=max_retries,
        rdzv_port=rdzv_port,
        mounts=mounts,
    )
    (role,) = app.roles
    # dist.ddp runs ["bash", "-c", "torchrun <launch flags> <script> <args>"]: add the in-place restarts.
    flag, command = role.args
    if flag != "-c" or not command.startswith("torchrun "):
        raise RuntimeError(f"unexpected dist.ddp command layout: {role.args}")
    role.args = [flag, f"torchrun --max_restarts {max_retries} {command[len('torchrun '):]}"]
    fields = {f.name: getattr(role, f.name) for f in dataclasses.fields(specs.Role) if f.init}
    app.roles = [_SmesRole(**fields, local_files=local_files)]
    return app


def train(
    config: str = "configs/smes_synthetic.yaml",
    set: Optional[str] = None,
    output_dir: Optional[str] = None,
    j: str = "1x2",
    cpu: int = 4,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    image: str = "smes-rec:latest",
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
    mounts: Optional[List[str]] = None,
    name: str = "smes-train",
    script: str = "apps/train.py",
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Trains a smes-rec model with torchrun, resuming from the latest checkpoint after any restart.

    Runs ``torchrun ... SCRIPT --config CONFIG [--set KEY=VALUE ...] --resume``; ``--resume`` starts fresh when
    the output directory holds no checkpoint yet.

    Args:
        config: YAML config file, relative to the working directory (the checkout for local_cwd, the image's
            working directory on Kubernetes).
        set: config overrides ``key.path=value``, several separated by commas
            (e.g. ``schedule.max_steps=100,seed=3``); a comma inside a value is kept when no ``key=`` follows it.
        output_dir: overrides the config's ``output_dir`` (checkpoints go to OUTPUT_DIR/checkpoints); on
            Kubernetes put it on a volume from ``--mounts`` so restarts find the checkpoints.
        j: ``NODESxPROCS`` (e.g. ``2x4``: 2 nodes, 4 processes each), ``MIN:MAXxPROCS`` for elastic node counts,
            or ``PROCS`` (one node).
        cpu: CPUs per node.
        gpu: GPUs per node (0: train on CPU); processes per node must not exceed it. Local runs check that
            this host has them.
        memMB: memory per node in MB.
        h: a registered named resource (overrides cpu, gpu and memMB).
        image: container image for container schedulers (Kubernetes, local_docker); local_cwd ignores it.
        env: extra environment variables, ``KEY=VALUE`` separated by commas.
        max_retries: restarts after a failure: torchrun restarts the worker group in place (``--max_restarts``)
            and Kubernetes restarts the whole job when a pod fails or is evicted; training resumes from the
            latest checkpoint.
        mounts: volumes for container schedulers, e.g. ``type=volume,src=PVC_NAME,dst=/mnt/runs``.
        name: job name.
        script: the training script, relative to the working directory.
        rdzv_port: port of the c10d rendezvous on the first node (multi-node only).
    """
    script_args = ["--config", config]
    script_args += _smes_set_args(set)
    if output_dir is not None:
        if not output_dir.strip():
            raise SmesLaunchError("--output_dir must not be empty")
        script_args += ["--set", f"output_dir={output_dir}"]
    if script == _SMES_TRAIN_SCRIPT:
        _smes_check_run_config(config, script_args[2:])
    script_args.append("--resume")
    return _smes_app(
        script, script_args, [script, config], name, j, cpu, gpu, memMB, h, image, env, max_retries, mounts,
        rdzv_port,
    )


def evaluate(
    checkpoint: str,
    split: str = "test",
    out: Optional[str] = None,
    set: Optional[str] = None,
    j: str = "1x1",
    cpu: int = 4,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    image: str = "smes-rec:latest",
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
    mounts: Optional[List[str]] = None,
    name: str = "smes-evaluate",
    script: str = "apps/evaluate.py",
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Evaluates a smes-rec checkpoint offline (per-task AUC and GAUC, routing telemetry) with torchrun.

    Runs ``torchrun ... SCRIPT --checkpoint CHECKPOINT --split SPLIT [--out OUT] [--set KEY=VALUE ...]``.

    Args:
        checkpoint: checkpoint directory written by ``train``.
        split: data split to evaluate.
        out: directory for the evaluation report (the app's default when not given).
        set: config overrides ``key.path=value``, several separated by commas.
        j: ``NODESxPROCS``, ``MIN:MAXxPROCS`` or ``PROCS``; results do not depend on it.
        cpu: CPUs per node.
        gpu: GPUs per node (0: CPU); processes per node must not exceed it. Local runs check that this host
            has them.
        memMB: memory per node in MB.
        h: a registered named resource (overrides cpu, gpu and memMB).
        image: container image for container schedulers (Kubernetes, local_docker); local_cwd ignores it.
        env: extra environment variables, ``KEY=VALUE`` separated by commas.
        max_retries: restarts after a failure (torchrun ``--max_restarts`` and scheduler job retries); the
            evaluation starts over.
        mounts: volumes for container schedulers, e.g. ``type=volume,src=PVC_NAME,dst=/mnt/runs``.
        name: job name.
        script: the evaluation script, relative to the working directory.
        rdzv_port: port of the c10d rendezvous on the first node (multi-node only).
    """
    script_args = ["--checkpoint", checkpoint, "--split", split]
    if out is not None:
        script_args += ["--out", out]
    script_args += _smes_set_args(set)
    return _smes_app(
        script, script_args, [script, checkpoint], name, j, cpu, gpu, memMB, h, image, env, max_retries, mounts,
        rdzv_port,
    )
