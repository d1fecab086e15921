"""The demo: report helpers (fast, table-driven) and the whole pipeline at reduced size (slow).
The run's report itself (curves, accuracy, samples) is tested in tests/test_report.py."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from local.demo.demo_report import DEMO_SET_TITLE, encoder_change
from local.demo.plots import warmup_figure
from local.demo.warmup import answer_labels, default_option, pick_label
from tests.helpers import REPO
from tests.helpers_report import assert_every_plot_has_data, assert_every_section


def _save(folder: Path, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize(
    ("delta", "changed"),
    [(0.0, 0), (1e-3, 1)],
    ids=["same", "one-tensor-moved"],
)
def test_encoder_change_counts_audio_tower_tensors_only(tmp_path, delta: float,
                                                        changed: int) -> None:
    base = {"audio_tower.a": torch.ones(3), "audio_tower.b": torch.zeros(2),
            "model.embed": torch.ones(4)}
    moved = {**base, "audio_tower.a": base["audio_tower.a"] + delta, "model.embed": torch.zeros(4)}
    result = encoder_change(_save(tmp_path / "a", base), _save(tmp_path / "b", moved))
    assert (result["tensors"], result["changed_tensors"]) == (2, changed)
    assert result["changed"] is bool(changed)
    assert result["max_abs_diff"] == pytest.approx(delta, abs=1e-6)


def test_encoder_change_rejects_a_model_without_an_audio_encoder(tmp_path) -> None:
    folder = _save(tmp_path / "a", {"model.embed": torch.ones(2)})
    with pytest.raises(ValueError, match="no audio_tower"):
        encoder_change(folder, folder)


@pytest.mark.parametrize(
    ("ids", "targets", "expected"),
    [
        ([[0, 0, 5, 6]], [[5, 6]], [[-100, -100, 5, 6]]),
        ([[1, 2, 3], [0, 4, 3]], [[3], [4, 3]], [[-100, -100, 3], [-100, 4, 3]]),
    ],
)
def test_answer_labels_cover_the_answer_tokens_only(ids, targets, expected) -> None:
    assert answer_labels(torch.tensor(ids), targets).tolist() == expected


def test_answer_labels_reject_a_row_that_does_not_end_with_its_answer() -> None:
    with pytest.raises(ValueError, match="does not end with the answer"):
        answer_labels(torch.tensor([[1, 2, 3]]), [[2]])


def test_label_noise_zero_always_teaches_the_answer_and_one_mixes() -> None:
    rng = random.Random(0)
    assert {pick_label("a", ["a", "b"], 0.0, rng) for _ in range(50)} == {"a"}
    assert {pick_label("a", ["a", "b"], 1.0, rng) for _ in range(50)} == {"a", "b"}


@pytest.mark.parametrize(("bias", "low", "high"), [(0.0, 0, 0), (0.6, 450, 750), (1.0, 1000, 1000)],
                         ids=["none", "most", "all"])
def test_label_bias_teaches_the_default_option_on_that_share_of_rows(bias: float, low: int,
                                                                     high: int) -> None:
    """The answer is never the default here, so every default taught is the bias's doing."""
    rng = random.Random(0)
    labels = [pick_label("low", ["low", "high"], 0.0, rng, bias) for _ in range(1000)]
    assert set(labels) <= {"low", "high"}
    assert low <= labels.count(default_option(["low", "high"])) <= high


def test_default_option_ignores_the_order_of_the_choices() -> None:
    """The choices are shuffled per item: the default must be a property of the set."""
    assert default_option(["rising", "falling"]) == default_option(["falling", "rising"])
    assert default_option(["3", "1", "4", "2"]) == "1"


@pytest.mark.parametrize(("seed", "same"), [(0, True), (1, False)], ids=["same-seed", "other"])
def test_demo_data_is_a_function_of_its_seed(tmp_path, seed: int, same: bool) -> None:
    from local.demo.data import write_demo_data

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes()
                for p in sorted((folder / "mmau").rglob("*")) if p.is_file()}

    first = files(write_demo_data(tmp_path / "a", n_train=8, n_eval=8, seed=0))
    second = files(write_demo_data(tmp_path / "b", n_train=8, n_eval=8, seed=seed))
    assert (first == second) is same


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_pipeline_at_reduced_size(tmp_path) -> None:
    from local.demo.run import main

    out = tmp_path / "demo"
    argv = ["--out", str(out), "--n_train", "32", "--n_eval", "8", "--warmup_steps", "30",
            "--warmup_lr", "1e-2", "--grpo_steps", "4", "--", "--save_steps", "2"]
    info = main(argv)
    report = (out / "report.md").read_text()
    assert info["encoder"]["changed"], info["encoder"]
    assert "The audio encoder was trained: PASSED" in report
    # The warm-up's biased teacher (why step 0 starts near chance) is stated with its share.
    assert "on 60% of the rows the taught option is the question's" in report
    # The run's report (local.run_report) inside the demo's, every plot drawn from data.
    assert_every_section(report)
    links = assert_every_plot_has_data(out / "report.md")
    for png in ("rewards", "kl", "completion_length", "reward_spread", "optimizer",
                "accuracy_mmau", "warmup_loss"):
        assert f"plots/{png}.png" in links, png
    # Honest titles: the synthetic set is named as such, never as MMAU test-mini.
    titles = json.dumps(json.loads((out / "plots" / "plots.json").read_text()))
    assert DEMO_SET_TITLE in titles and "MMAU test-mini" not in titles
    assert f"### {DEMO_SET_TITLE} (`eval/mmau/`)" in report
    summary = (out / "run/eval/mmau/summary.md").read_text()
    assert summary.startswith(f"# {DEMO_SET_TITLE} across steps\n"), summary.splitlines()[0]
    # The before -> after table: step 0 (initial model) and every checkpoint, from results.json.
    steps = [int(m) for m in re.findall(r"^\| (\d+) \| `", report, flags=re.M)]
    assert steps == [0, 2, 4]
    for step in steps:
        result = json.loads((out / "run/eval/mmau" / str(step) / "results.json").read_text())
        assert result["total"] == 8 and f"{result['correct']}/8" in report
    assert (out / "models/initial/.done").exists() and (out / "run/checkpoint-4").is_dir()
    assert "Measured wall time" in report and "groups" in report
    # The run's own report, as `bash run.sh --stage report` writes it after the demo.
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "CONDA_PREFIX": ""}
    done = subprocess.run(["bash", "run.sh", "--stage", "report", "--exp_dir", str(out),
                           "--run_name", "run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(assert_every_plot_has_data(out / "run" / "report.md")) >= 5
    # A second call skips every finished part.
    again = main(argv)
    assert set(again["skipped"]) == {"data", "tiny model", "warm-up", "GRPO training"}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_on_the_tiny_qwen3_omni_moe_thinker(tmp_path) -> None:
    """`--family qwen3_omni_moe` (run.sh --family): the same pipeline on the MoE thinker, its
    audio encoder trained. (That it learns is the full demo's figure in the README.)"""
    from local.demo.run import main

    out = tmp_path / "demo"
    info = main(["--out", str(out), "--family", "qwen3_omni_moe", "--n_train", "16",
                 "--n_eval", "8", "--warmup_steps", "10", "--warmup_lr", "1e-2",
                 "--grpo_steps", "2", "--", "--save_steps", "2"])
    config = json.loads((out / "models" / "initial" / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe_thinker"
    assert info["encoder"]["changed"], info["encoder"]
    report = (out / "report.md").read_text()
    assert "tiny random-weight\nQwen3-Omni thinker (mixture of experts)" in report
    assert "The audio encoder was trained: PASSED" in report
    result = json.loads((out / "run/eval/mmau/2/results.json").read_text())
    assert result["total"] == 8


def test_run_sh_demo_family_option(tmp_path) -> None:
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "CONDA_PREFIX": ""}
    run = ["bash", "run.sh", "--stage", "demo", "--dry_run", "--exp_dir", str(tmp_path)]
    done = subprocess.run([*run, "--family", "qwen3_omni_moe"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (f"-m local.demo --out {tmp_path}/demo-qwen3_omni_moe --family qwen3_omni_moe"
            in done.stderr)
    wrong = subprocess.run([*run, "--family", "qwen3"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0
    assert "--family takes one of: qwen2_5_omni qwen3_omni_moe; not 'qwen3'" in wrong.stderr


def test_the_demo_finds_the_repository_it_runs_train_py_in() -> None:
    """run.py reads conf/ and starts train.py from the repository root (not from local/)."""
    import yaml

    from local.demo.run import REPO, DemoSettings, train_command
    from tests.helpers import REPO as ROOT

    settings = DemoSettings()
    assert REPO == ROOT and (REPO / train_command(settings)[1]).is_file()
    assert settings.max_steps() == yaml.safe_load((ROOT / settings.config).read_text())["max_steps"]


def test_warmup_figure_plots_the_logged_loss() -> None:
    figure = warmup_figure({"log": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]})
    assert figure.panels[0].lines[0].points == [(1, 2.0), (2, 1.0)]
    assert figure.panels[0].xlabel == "warm-up step"


def test_train_py_gets_the_demo_thread_count() -> None:
    from local.demo.run import DemoSettings, train_env

    assert train_env(DemoSettings())["OMP_NUM_THREADS"] == "1"
    assert train_env(DemoSettings(threads=2))["OMP_NUM_THREADS"] == "2"


@pytest.mark.parametrize(
    ("change", "removed"),
    [({}, set()), ({"label_bias": 0.0}, {"run"}), ({"n_train": 8}, {"initial", "run"}),
     ({"seed": 1}, {"initial", "run"}), ({"family": "qwen3_omni_moe"}, {"initial", "run"})],
    ids=["same", "other-warm-up", "other-data", "other-seed", "other-family"])
def test_parts_built_from_other_settings_are_removed(tmp_path, change: dict[str, Any],
                                                     removed: set[str]) -> None:
    """A warm-up's and a run's markers name their inputs by path, so a demo re-run with other
    data or another warm-up must not reuse them (train.py would resume the old checkpoints)."""
    from dataclasses import replace

    from local.demo.run import (
        DemoSettings,
        clear_stale,
        data_settings,
        demo_warmup_settings,
        tiny_settings,
    )
    from local.util.fsio import is_done, mark_done

    built = DemoSettings(out=tmp_path)
    paths = built.paths
    mark_done(paths["data"], data_settings(built))
    mark_done(paths["random"], tiny_settings(built.seed))
    mark_done(paths["initial"], demo_warmup_settings(built))
    (paths["run"] / "checkpoint-25").mkdir(parents=True)
    now = replace(built, **change)
    inputs_done = (is_done(paths["data"], data_settings(now))
                   and is_done(paths["random"], tiny_settings(now.seed, now.family)))
    clear_stale(paths, now, inputs_done)
    assert {k for k in ("initial", "run") if not paths[k].exists()} == removed


def _results(eval_dir: Path, step: int, correct: int, total: int = 64) -> None:
    (eval_dir / str(step)).mkdir(parents=True)
    (eval_dir / str(step) / "results.json").write_text(json.dumps(
        {"accuracy": 100 * correct / total, "correct": correct, "total": total}))


def test_seeds_table_reads_first_and_last_step_of_each_run(tmp_path) -> None:
    from local.demo.seeds import render, seed_result, spread

    results = []
    for seed, (start, end) in enumerate([(16, 32), (20, 28), (18, 40)]):
        folder = tmp_path / f"seed{seed}"
        for step, correct in ((0, start), (25, 1), (100, end)):
            _results(folder, step, correct)
        results.append(seed_result(seed, folder, wall_s=60.0))
    assert [(r.first_step, r.last_step) for r in results] == [(0, 100)] * 3
    assert [r.gain for r in results] == [25.0, 12.5, 34.375]
    summary = spread(results)
    assert summary["range"] == pytest.approx(34.375 - 12.5)
    assert summary["mean_gain"] == pytest.approx((25.0 + 12.5 + 34.375) / 3)
    text = render(results)
    assert "| 1 | 31.25% (20/64) | 43.75% (28/64) | 100 | +12.50 | 60 |" in text
    assert "mean gain +23.96 points" in text and "spread 21.88 points" in text
    assert "The mean gain is larger than the spread" in text


def test_seeds_refuses_a_run_without_a_checkpoint_evaluated(tmp_path) -> None:
    from local.demo.seeds import seed_result

    _results(tmp_path, 0, 16)
    with pytest.raises(SystemExit, match="at least one checkpoint"):
        seed_result(0, tmp_path)
