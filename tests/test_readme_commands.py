"""Every command in README.md runs: `bash run.sh` lines expand (with --dry_run) to the intended
launch command, whose arguments the real parsers accept; Python entry points accept --help."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(?:bash)?\n(.*?)```", README, flags=re.S)


def _run_sh_part(line: str) -> str:
    """`bash run.sh ...` of a line, without a trailing comment or an enclosing `bash -c '...'`."""
    start = line.index("bash run.sh")
    part = line[start:]
    if line[:start].endswith("'"):  # srun bash -c 'bash run.sh ...'
        part = part.rsplit("'", 1)[0]
    return part.split("  #")[0].strip()


RUN_LINES = [_run_sh_part(line) for block in BLOCKS for line in block.splitlines()
             if "bash run.sh" in line and not line.lstrip().startswith("#")]
ENTRY_POINTS = sorted(set(re.findall(r"python (-m [\w.]+|\w+\.py)", README)))
# Values the SLURM example reads from its environment.
SLURM_ENV = {"SLURM_NNODES": "2", "SLURM_NODEID": "1", "MASTER_ADDR": "node0"}

# (a README line contains ..., its dry run must print ...)
EXPANSIONS = [
    ("--stage demo", ["Stage demo:", "-m local.demo --out exp/demo"]),
    ("--stage test", ["Stage test:", "-m pytest"]),
    ("--stage prepare", ["Stage prepare:", "-m local.prepare --data_dir data --model_dir models"]),
    ("--stage train", ["Stage train:", "-m torch.distributed.run", "train.py --config"]),
    ("--stage curate", ["Stage curate:", "-m local.curate --model"]),
    ("--train_selection data/curate", ["--train_selection data/curate/"]),
    ("--node_rank 1 --master_addr 10.0.0.1",
     ["--nnodes 2 --node_rank 1 --nproc_per_node 8 --master_addr 10.0.0.1"]),
    ("$SLURM_NODEID", ["--nnodes 2 --node_rank 1 --nproc_per_node 8 --master_addr node0"]),
    ("--deepspeed conf/ds_zero3.json", ["--deepspeed conf/ds_zero3.json"]),
    ("--template think", ["--template think"]),
    ("--stage mmau", ["Stage mmau:", "-m local.eval.steps --bench mmau"]),
    ('--checkpoints "500 1000" --nproc 8',
     ["-m torch.distributed.run --standalone --nproc_per_node 8", r"--checkpoints 500\ 1000"]),
    ("--stage mmsu", ["-m local.eval.steps --bench mmsu"]),
    ("--stage mmar", ["Stage mmar:", "-m local.eval.steps --bench mmar",
                      "--mmar_json data/mmar/MMAR-meta.jsonl"]),
    ("--stage plan", ["Stage plan:", "-m local.train.plan --model", "--gpu_memory_gb 80"]),
    ("--stage test --vllm true", ["Environment:", "requirements-vllm", "-m pytest -m vllm"]),
    ("--stage train --vllm true", ["Environment:", "requirements-vllm", "train.py --config",
                                   "--use_vllm true"]),
]


def _dry_run(line: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **SLURM_ENV, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    command = line.replace("bash run.sh", "bash run.sh --dry_run", 1)
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def _commands(stderr: str) -> list[list[str]]:
    """The commands run.sh printed (`[run.sh] + cmd ...`), split into arguments."""
    return [shlex.split(line.split("[run.sh] + ", 1)[1]) for line in stderr.splitlines()
            if "[run.sh] + " in line]


def _check_train_args(args: list[str]) -> None:
    from local.train.config import parse_args

    args = args[args.index("train.py") + 1:]
    if "--deepspeed" in args:  # its own tests launch it; here only the recipe's arguments
        i = args.index("--deepspeed")
        del args[i:i + 2]
    config, _ = parse_args([*args, "--use_cpu", "true", "--bf16", "false"])
    assert config.output_dir


def _check_eval_args(args: list[str]) -> None:
    from local.eval.benchmarks.base import registered
    from local.eval.options import build_parser

    bench = args[args.index("--bench") + 1]
    rest = args[args.index("--") + 1:]
    parser = build_parser(registered()[bench])
    parser.parse_args(["--model", "m", "--out_dir", "o", *rest])


def test_readme_has_the_quick_start_commands() -> None:
    assert "bash run.sh --stage demo" in RUN_LINES
    assert "bash run.sh --stage test" in RUN_LINES  # CI runs exactly this


@pytest.mark.parametrize("line", RUN_LINES)
def test_run_sh_line_expands_to_its_launch_command(line: str) -> None:
    result = _dry_run(line)
    assert result.returncode == 0, result.stderr[-2000:]
    commands = _commands(result.stderr)
    assert commands or "--help" in line, result.stderr
    for needle, expected in EXPANSIONS:
        if needle in line:
            for text in expected:
                assert text in result.stderr, (line, text, result.stderr[-2000:])
    if "--deepspeed none" in line:
        assert "--deepspeed" not in " ".join(commands[-1][commands[-1].index("train.py"):])
    for command in commands:
        if "train.py" in command:
            _check_train_args(command)
        elif "local.eval.steps" in command:
            _check_eval_args(command)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_python_entry_point_accepts_help(entry: str) -> None:
    result = subprocess.run([sys.executable, *entry.split(), "--help"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


def test_readme_names_the_entry_points_it_documents() -> None:
    for entry in ("-m local.validate", "evaluate_mmau.py", "-m local.tiny"):
        assert entry in ENTRY_POINTS
