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

import pytest
import torch
from safetensors.torch import save_file

from local.demo.plots import warmup_figure
from local.demo.report import DEMO_SET_TITLE, encoder_change
from local.demo.warmup import answer_labels, pick_label
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
    # The run's report (local.report) inside the demo's, every plot drawn from data.
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
