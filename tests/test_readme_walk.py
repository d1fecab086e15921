"""The README walked as one researcher walks it, on one run folder, for real (tiny substitutes).

One workspace laid out as a user's (`data/avqa`, `data/mmau` (test-mini and the full test's
shape), `data/mmsu`, `data/mmar` in the layouts stage prepare writes), the tiny Qwen2.5-Omni
thinker standing in for the hub model, then in sequence:

1. `run.sh --stage train --stop_stage mmar` with per-stage options (a range: `--train_args`,
   `--eval_args`): trains 2 steps, evaluates step 0 and checkpoint-2 on the three benchmarks;
2. the README's evaluation line on that run folder, by run name only: it evaluates the run's
   model with the run's template (resumed: nothing redone), and a disagreeing `--model` is
   refused in one line;
3. the README's report line on the same run, and its full-MMAU-test line (one model: the
   newest checkpoint, a submission file);
4. every `python ...` line of the README that runs offline, as printed, from the workspace
   (only the hub model id, a step number and /tmp are swapped for the tiny run's).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, tiny_checkpoint
from tests.helpers_train import demo_data_small
from tests.sources import mmar_eval_set, mmau_eval_set, mmsu_row, save_mmsu, wav

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

README = (REPO / "README.md").read_text(encoding="utf-8")
PYTHON_LINES = [line.strip() for block in re.findall(r"```(?:bash)?\n(.*?)```", README, re.S)
                for line in block.splitlines() if line.strip().startswith("python ")]
ITEMS = 6


def _env() -> dict[str, str]:
    # run.sh uses the active environment (this one) when it satisfies requirements.txt.
    return {**os.environ, "VIRTUAL_ENV": sys.prefix, "CONDA_PREFIX": "",
            "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


def run_sh(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "run.sh", "--exp_dir", str(ws / "exp"), "--data_dir",
                           str(ws / "data"), *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("walk")
    (ws / "data").mkdir()
    (ws / "data" / "avqa").symlink_to(demo_data_small() / "avqa")
    questions, audio = mmau_eval_set(ws / "data" / "mmau", n=ITEMS)
    # The full test's shape: the same clips, no answers (data/mmau/mmau-test.json, test-audios/)
    items = json.loads(questions.read_text())
    for item in items:
        del item["answer"]
        item["audio_id"] = "./test-audios/" + Path(item["audio_id"]).name
    (audio.parent / "test-audios").symlink_to(audio.name)
    (audio.parent / "mmau-test.json").write_text(json.dumps(items))
    mmar_eval_set(ws / "data" / "mmar", n=ITEMS)
    # Clean data (validation passes): every row has its clip (48 kHz, as MMSU's).
    save_mmsu(ws / "data" / "mmsu", [mmsu_row(i, audio=wav(0.8, sr=48_000, freq=300 + 50 * i),
                                              key=f"mmsu-{i}") for i in range(ITEMS)])
    return ws


EVAL_ARGS = ["--nproc", "1", "--eval_max_new_tokens", "4", "--eval_batch_size", "3",
             "--eval_args", f"--dtype float32 --limit {ITEMS}"]


@pytest.fixture(scope="module")
def trained(workspace: Path) -> Path:
    """Step 1: one call from training to the last benchmark."""
    result = run_sh(workspace, "--stage", "train", "--stop_stage", "mmar", "--config",
                    "conf/demo.yaml", "--model", str(tiny_checkpoint("qwen2_5_omni")),
                    "--run_name", "grpo", "--deepspeed", "none", *EVAL_ARGS, "--train_args",
                    "--max_steps 2 --save_steps 2 --num_generations 4 "
                    "--per_device_train_batch_size 4 --max_completion_length 6 "
                    "--ddp_backend gloo")
    assert result.returncode == 0, result.stderr[-4000:]
    return workspace / "exp" / "grpo"


def _results(run: Path, bench: str, step: int) -> dict:
    return json.loads((run / "eval" / bench / str(step) / "results.json").read_text())


def test_one_call_trains_then_evaluates_every_step(trained: Path) -> None:
    assert (trained / "checkpoint-2" / "trainer_state.json").is_file()
    for bench in ("mmau", "mmsu", "mmar"):
        for step in (0, 2):
            results = _results(trained, bench, step)
            scored = results["protocols"]["exact"] if bench == "mmsu" else results
            assert scored["total"] == ITEMS, (bench, step)
        assert (trained / "eval" / bench / "summary.md").is_file()


def test_the_readme_evaluation_line_follows_the_run(trained: Path, workspace: Path) -> None:
    """`bash run.sh --stage mmau --stop_stage mmsu --run_name grpo` (README) on the trained run:
    the run's model and template, nothing re-evaluated; a disagreeing --model is refused."""
    line = next(line for line in README.splitlines()
                if line.strip() == "bash run.sh --stage mmau --stop_stage mmsu --run_name grpo")
    args = shlex.split(line)[2:]
    answers = trained / "eval" / "mmau" / "2" / "partial" / "rank0.jsonl"  # the answer log
    before, accuracy = answers.read_bytes(), _results(trained, "mmau", 2)["accuracy"]
    result = run_sh(workspace, *args, *EVAL_ARGS)
    assert result.returncode == 0, result.stderr[-4000:]
    tiny = str(tiny_checkpoint("qwen2_5_omni"))
    assert f"Settings: evaluation step 0 {tiny} (the run's starting model" in result.stderr
    assert "Settings: evaluation template default (the run's template" in result.stderr
    assert answers.read_bytes() == before  # resumed: no item asked again
    assert _results(trained, "mmau", 2)["accuracy"] == accuracy

    other = run_sh(workspace, *args, *EVAL_ARGS, "--model", str(tiny_checkpoint("qwen2_audio")))
    assert other.returncode != 0
    errors = [line for line in other.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"trained from {tiny}" in errors[0], other.stderr[-2000:]


def test_the_readme_report_line_reports_the_run(trained: Path, workspace: Path) -> None:
    line = next(line for line in README.splitlines()
                if line.startswith("bash run.sh --stage report --run_name grpo"))
    result = run_sh(workspace, *shlex.split(line.split("  #")[0])[2:])
    assert result.returncode == 0, result.stderr[-4000:]
    report = (trained / "report.md").read_text()
    assert "mmau" in report.lower() and "mmsu" in report.lower()


# (a README `python` line starts with ..., what to swap for the tiny run, the file it must write)
OFFLINE_LINES = [
    ("python -m local.validate", {}, "data/validation.md"),
    ("python evaluate_mmau.py --score_only", {"/1000/": "/2/"}, "rescored.json"),
    ("python evaluate_mmau.py --model", {"Qwen/Qwen2.5-Omni-7B": "TINY"},
     "exp/ablation/mmau_no_audio/results.json"),
    ("python -m local.run_report", {"/tmp/grpo.md": "grpo.md"}, "grpo.md"),
    ("python evaluate_mmau.py --split test", {"-1000": "-2", "/1000": "/2"},
     "exp/grpo/eval/mmau_test/2/submission.json"),
]


def test_every_offline_python_line_is_walked() -> None:
    """A new `python` line in the README gets a row above (or a reason it cannot run here)."""
    cannot = ("python -m local.eval.summary",)  # not a README code line today; kept for clarity
    for line in PYTHON_LINES:
        assert any(line.startswith(start) for start, _, _ in OFFLINE_LINES) or \
            line.startswith(cannot), f"README line not walked: {line}"


@pytest.mark.parametrize(("start", "swaps", "writes"), OFFLINE_LINES,
                         ids=[start for start, _, _ in OFFLINE_LINES])
def test_readme_python_line_runs_as_printed(trained: Path, workspace: Path, start: str,
                                            swaps: dict[str, str], writes: str) -> None:
    line = next(line for line in PYTHON_LINES if line.startswith(start))
    for old, new in swaps.items():
        assert old in line, (line, old)
        line = line.replace(old, str(tiny_checkpoint("qwen2_5_omni")) if new == "TINY" else new)
    args = shlex.split(line)[1:]
    if args[0].endswith(".py"):
        args[0] = str(REPO / args[0])
    if "--model" in args:  # a real model answers at length; the tiny one needs a cap
        args += ["--limit", str(ITEMS), "--dtype", "float32", "--max_new_tokens", "4"]
    result = subprocess.run([sys.executable, *args], cwd=workspace, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (line, result.stderr[-3000:])
    assert (workspace / writes).is_file(), (line, writes)
    if "--score_only" in line:  # re-scoring the run's predictions gives the run's accuracy
        rescored = json.loads((workspace / writes).read_text())
        assert rescored["accuracy"] == _results(trained, "mmau", 2)["accuracy"]


def test_the_readme_full_test_line_predicts_the_newest_checkpoint(trained: Path,
                                                                   workspace: Path) -> None:
    line = next(line for line in README.splitlines()
                if line.startswith("bash run.sh --stage mmau --split test --run_name grpo"))
    result = run_sh(workspace, *shlex.split(line.split("  #")[0])[2:], *EVAL_ARGS)
    assert result.returncode == 0, result.stderr[-4000:]
    submission = json.loads((trained / "eval" / "mmau_test" / "2" / "submission.json")
                            .read_text())
    assert len(submission) == ITEMS and all(s["prediction_error"] is None for s in submission)
    assert not (trained / "eval" / "mmau_test" / "0").exists()  # one model: the newest
    assert "huggingface.co/spaces/sonalkum/MMAU-Eval" in result.stdout
