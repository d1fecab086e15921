"""The demo: report helpers (fast, table-driven) and the whole pipeline at reduced size (slow)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from local.demo.plots import curves
from local.demo.report import encoder_change, group_spread, reward_names_and_weights
from local.demo.warmup import answer_labels, pick_label


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


def test_curves_read_trl_metric_names() -> None:
    history = [{"step": 1, "reward": 1.0, "rewards/format/mean": 0.5, "kl": 0.01,
                "completions/mean_length": 9.0, "reward_std": 0.4, "frac_reward_zero_std": 0.25},
               {"step": 1, "train_runtime": 3.0}]
    series = curves(history, ["format"], {1: {"mean_std": 0.3}})
    assert series["reward/format"] == [(1, 0.5)] and series["kl"] == [(1, 0.01)]
    assert series["groups with varied rewards"] == [(1, 0.75)]
    assert series["within-group std (logged completions)"] == [(1, 0.3)]


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
    for png in ("rewards", "kl", "completion_length", "reward_spread", "warmup_loss"):
        path = out / "plots" / f"{png}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert f"plots/{png}.png" in report
    # The before -> after table: step 0 (initial model) and every checkpoint, from results.json.
    steps = [int(m) for m in re.findall(r"^\| (\d+) \| `", report, flags=re.M)]
    assert steps == [0, 2, 4]
    for step in steps:
        result = json.loads((out / "run/eval/mmau" / str(step) / "results.json").read_text())
        assert result["total"] == 8 and f"{result['correct']}/8" in report
    assert (out / "models/initial/.done").exists() and (out / "run/checkpoint-4").is_dir()
    assert "Measured wall time" in report and "groups" in report
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
