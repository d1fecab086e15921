"""Training runs log to TensorBoard by default, with TRL's sampled completions beside the curves."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from local.core import rewards
from local.train.config import parse_args
from local.train.tracking import completions_markdown, set_up_tracking, wants
from tests.helpers import REPO
from tests.helpers_train import length_reward, train_argv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([], ["tensorboard"], id="built-in-default"),
        pytest.param(["--config", str(REPO / "conf/grpo.yaml")], ["tensorboard"], id="grpo-yaml"),
        pytest.param(["--config", str(REPO / "conf/demo.yaml")], ["tensorboard"], id="demo-yaml"),
        pytest.param(["--report_to", "none"], [], id="off"),
        pytest.param(["--report_to", "wandb"], ["wandb"], id="wandb"),
    ],
)
def test_report_to_defaults_to_tensorboard(argv: list[str], expected: list[str]) -> None:
    config, _ = parse_args(["--output_dir", "exp/x", "--use_cpu", "true", *argv])
    assert config.report_to == expected


def test_wandb_gets_a_project_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    set_up_tracking(["tensorboard"])
    import os

    assert "WANDB_PROJECT" not in os.environ
    set_up_tracking(["wandb"])
    assert os.environ["WANDB_PROJECT"] == "audio-grpo"
    assert wants("all", "wandb") and not wants([], "tensorboard")


def test_completions_table_is_markdown_with_every_column() -> None:
    import pandas as pd

    table = pd.DataFrame({"step": [1, 1], "prompt": ["q|1", "q2"], "completion": ["a\nb", "c"],
                          "accuracy": [1.0, 0.0], "advantage": [0.7, -0.7]})
    text = completions_markdown(table, rows=1)
    assert text.splitlines()[0] == "| prompt | completion | accuracy | advantage |"
    assert text.splitlines()[2] == "| q\\|1 | a b | 1.0 | 0.7 |" and len(text.splitlines()) == 3


@pytest.mark.slow
def test_a_short_cpu_run_writes_event_files_tensorboard_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default YAML's report_to through train.main: 2 steps on the tiny Omni; TensorBoard's
    own reader loads the logged scalars and the completion tables."""
    monkeypatch.setitem(rewards.REWARDS, "length", length_reward)
    out = tmp_path / "run"
    argv = train_argv("qwen2_5_omni", out, max_steps=2)
    argv[argv.index("--log_completions") + 1] = "true"
    train.main([*argv, "--report_to", "tensorboard"])
    events = sorted((out / "runs").rglob("events.out.tfevents.*"))
    assert events, f"no event files under {out / 'runs'}"
    scalars: dict[str, list[float]] = {}
    texts: list[str] = []
    for folder in {e.parent for e in events}:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
        texts += [t for t in acc.Tags()["tensors"] if t.startswith("completions")]
    for tag in ("train/loss", "train/reward", "train/rewards/length_reward/mean", "train/kl",
                "train/reward_std", "train/frac_reward_zero_std", "train/completions/mean_length",
                "train/completions/clipped_ratio", "train/learning_rate", "train/grad_norm"):
        assert len(scalars.get(tag, [])) == 2, (tag, " ".join(sorted(scalars)))
    assert texts, "the completion tables did not reach TensorBoard"


def test_the_run_record_names_the_code_that_trained(tmp_path: Path) -> None:
    import yaml

    from local.train.checkpoints import write_run_record
    from local.util.gitinfo import code_version

    config, model_args = parse_args(["--output_dir", str(tmp_path), "--use_cpu", "true"])
    write_run_record(tmp_path, config, model_args, ["train.py", "--use_cpu", "true"])
    record = yaml.safe_load((tmp_path / "resolved_config.yaml").read_text())
    assert record["code"] == code_version() and record["code"] != ""
    assert record["training"]["report_to"] == ["tensorboard"]
