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
