"""Test helpers for training: small GRPO configs, synthetic rows, a trainer on a tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from local.core.models import load_model_and_processor
from local.core.records import Record
from local.demo.data import _wav_bytes, make_items
from local.train.config import parse_args
from local.train.dataset import training_row
from local.train.trainer import AudioGRPOTrainer
from tests.helpers import tiny_checkpoint


def vowel_reward(completions: list[Any], **_: Any) -> list[float]:
    """A reward a random tiny model earns some of the time, with spread within each group:
    the share of the completion's characters that are 'e'."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [t.count("e") / max(1, len(t)) for t in texts]


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
