"""run.sh's mmar stage: listed, expanded (dry runs) to the evaluator the README documents, with
its own --mmar_args, the eval stages' node-0 rule and the run's model; prepare --sources mmar
offline fails in one line naming MMAR and how to supply it."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from local.eval.benchmarks.base import registered
from local.eval.options import build_parser
from tests.helpers import REPO


def run_sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": "", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", "run.sh", *args], cwd=REPO, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def eval_commands(stderr: str) -> dict[str, list[str]]:
    """{bench: the local.eval.steps command run.sh printed for it}."""
    found = {}
    for line in stderr.splitlines():
        if "[run.sh] + " in line and "local.eval.steps" in line:
            command = shlex.split(line.split("[run.sh] + ", 1)[1])
            found[command[command.index("--bench") + 1]] = command
    return found


def test_help_lists_the_stage_and_its_options() -> None:
    out = run_sh("--help").stdout
    stage = next(line for line in out.splitlines() if line.strip().startswith("--stage "))
    assert "|mmsu|mmar|" in stage
    assert any(line.strip().startswith("--mmar_args ") for line in out.splitlines())
    sources = next(line for line in out.splitlines() if line.strip().startswith("--sources "))
    assert "mmar" in sources and "CC BY-NC 4.0" in sources
    assert sources.rstrip().endswith("[avqa mmsu mmau model]")  # not in the default


def test_dry_run_expands_to_the_mmar_evaluator(tmp_path: Path) -> None:
    result = run_sh("--stage", "mmau", "--stop_stage", "mmar", "--dry_run", "--data_dir",
                    str(tmp_path), "--mmar_args", "--limit 5", "--eval_args",
                    "--max_audio_duration_in_seconds 20", "--with_no_audio", "true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Stage mmar: " in result.stderr and "dry run: nothing was run (mmau mmsu mmar)" \
        in result.stderr
    commands = eval_commands(result.stderr)
    assert list(commands) == ["mmau", "mmsu", "mmar"]
    mmar = commands["mmar"]
    rest = mmar[mmar.index("--") + 1:]
    args = build_parser(registered()["mmar"]).parse_args(["--model", "m", "--out_dir", "o", *rest])
    assert args.mmar_json == tmp_path / "mmar" / "MMAR-meta.jsonl"
    assert args.mmar_audio_dir == tmp_path / "mmar" / "audio"
    assert args.limit == 5 and args.max_audio_duration_in_seconds == 20
    assert "--with_no_audio" in mmar and "--limit" not in commands["mmau"] + commands["mmsu"]


def test_mmar_follows_the_eval_stages_rules() -> None:
    other = run_sh("--stage", "mmar", "--dry_run", "--nnodes", "2", "--master_addr", "10.0.0.1",
                   "--node_rank", "1")
    assert "Stage mmar: runs on node 0 only" in other.stderr and not eval_commands(other.stderr)
    refused = run_sh("--stage", "mmar", "--dry_run", "--mmar_args", "--model x")
    assert refused.returncode != 0 and "give --model to run.sh itself" in refused.stderr
    unused = run_sh("--stage", "mmsu", "--dry_run", "--mmar_args", "--limit 5")
    assert unused.returncode != 0 and "--mmar_args is given but this call runs mmsu" \
        in unused.stderr


def test_prepare_mmar_offline_fails_in_one_line(tmp_path: Path) -> None:
    result = run_sh("--stage", "prepare", "--sources", "mmar", "--data_dir",
                    str(tmp_path / "data"), "--model_dir", str(tmp_path / "models"),
                    env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line
              and "[prepare]" in line]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "MMAR" in errors[0] and "--mmar_dir" in errors[0] and "HF_HUB_OFFLINE" in errors[0]
    assert "CC BY-NC 4.0" in result.stderr  # the licence, said before the fetch
