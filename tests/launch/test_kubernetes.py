"""Kubernetes dry runs: the exact ``torchx run -s kubernetes --dryrun`` commands of docs/torchx.md yield a Volcano
Job with the requested replicas, GPUs, shared memory, retries and torchrun command. No cluster is needed."""

from __future__ import annotations

import shlex
from unittest import mock

import kubernetes  # noqa: F401  (the dev extras install torchx[kubernetes]; without the client these tests fail)
import yaml

from .helpers import EVALUATE, TRAIN, components, run_torchx

IMAGE = "registry.example.com/ml/smes-rec:0.1.0-cuda"


def _dryrun(*component_args: str, cfg: str = "queue=ranking,namespace=recsys") -> dict:
    """Runs a Kubernetes dry run from the repository root and returns the Volcano Job it would submit."""
    args = ["run", "-s", "kubernetes", "--dryrun", "--workspace", "", "-cfg", cfg, *component_args]
    result = run_torchx(args, timeout=60)
    assert result.returncode == 0, result.output
    request = result.stdout.split("=== SCHEDULER REQUEST ===", 1)[1]
    return yaml.safe_load(request)


def _container(task: dict) -> dict:
    (container,) = task["template"]["spec"]["containers"]
    return container


def test_train_two_nodes_of_four_gpus() -> None:
    job = _dryrun(TRAIN, "-j", "2x4", "--gpu", "4", "--cpu", "32", "--memMB", "200000", "--image", IMAGE,
                  "--config", "configs/smes_synthetic.yaml", "--set", "schedule.max_steps=10000",
                  "--output_dir", "/mnt/runs/exp1", "--max_retries", "3",
                  "--mounts", "type=volume,src=smes-runs,dst=/mnt/runs")
    assert job["apiVersion"] == "batch.volcano.sh/v1alpha1" and job["kind"] == "Job"
    assert job["spec"]["schedulerName"] == "volcano"
    assert job["spec"]["queue"] == "ranking"
    assert job["spec"]["maxRetry"] == 3
    tasks = job["spec"]["tasks"]
    assert len(tasks) == 2 and all(task["replicas"] == 1 for task in tasks)
    for task in tasks:
        assert {"event": "PodFailed", "action": "RestartJob"} in task["policies"]
        container = _container(task)
        assert container["image"] == IMAGE
        limits = container["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "4" and limits["cpu"] == "32000m"
        # Shared memory for the dataloader and gloo/NCCL: an in-memory emptyDir on /dev/shm.
        volumes = {v["name"]: v for v in task["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory" and mounts["dshm"]["mountPath"] == "/dev/shm"
        assert volumes["mount-0"]["persistentVolumeClaim"]["claimName"] == "smes-runs"
        assert mounts["mount-0"]["mountPath"] == "/mnt/runs"
        bash, flag, command = container["command"]
        assert (bash, flag) == ("bash", "-c")
        argv = shlex.split(command)
        assert argv[:3] == ["torchrun", "--max_restarts", "3"]
        assert argv[argv.index("--nnodes") + 1] == "2" and argv[argv.index("--nproc_per_node") + 1] == "4"
        assert argv[argv.index("--rdzv_backend") + 1] == "c10d"
        assert argv[argv.index("apps/train.py") + 1:] == [
            "--config", "configs/smes_synthetic.yaml", "--set", "schedule.max_steps=10000",
            "--set", "output_dir=/mnt/runs/exp1", "--resume",
        ]
    # Every node meets at the first node's c10d store.
    endpoints = [shlex.split(_container(t)["command"][2]) for t in tasks]
    assert all(argv[argv.index("--rdzv_endpoint") + 1].endswith(":29500") for argv in endpoints)


def test_submission_goes_to_the_namespace_and_queue() -> None:
    """The namespace is not in the Job object: torchx submits the Job into it. A mocked API client records that."""
    from torchx.schedulers.kubernetes_scheduler import create_scheduler

    app = components().train(j="2x1", gpu=1, image=IMAGE)
    scheduler = create_scheduler("smes-test", client=mock.MagicMock())
    info = scheduler.submit_dryrun(app, {"queue": "ranking", "namespace": "team-ranking"})
    with mock.patch("kubernetes.client.CustomObjectsApi") as api:
        api.return_value.create_namespaced_custom_object.return_value = {"metadata": {"name": "smes-train-abc"}}
        handle = scheduler.schedule(info)
    assert handle == "team-ranking:smes-train-abc"
    submitted = api.return_value.create_namespaced_custom_object.call_args.kwargs
    assert submitted["namespace"] == "team-ranking" and submitted["group"] == "batch.volcano.sh"
    assert submitted["body"]["spec"]["queue"] == "ranking"
    assert len(submitted["body"]["spec"]["tasks"]) == 2


def test_gpu_request_is_not_checked_against_this_host() -> None:
    job = _dryrun(TRAIN, "-j", "1x8", "--gpu", "8", "--image", IMAGE, "--config", "does/not/exist/here.yaml")
    assert _container(job["spec"]["tasks"][0])["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_evaluate_dry_run() -> None:
    job = _dryrun(EVALUATE, "--checkpoint", "/mnt/runs/exp1/checkpoints/step_10000", "--gpu", "1", "--image", IMAGE)
    (task,) = job["spec"]["tasks"]
    argv = shlex.split(_container(task)["command"][2])
    assert argv[argv.index("apps/evaluate.py") + 1:] == [
        "--checkpoint", "/mnt/runs/exp1/checkpoints/step_10000", "--split", "test",
    ]
