"""The run report (`python -m local.run_report`, `bash run.sh --stage report`) on run folders
written here in the layouts train.py, TRL and the evaluators write: full, still going, without
evaluation, empty; every section present, every plot drawn from data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local.run_report.build import reward_names_and_weights, write_report
from local.run_report.markdown import sample_steps
from local.run_report.plots import DATA_FILE
from local.run_report.run_folder import Completion, read_run, write_labels
from local.run_report.series import group_spread, metric, reward_names, training_figures
from local.util.gitinfo import code_version
from tests.helpers import REPO
from tests.helpers_report import (
    assert_every_plot_has_data,
    assert_every_section,
    full_run,
    linked_pngs,
    mmau_items,
    write_completions,
    write_config,
    write_result,
    write_state,
)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of `full_run` (written once: the tests below only read it)."""
    return write_report(full_run(tmp_path_factory.mktemp("report") / "run"))


def test_full_run_report_has_every_section_and_every_plot_has_data(full_report: Path) -> None:
    md = full_report
    report = md.read_text()
    assert_every_section(report)
    links = assert_every_plot_has_data(md)
    assert {Path(link).stem for link in links} == {
        "rewards", "reward_spread", "kl", "completion_length", "optimizer", "accuracy_mmau",
        "accuracy_mmsu", "audio_contribution_mmau", "audio_contribution_mmsu"}
    # The newest checkpoint's log, the benchmark names from the results, both MMSU protocols.
    assert "`checkpoint-30/trainer_state.json`, global step 30 of 100" in report
    assert "### MMAU test-mini (`eval/mmau/`)" in report and "### MMSU (`eval/mmsu/`)" in report
    assert "Protocol `exact`, per level 1 category" in report
    assert "Protocol `letter`, per level 1 category" in report
    assert "Protocol `mmau`, per task" in report
    assert "`Qwen/Qwen2.5-Omni-7B`" in report and "python train.py --config" in report
    assert ("Code version that trained: `abc1234`; the checkout that wrote this report: "
            f"`{code_version()}`") in report


def test_accuracy_and_audio_numbers_come_from_the_results(full_report: Path) -> None:
    run, report = full_report.parent, full_report.read_text()
    # MMAU step 30: 9 of 12 right (q0..q8: sound, music, speech 3 each of 4); no audio: 3 of 12.
    assert "| 30 | 75.00 | 9/12 | 0 | 75.0 | 75.0 | 75.0 |" in report
    audio = report.split("## Audio contribution")[1].split("\n## ")[0]
    step30 = audio.split("Protocol `mmau`, step 30, per task:")[1]
    assert "| overall | 75.00 | 25.00 | +50.00 |" in step30.split("\n\n", 2)[1]
    assert "| sound | 75.00 | 25.00 | +50.00 |" in step30
    data = json.loads((run / "plots" / DATA_FILE).read_text())
    mmau = data["accuracy_mmau"]["panels"][0]["lines"]
    assert mmau["overall"] == [[0, pytest.approx(100 / 3)], [10, 50.0], [30, 75.0]]
    assert mmau["overall, no audio"] == [[0, 25.0], [30, 25.0]]
    assert set(mmau) == {"overall", "sound", "music", "speech", "overall, no audio"}
    mmsu = data["accuracy_mmsu"]["panels"]
    assert [p["title"] for p in mmsu] == ["protocol exact: overall and per level 1 category",
                                          "protocol letter: overall and per level 1 category"]
    assert set(mmsu[0]["lines"]) == {"overall", "Perception", "Reasoning", "overall, no audio"}


def test_samples_are_from_the_first_middle_and_last_logged_step(full_report: Path) -> None:
    report = full_report.read_text()
    samples = report.split("## Sample completions")[1].split("\n## ")[0]
    assert re.findall(r"^### Step (\d+)$", samples, flags=re.M) == ["5", "20", "30"]
    assert "How many beeps at step 30? ['1', '2'] | `<answer>1</answer>`" in samples
    assert "Please choose" not in samples  # the template's instructions are left out


@pytest.mark.parametrize(
    ("steps", "expected"),
    [([], []), ([3], [3]), ([1, 2], [1, 2]), ([5, 10, 15, 20], [5, 15, 20]),
     ([1, 2, 3], [1, 2, 3])],
)
def test_sample_steps(steps: list[int], expected: list[int]) -> None:
    rows = [Completion(s, "q", "c", {}, None) for s in steps]
    assert sample_steps(rows) == expected


def test_a_run_still_going_without_evaluation_gets_a_report(tmp_path: Path) -> None:
    """One checkpoint with one logged step, a completion file being written: the report says
    what is missing instead of failing."""
    run = tmp_path / "run"
    write_config(run)
    write_state(run / "checkpoint-1", 1, max_steps=100)
    write_completions(run, 1)
    (run / "completions" / "completions_00002.parquet").write_bytes(b"PAR1 half written")
    md = write_report(run)
    report = md.read_text()
    assert_every_section(report)
    assert "global step 1 of 100, 1 logged training steps" in report
    assert "No evaluation yet" in report and "No step was evaluated without the audio" in report
    left_out = report.split("\n## Left out\n")[1]
    assert "| `completions/completions_00002.parquet` | not a readable parquet file" in left_out
    links = assert_every_plot_has_data(md)
    assert len(links) == 5 and not any("accuracy" in link for link in links)


def test_a_run_without_a_checkpoint_yet_says_so(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_config(run)
    report = write_report(run).read_text()
    assert "No training log yet" in report and "No completion logs" in report
    assert linked_pngs(report) == []


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None],
                         ids=["empty-folder", "no-folder"])
def test_nothing_to_report_is_a_one_line_error(tmp_path: Path, make) -> None:
    run = tmp_path / "run"
    make(run)
    result = subprocess.run([sys.executable, "-m", "local.run_report", "--run_dir", str(run)],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(run) in result.stderr and ("nothing to report" in result.stderr
                                          or "no such run folder" in result.stderr)


def test_labels_rename_a_question_set_and_choose_its_groups(tmp_path: Path) -> None:
    """The demo's synthetic set in the MMAU format is not titled MMAU test-mini."""
    run = tmp_path / "run"
    for folder, correct in (("0", 4), ("10", 9), ("10-no_audio", 3)):
        write_result(run, "mmau", folder, mmau_items(correct), no_audio="no_audio" in folder)
    write_labels(run, {"mmau": {"title": "synthetic demo set (MMAU format)",
                                "breakdown": "difficulty"}})
    report = write_report(run).read_text()
    assert "### synthetic demo set (MMAU format) (`eval/mmau/`)" in report
    assert "Protocol `mmau`, per difficulty" in report
    data = json.loads((run / "plots" / DATA_FILE).read_text())
    assert data["accuracy_mmau"]["title"] == "synthetic demo set (MMAU format): accuracy by step"
    assert set(data["accuracy_mmau"]["panels"][0]["lines"]) == {"overall", "easy",
                                                                "overall, no audio"}


def test_a_no_audio_folder_not_made_without_audio_is_left_out(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for folder, no_audio in (("0", False), ("0-no_audio", True), ("10", False),
                             ("10-no_audio", False)):
        write_result(run, "mmau", folder, mmau_items(1), no_audio=no_audio)
    folder = read_run(run)
    assert list(folder.evals[0].no_audio) == [0] and list(folder.evals[0].results) == [0, 10]
    assert [(e.relative(run), e.reason) for e in folder.left_out] == [
        ("eval/mmau/10-no_audio/results.json",
         "not made with --no_audio (settings.no_audio is False, not true)")]


def test_the_newest_trainer_state_is_read(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_state(run / "checkpoint-20", 20, 100)
    write_state(run / "checkpoint-3", 3, 100)
    (run / "checkpoint-30").mkdir()  # a save under way: no trainer_state.json yet
    log = read_run(run).log
    assert log is not None and log.source == run / "checkpoint-20" / "trainer_state.json"
    assert len(log.history) == 20


def test_training_figures_read_trl_metric_names() -> None:
    history = [{"step": 1, "reward": 1.0, "rewards/format/mean": 0.5, "kl": 0.01,
                "completions/mean_length": 9.0, "reward_std": 0.4, "frac_reward_zero_std": 0.25,
                "learning_rate": 1e-6, "grad_norm": 0.3, "completions/clipped_ratio": 0.5},
               {"step": 1, "train_runtime": 3.0}]
    assert reward_names(history) == ["format"] and metric(history, "kl") == [(1, 0.01)]
    figures = {f.name: f.with_data() for f in training_figures(history, {1: {
        "groups": 4, "varied_groups": 3, "mean_std": 0.3}})}
    lines = {(f, p.title, line.label): line.points for f, fig in figures.items()
             for p in fig.panels for line in p.lines}
    assert lines[("rewards", "each reward and the weighted total", "format")] == [(1, 0.5)]
    zero = "groups whose completions all got the same reward"
    assert lines[("reward_spread", zero, "frac_reward_zero_std (TRL)")] == [(1, 0.25)]
    assert lines[("reward_spread", zero, "logged completions")] == [(1, 0.25)]
    assert lines[("optimizer", "learning rate", "lr")] == [(1, 1e-6)]
    assert ("completion_length", "completion length", "max") not in lines  # not logged


def test_no_kl_logged_is_said_not_drawn() -> None:
    figures = {f.name: f.with_data() for f in training_figures([{"step": 1, "reward": 1.0}])}
    assert figures["kl"].panels == [] and "beta = 0" in figures["kl"].missing[0]


@pytest.mark.parametrize(
    ("rewards", "size", "expected"),
    [
        pytest.param([1, 1, 1, 1], 4, {"groups": 1, "varied_groups": 0, "mean_std": 0.0},
                     id="all-equal"),
        pytest.param([0, 2, 0, 2], 4, {"groups": 1, "varied_groups": 1, "mean_std": 1.0},
                     id="spread"),
        pytest.param([0, 1, 5, 5], 2, {"groups": 2, "varied_groups": 1, "mean_std": 0.25},
                     id="two-groups"),
        pytest.param([0, 1, 2], 2, {"groups": 1, "varied_groups": 1, "mean_std": 0.5},
                     id="incomplete-tail-ignored"),
        pytest.param([], 4, {"groups": 0, "varied_groups": 0, "mean_std": 0.0}, id="empty"),
    ],
)
def test_group_spread(rewards: list[float], size: int, expected: dict) -> None:
    assert group_spread(rewards, size) == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"template": "default"}, (["accuracy", "format"], [1.0, 1.0])),
        ({"template": "think"}, (["accuracy", "format_answer", "format_think"], [0.8, 0.1, 0.1])),
        ({"template": "default", "reward_funcs": ["accuracy"]}, (["accuracy"], [1.0])),
        ({"template": "default", "reward_weights": [2, 1]}, (["accuracy", "format"], [2.0, 1.0])),
        ({"template": "default", "robust_rewards": True},
         (["accuracy_robust", "format_robust"], [1.0, 1.0])),
    ],
)
def test_reward_names_and_weights_resolve_like_train(config: dict, expected: tuple) -> None:
    assert reward_names_and_weights(config) == expected


def test_run_sh_report_stage_makes_one_call() -> None:
    env = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    result = subprocess.run(["bash", "run.sh", "--stage", "report", "--dry_run", "--exp_dir",
                             "exp/demo", "--run_name", "run"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Stage report: exp/demo/run -> exp/demo/run/report.md" in result.stderr
    calls = [line for line in result.stderr.splitlines() if "[run.sh] + " in line
             and "local.run_report" in line]
    assert len(calls) == 1 and calls[0].endswith(
        "-m local.run_report --run_dir exp/demo/run "), calls


def test_vllm_rollouts_figure_reads_trl_sampling_metrics() -> None:
    """With vLLM rollouts TRL logs how far vLLM's log-probs are from the policy's (MoE routing
    differs between the engines) and its importance-sampling ratios: one figure; none without."""
    history = [{"step": s, "reward": 1.0, "sampling/sampling_logp_difference/mean": 0.01 * s,
                "sampling/sampling_logp_difference/max": 0.2 * s,
                "sampling/importance_sampling_ratio/min": 0.5,
                "sampling/importance_sampling_ratio/mean": 1.0,
                "sampling/importance_sampling_ratio/max": 1.5} for s in (1, 2)]
    figures = {f.name: f.with_data() for f in training_figures(history)}
    lines = {(p.title, line.label): line.points for p in figures["vllm_rollouts"].panels
             for line in p.lines}
    assert lines[("|vLLM - policy| log-prob per token", "mean")] == [(1, 0.01), (2, 0.02)]
    assert lines[("importance-sampling ratio (policy / vLLM, per token)", "max")] == [(1, 1.5),
                                                                                      (2, 1.5)]
    hf_only = {f.name: f.with_data() for f in training_figures([{"step": 1, "reward": 1.0}])}
    assert hf_only["vllm_rollouts"].panels == [] and not hf_only["vllm_rollouts"].missing
