"""Test helpers for training: small GRPO configs, synthetic rows, a trainer on a tiny model, and
train.py runs to cut, resume and compare (single process and torchrun)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors.torch import load_file

from local.core.models import load_model_and_processor
from local.core.records import Record
from local.core.rewards import completion_text
from local.demo.data import _wav_bytes, make_items, write_demo_data
from local.train.config import parse_args
from local.train.dataset import training_row
from local.train.trainer import AudioGRPOTrainer
from tests.helpers import CACHE, REPO, tiny_checkpoint

# Logged values that measure the machine, not the training.
TIMING_KEYS = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def vowel_reward(completions: list[Any], **_: Any) -> list[float]:
    """A reward a random tiny model earns some of the time, with spread within each group:
    the share of the completion's characters that are 'e'."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [t.count("e") / max(1, len(t)) for t in texts]


class IdRecorder:
    """A reward that records the row ids it was given (TRL passes every dataset column)."""

    __name__ = "ids"

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float]:
        self.seen.append(list(kwargs["id"]))
        return vowel_reward(completions)


def small_config(output_dir: Path, **overrides: Any):
    argv = ["--output_dir", str(output_dir), "--use_cpu", "true", "--bf16", "false",
            "--gradient_checkpointing", "false", "--model_dtype", "float32",
            "--num_generations", "4", "--per_device_train_batch_size", "8",
            "--gradient_accumulation_steps", "1", "--max_completion_length", "8",
            "--temperature", "1.0", "--learning_rate", "1e-3", "--max_steps", "3",
            "--save_strategy", "no", "--log_completions", "false", "--logging_steps", "1"]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    config, _ = parse_args(argv)
    return config


def synthetic_rows(n: int, seed: int = 0) -> datasets.Dataset:
    rows = []
    for i, item in enumerate(make_items(n, seed)):
        record = Record(id=f"syn-{i}", audio=_wav_bytes(item.audio), question=item.question,
                        choices=item.choices, answer=item.answer)
        rows.append(training_row(record, "default"))
    return datasets.Dataset.from_list(rows)


def make_trainer(family: str, output_dir: Path, *, rows: int = 8, reward=vowel_reward,
                 forward_audio_in_loss: bool = True, peft_config: Any = None,
                 **overrides: Any) -> AudioGRPOTrainer:
    loaded = load_model_and_processor(str(tiny_checkpoint(family)), dtype="float32")
    return AudioGRPOTrainer(
        model=loaded.model, processing_class=loaded.processor, family=loaded.family,
        reward_funcs=[reward], args=small_config(output_dir, **overrides),
        train_dataset=synthetic_rows(rows), forward_audio_in_loss=forward_audio_in_loss,
        peft_config=peft_config)


def audio_encoder_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "audio_tower." in k}


# -- train.py runs: cut after checkpoint N, resume, compare with the uninterrupted run ----------

def length_reward(completions: list[Any], **_: Any) -> list[float]:
    """Characters of each completion: random tokens of a tiny model differ in length, so every
    group has spread and every step moves the weights."""
    return [len(completion_text(c)) / 64 for c in completions]


def demo_data_small() -> Path:
    """The demo's synthetic data at a small size (32 train, 8 eval), written once under
    .cache/tests: `avqa/` and `mmau/`."""
    return write_demo_data(CACHE / "demo-data-small", n_train=32, n_eval=8)


def train_argv(family: str, out: Path, max_steps: int = 3) -> list[str]:
    """The demo's configuration, a few steps, a reward with spread (so the weights move).

    The reward `length` must be registered: REWARDS["length"] = length_reward in-process, or
    tests/train_entry.py under torchrun. Every checkpoint keeps its optimizer states
    (keep_optimizer_states all), as each was when it was the newest: `cut_after` copies a run
    as a kill right after one of them would have left it."""
    return ["--config", str(REPO / "conf/demo.yaml"),
            "--model_name_or_path", str(tiny_checkpoint(family)),
            "--train_data", str(demo_data_small() / "avqa"), "--output_dir", str(out),
            "--max_steps", str(max_steps), "--save_steps", "1", "--max_completion_length", "6",
            "--num_generations", "4", "--per_device_train_batch_size", "4",
            "--log_completions", "false", "--keep_optimizer_states", "all",
            "--reward_funcs", "length"]


def cut_after(run: Path, step: int, copy: Path) -> Path:
    """`run` as a kill right after checkpoint-`step` would have left it (later saves absent)."""
    shutil.copytree(run, copy)
    for later in copy.glob("checkpoint-*"):
        if int(later.name.split("-")[1]) > step:
            shutil.rmtree(later)
    return copy


def assert_same_run(full: Path, resumed: Path, step: int) -> None:
    """Final weights bit-identical, every logged metric equal (timings aside)."""
    a = load_file(full / f"checkpoint-{step}" / "model.safetensors")
    b = load_file(resumed / f"checkpoint-{step}" / "model.safetensors")
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ after resume, e.g. {differ[:3]}"
    logs = [json.loads((run / f"checkpoint-{step}" / "trainer_state.json").read_text())
            ["log_history"] for run in (full, resumed)]
    logs = [[{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in log]
            for log in logs]
    assert [e["step"] for e in logs[0]] == list(range(1, step + 1))
    assert logs[1] == logs[0]
