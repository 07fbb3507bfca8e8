"""The TorchX components: CLI validation, the AppDefs they build, argument errors, and registration."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import sys

import pytest

from tests.conftest import REPO_ROOT
from torchx.components.component_test_base import ComponentTestCase
from torchx.specs import finder

from .helpers import COMPONENTS_FILE, EVALUATE, STANDIN, TRAIN, components, read_records, run_torchx


class TestComponentsParse(ComponentTestCase):
    """torchx can build ``--help`` for every component (Google-style docstrings, supported argument types)."""

    def test_train(self) -> None:
        self.validate(components(), "train")

    def test_evaluate(self) -> None:
        self.validate(components(), "evaluate")


def _command(app) -> list[str]:
    """The torchrun command line of a single-role app (dist.ddp runs it through ``bash -c``)."""
    (role,) = app.roles
    assert role.entrypoint == "bash" and role.args[0] == "-c"
    return shlex.split(role.args[1])


def _script_argv(app, script: str) -> list[str]:
    command = _command(app)
    return command[command.index(script) + 1:]


def test_train_app_def() -> None:
    app = components().train(
        config="configs/tiny.yaml", set="schedule.max_steps=40,model.expert_layers=[64,32],seed=3", output_dir="runs/a",
        j="2x4", cpu=8, gpu=4, memMB=32000, image="registry.example/smes-rec:1", env={"FOO": "bar"},
        max_retries=3, mounts=["type=volume", "src=runs-pvc", "dst=/mnt/runs"],
    )
    (role,) = app.roles
    command = _command(app)
    assert command[:3] == ["torchrun", "--max_restarts", "3"]
    assert command[command.index("--nnodes") + 1] == "2"
    assert command[command.index("--nproc_per_node") + 1] == "4"
    assert _script_argv(app, "apps/train.py") == [
        "--config", "configs/tiny.yaml",
        "--set", "schedule.max_steps=40", "--set", "model.expert_layers=[64,32]", "--set", "seed=3",
        "--set", "output_dir=runs/a",
        "--resume",
    ]
    assert role.num_replicas == 2 and role.max_retries == 3
    assert (role.resource.cpu, role.resource.gpu, role.resource.memMB) == (8, 4, 32000)
    assert role.image == "registry.example/smes-rec:1"
    assert role.env["FOO"] == "bar"
    assert [(m.src, m.dst_path) for m in role.mounts] == [("runs-pvc", "/mnt/runs")]


def test_train_defaults_pass_config_and_resume_only() -> None:
    app = components().train()
    assert _script_argv(app, "apps/train.py") == ["--config", "configs/smes_synthetic.yaml", "--resume"]
    assert _command(app)[:3] == ["torchrun", "--max_restarts", "0"]
    (role,) = app.roles
    assert role.resource.gpu == 0 and role.num_replicas == 1


def test_restarts_give_each_attempt_a_fresh_store() -> None:
    """With torchrun restarts, workers must not share the agent's TCPStore (stale keys break the restarted group)."""
    assert components().train(max_retries=2).roles[0].env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in components().train().roles[0].env
    custom = components().train(max_retries=1, env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "0"})
    assert custom.roles[0].env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "0"


def test_evaluate_app_def() -> None:
    app = components().evaluate(checkpoint="runs/a/checkpoints/step_40", out="runs/a/eval", set="data.batch_size=64")
    assert _script_argv(app, "apps/evaluate.py") == [
        "--checkpoint", "runs/a/checkpoints/step_40", "--split", "test", "--out", "runs/a/eval",
        "--set", "data.batch_size=64",
    ]
    assert "--resume" not in _command(app)


@pytest.mark.parametrize("j", ["2by4", "2x", "x4", "0x2", "2x0", "3:2x1", "", "1x2x3"])
def test_bad_j_is_rejected(j: str) -> None:
    with pytest.raises(finder.ComponentValidationException, match="-j"):
        components().train(j=j)


@pytest.mark.parametrize(("j", "nodes", "procs"), [("4", 1, 4), ("2x1", 2, 1), ("1:3x2", 3, 2)])
def test_j_forms(j: str, nodes: int, procs: int) -> None:
    app = components().train(j=j)
    command = _command(app)
    assert app.roles[0].num_replicas == nodes
    assert command[command.index("--nproc_per_node") + 1] == str(procs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"set": "schedule.max_steps"}, "key.path=value"),
        ({"set": "=2,seed=1"}, "key.path=value"),
        ({"gpu": -1}, "gpu"),
        ({"gpu": 2, "j": "1x4"}, "one GPU each"),
        ({"cpu": 0}, "cpu"),
        ({"max_retries": -1}, "max_retries"),
        ({"output_dir": " "}, "output_dir"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(finder.ComponentValidationException, match=message):
        components().train(**kwargs)


def test_entry_point_module_lists_exactly_the_components() -> None:
    """Loaded the way the ``torchx.components`` entry point loads it, the file offers train and evaluate only."""
    found = finder.ModuleComponentsFinder(components(), "smes").find()
    valid = sorted(c.name for c in found if not c.validation_errors)
    assert valid == ["smes.evaluate", "smes.train"]


def test_pyproject_registers_components_and_builtins() -> None:
    tomllib = pytest.importorskip("tomllib")
    table = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["torchx.components"]
    assert table["dist"] == "torchx.components.dist"
    assert table["utils"] == "torchx.components.utils"
    assert "smes" in table


def test_entry_point_registration_end_to_end(tmp_path) -> None:
    """Through an installed distribution's entry point (a throwaway one on PYTHONPATH), the components are
    ``smes.train`` and ``smes.evaluate``, and torchx's built-ins stay available next to them."""
    site = tmp_path / "site"
    dist_info = site / "smes_launch_probe-0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: smes-launch-probe\nVersion: 0.0\n")
    (dist_info / "entry_points.txt").write_text("[torchx.components]\nsmes = smes_launch_probe_components\n")
    shutil.copy(COMPONENTS_FILE, site / "smes_launch_probe_components.py")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    result = run_torchx(["builtins"], env, timeout=60)
    assert result.returncode == 0, result.output
    listed = set(re.findall(r"^\s*\d+\.\s+(\S+)$", result.stdout, flags=re.MULTILINE))
    assert {"smes.train", "smes.evaluate", "dist.ddp", "utils.echo"} <= listed, result.stdout
    assert not any(name.startswith("smes._") for name in listed), result.stdout
    result = run_torchx(["run", "-s", "local_cwd", "--dryrun", "smes.train", "--script", STANDIN,
                         "--config", "pyproject.toml", "-j", "2x1"], env)
    assert result.returncode == 0, result.output
    assert "--nnodes 2" in result.stdout


def test_installed_entry_points_find_smes_and_builtins() -> None:
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="torchx.components")}
    assert "smes" in names, "the installed smes-rec metadata lacks the smes entry point: run `pip install -e .`"
    result = run_torchx(["builtins"], timeout=60)
    assert result.returncode == 0, result.output
    for name in ("smes.train", "smes.evaluate", "dist.ddp", "utils.echo"):
        assert name in result.stdout, f"{name} missing from `torchx builtins`:\n{result.output}"
    result = run_torchx(["run", "-s", "local_cwd", "--dryrun", "smes.train", "--script", STANDIN,
                         "--config", "pyproject.toml"])
    assert result.returncode == 0, result.output


# ---- Bad input through the CLI: a clear error, and no process started -------------------------------------------


def _standin_args(tmp_path, **options: str) -> tuple[list[str], dict[str, str]]:
    """``torchx run`` of ``train`` on the stand-in app, 1x1 with an existing config unless ``options`` say else."""
    config = tmp_path / "config.yaml"
    config.write_text("seed: 1\n")
    options = {"config": str(config), "j": "1x1", **options}
    args = ["run", "-s", "local_cwd", "-cfg", f"log_dir={tmp_path / 'logs'}", TRAIN, "--script", STANDIN]
    for key, value in options.items():
        args += [f"-{key}" if len(key) == 1 else f"--{key}", value]
    return args, {"STANDIN_RECORD_DIR": str(tmp_path / "records")}


def _assert_nothing_started(tmp_path) -> None:
    assert read_records(tmp_path / "records") == []


def test_cli_unknown_argument(tmp_path) -> None:
    args, env = _standin_args(tmp_path, epochs="3")
    result = run_torchx(args, env)
    assert result.returncode != 0
    assert "unrecognized arguments: --epochs 3" in result.stderr
    _assert_nothing_started(tmp_path)


def test_cli_missing_config(tmp_path) -> None:
    args, env = _standin_args(tmp_path, config=str(tmp_path / "nope.yaml"))
    result = run_torchx(args, env)
    assert result.returncode == 1
    assert f"'{tmp_path / 'nope.yaml'}' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nothing_started(tmp_path)


def test_cli_missing_checkpoint_for_evaluate(tmp_path) -> None:
    args = ["run", "-s", "local_cwd", EVALUATE, "--script", STANDIN, "--checkpoint", str(tmp_path / "none")]
    result = run_torchx(args, {"STANDIN_RECORD_DIR": str(tmp_path / "records")})
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    _assert_nothing_started(tmp_path)


def test_cli_repeated_argument(tmp_path) -> None:
    """Several overrides go in one comma-separated ``--set``; torchx refuses a repeated one instead of dropping it."""
    args, env = _standin_args(tmp_path, set="seed=1")
    result = run_torchx([*args, "--set", "seed=2"], env)
    assert result.returncode != 0
    assert "Repeated Command Line Arguments: ['--set']" in result.stderr
    _assert_nothing_started(tmp_path)


def test_cli_bad_j(tmp_path) -> None:
    args, env = _standin_args(tmp_path, j="2by4")
    result = run_torchx(args, env)
    assert result.returncode == 1
    assert "-j '2by4' does not parse" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nothing_started(tmp_path)


def test_cli_more_gpus_than_the_host_has(tmp_path) -> None:
    args, env = _standin_args(tmp_path, gpu="64")
    result = run_torchx(args, env)
    assert result.returncode == 1
    assert "gpu=64 per node x 1 node(s) requested, but this host has" in result.stderr
    _assert_nothing_started(tmp_path)


def test_cli_gpu_on_a_host_without_gpus(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    args, env = _standin_args(tmp_path, gpu="1")
    result = run_torchx(args, env)
    assert result.returncode == 1
    assert "this host has 0 CUDA GPU(s); use --gpu 0 to train on CPU" in result.stderr
    _assert_nothing_started(tmp_path)


def test_cli_help_documents_every_argument() -> None:
    result = run_torchx(["run", TRAIN, "--help"], timeout=60)
    assert result.returncode == 0, result.output
    for argument in ("--config", "--set", "--output_dir", "-j", "--cpu", "--gpu", "--memMB", "--image", "--env",
                     "--max_retries", "--mounts"):
        assert argument in result.stdout
    assert "TIP: improve this help string" not in result.stdout


def test_components_file_is_not_a_package() -> None:
    """A ``torchx`` package at the repository root would shadow the installed torchx."""
    assert not (REPO_ROOT / "torchx" / "__init__.py").exists()
    assert sys.modules["torchx"].__file__ is not None
    assert not sys.modules["torchx"].__file__.startswith(str(REPO_ROOT / "torchx"))
