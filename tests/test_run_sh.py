"""run.sh: option parsing, stage selection, dry runs and errors, without running any stage."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import REPO


def run_sh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    return subprocess.run(["bash", "run.sh", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_help_lists_every_option_with_its_default() -> None:
    result = run_sh("--help")
    assert result.returncode == 0
    for option, default in [("--stage", ""), ("--model", "Qwen/Qwen2.5-Omni-7B"),
                            ("--deepspeed", "conf/ds_zero1.json"), ("--nproc", "8"),
                            ("--template", "default"), ("--dry_run", "false")]:
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(option))
        assert line.rstrip().endswith(f"[{default}]"), line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "--stage is required", id="no-stage"),
        pytest.param(["--stage", "bogus"], "unknown stage 'bogus'", id="unknown-stage"),
        pytest.param(["--stage", "test", "--frobnicate", "1"], "unknown option --frobnicate",
                     id="unknown-option"),
        pytest.param(["--stage", "train", "--nproc"], "--nproc needs a value", id="missing-value"),
        pytest.param(["--stage", "mmsu", "--stop_stage", "train"], "comes before",
                     id="reversed-range"),
        pytest.param(["--stage", "test", "--stop_stage", "mmsu"], "runs alone",
                     id="standalone-with-range"),
        pytest.param(["--stage", "test", "stray"], "unexpected argument 'stray'",
                     id="positional-argument"),
    ],
)
def test_bad_command_lines_are_rejected(args: list[str], message: str) -> None:
    result = run_sh(*args, "--dry_run")
    assert result.returncode != 0
    assert message in result.stderr


def test_dry_run_prints_the_test_command_and_runs_nothing() -> None:
    result = run_sh("--stage", "test", "--dry_run", "--test_args", "-x -q")
    assert result.returncode == 0, result.stderr
    assert "Stage test: tests/ -> pytest report" in result.stderr
    assert "-m pytest -x -q tests" in result.stderr


@pytest.mark.parametrize("form", [["--nproc", "4"], ["--nproc=4"], ["--nproc", "4", "--dry-run"]])
def test_options_accept_both_spellings(form: list[str]) -> None:
    result = run_sh("--stage", "test", "--dry_run", *form)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], "-m torch.distributed.run --nnodes 1 --node_rank 0 --nproc_per_node 8 "
                     "--master_addr 127.0.0.1 --master_port 29500 train.py --config "
                     "conf/grpo.yaml --model_name_or_path Qwen/Qwen2.5-Omni-7B --template "
                     "default --train_data data/avqa --output_dir exp/grpo --deepspeed "
                     "conf/ds_zero1.json", id="defaults-8-gpus-zero1"),
        pytest.param(["--nnodes", "2", "--node_rank", "1", "--master_addr", "10.0.0.1",
                      "--deepspeed", "conf/ds_zero3.json", "--model",
                      "Qwen/Qwen2-Audio-7B-Instruct", "--template", "think", "--run_name", "qa",
                      "--", "--learning_rate", "5e-7"],
                     "--nnodes 2 --node_rank 1 --nproc_per_node 8 --master_addr 10.0.0.1 "
                     "--master_port 29500 train.py --config conf/grpo.yaml --model_name_or_path "
                     "Qwen/Qwen2-Audio-7B-Instruct --template think --train_data data/avqa "
                     "--output_dir exp/qa --deepspeed conf/ds_zero3.json --learning_rate 5e-7",
                     id="multi-node-zero3-passthrough"),
        pytest.param(["--deepspeed", "none", "--overwrite"], "--output_dir exp/grpo "
                     "--overwrite_output_dir true", id="no-deepspeed-overwrite"),
    ],
)
def test_train_dry_run_prints_the_launch_line(args: list[str], expected: str) -> None:
    result = run_sh("--stage", "train", "--dry_run", *args)
    assert result.returncode == 0, result.stderr
    assert "Stage train:" in result.stderr
    launch = next(line for line in result.stderr.splitlines() if "torch.distributed.run" in line)
    assert expected in launch, launch


def test_missing_python_gets_an_actionable_message(tmp_path) -> None:
    """No environment yet and no interpreter: say what to install, not a stack of errors."""
    result = run_sh("--stage", "test", "--venv", str(tmp_path / "venv"),
                    "--python", "/no/such/python3")
    assert result.returncode != 0
    assert "no '/no/such/python3' found" in result.stderr and "Python 3.11" in result.stderr


def test_an_active_environment_that_satisfies_requirements_is_used() -> None:
    import sys

    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "CONDA_PREFIX": ""}
    result = subprocess.run(["bash", "run.sh", "--stage", "test", "--dry_run"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"using the active environment ({sys.prefix}/bin/python)" in result.stderr
