"""The run report on a real run: train.py (3 steps, completion logs), the MMAU evaluator on the
demo's small set (steps 0, 2, 3; 0 and 3 also without the audio), then `python -m local.run_report`
in its own process (slow: about a minute on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train
from local.core import rewards
from local.eval import steps as eval_steps
from local.eval.benchmarks.base import registered
from local.eval.runner import evaluate
from local.runs.layout import no_audio_dir
from tests.helpers import REPO, tiny_checkpoint
from tests.helpers_report import assert_every_plot_has_data, assert_every_section
from tests.helpers_train import demo_data_small, length_reward, train_argv


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_report_of_a_small_real_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(rewards.REWARDS, "length", length_reward)
    run = tmp_path / "run"
    argv = train_argv("qwen2_5_omni", run, max_steps=3)
    argv[argv.index("--log_completions") + 1] = "true"
    funcs = argv.index("--reward_funcs")
    argv[funcs + 1:funcs + 2] = ["length", "format"]
    train.main([*argv, "--save_steps", "2", "--report_to", "none"])
    mmau = demo_data_small() / "mmau"
    data = ["--mmau_json", str(mmau / "mmau-test-mini.json"), "--mmau_audio_dir",
            str(mmau / "test-mini-audios"), "--dtype", "float32", "--batch_size", "8",
            "--max_new_tokens", "6"]
    start = str(tiny_checkpoint("qwen2_5_omni"))
    eval_steps.main(["--bench", "mmau", "--model", start, "--run_dir", str(run), "--", *data])
    for step, model in ((0, start), (3, str(run / "checkpoint-3"))):
        evaluate(registered()["mmau"], ["--model", model, "--out_dir",
                                        str(no_audio_dir(run / "eval" / "mmau", step)),
                                        "--no_audio", *data])

    done = subprocess.run([sys.executable, "-m", "local.run_report", "--run_dir", str(run)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    md = run / "report.md"
    report = md.read_text()
    assert_every_section(report)
    links = assert_every_plot_has_data(md)
    assert len(links) >= 5
    assert {Path(link).stem for link in links} == {
        "rewards", "reward_spread", "kl", "completion_length", "optimizer", "accuracy_mmau",
        "audio_contribution_mmau"}
    data = json.loads((run / "plots" / "plots.json").read_text())
    rewards_panel = data["rewards"]["panels"][0]["lines"]
    assert set(rewards_panel) == {"total (weighted sum)", "length_reward", "format"}
    assert [s for s, _ in rewards_panel["total (weighted sum)"]] == [1, 2, 3]
    accuracy = data["accuracy_mmau"]["panels"][0]["lines"]
    assert [s for s, _ in accuracy["overall"]] == [0, 2, 3]
    assert [s for s, _ in accuracy["overall, no audio"]] == [0, 3]
    assert "global step 3 of 3" in report and "### Step 3" in report
