"""Rollout-time audio of AudioGRPOTrainer: which clip a row gets, cut clips, unusable clips.

- Decoded clips are keyed by the row's audio, not its id (two rows may share an id).
- A clip longer than the window is cut with one warning per clip, naming it, and the metric
  `audio/truncated_clips` is the rollout's count.
- An undecodable clip (or NaN/inf samples) found at rollout time: with `bad_records: skip` the
  row is replaced (all G copies by the same other training row, so the batch keeps its shape and
  groups), with a warning naming it and the metric `audio/replaced_rows`; with `bad_records:
  raise` the run stops with one clear message (train.py exits without a traceback).
- A tokenizer-only processing class is refused with a message naming what is expected.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from local.core.models import load_model_and_processor
from local.train.trainer import AudioGRPOTrainer, UnusableClipError
from tests.helpers import encode, tiny_checkpoint, tone
from tests.helpers_train import IdRecorder, make_trainer, small_config, synthetic_rows, vowel_reward

G = 4


def _rollout_rows(trainer: AudioGRPOTrainer, rows: list[dict]) -> list[dict]:
    return [rows[i // G] for i in range(len(rows) * G)]  # each prompt G times, as sampled


def test_rows_sharing_an_id_keep_their_own_audio(tmp_path: Path) -> None:
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2)
    first = dict(trainer.train_dataset[0], id="dup", audio_bytes=encode(tone(1.0, 440), 16_000))
    second = dict(first, audio_bytes=encode(tone(2.0, 880), 16_000))
    clips = trainer._decode_rows([first, second, first])
    assert len(clips[0]) == 16_000 and len(clips[1]) == 32_000
    assert clips[2] is clips[0]  # the same audio is still decoded once


def test_long_clips_warn_once_each_and_the_metric_is_per_rollout(tmp_path: Path,
                                                                 caplog) -> None:
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2, max_audio_duration_in_seconds=0.5)
    trainer.model.train()
    rows = _rollout_rows(trainer, [trainer.train_dataset[0], trainer.train_dataset[1]])
    with caplog.at_level(logging.WARNING, logger="local.train.trainer"):
        for _ in range(2):
            trainer._generate_and_score_completions(rows)
    assert trainer._metrics["train"]["audio/truncated_clips"] == [2, 2]  # not a running total
    warnings = [r.getMessage() for r in caplog.records if "cut to" in r.getMessage()]
    assert len(warnings) == 2  # once per clip, not per row or rollout
    assert {w.split(":")[0] for w in warnings} == {"syn-0", "syn-1"}


def _bad(kind: str, row: dict) -> dict:
    if kind == "undecodable-bytes":
        return dict(row, id="bad-row", audio_bytes=b"RIFF not audio")
    samples = tone(1.0).astype(np.float32)
    samples[100] = np.nan if kind == "nan-samples" else np.inf
    return dict(row, id="bad-row", audio_bytes=None, audio_array=samples, sampling_rate=16_000)


def test_unusable_clip_is_replaced_with_bad_records_skip(tmp_path: Path, caplog) -> None:
    recorder = IdRecorder()
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=3, reward=recorder, bad_records="skip")
    trainer.model.train()
    dataset = trainer.train_dataset
    rows = _rollout_rows(trainer, [_bad("undecodable-bytes", dataset[0]), dataset[1]])
    with caplog.at_level(logging.WARNING, logger="local.train.trainer"):
        out = trainer._generate_and_score_completions(rows)
    assert out["prompt_ids"].shape[0] == 2 * G and out["input_features"].shape[0] == 2 * G
    ids = recorder.seen[-1]  # the rows TRL scored
    assert "bad-row" not in ids and ids[G:] == ["syn-1"] * G
    assert len(set(ids[:G])) == 1 and ids[0] in {"syn-0", "syn-1", "syn-2"}  # one replacement
    assert trainer._metrics["train"]["audio/replaced_rows"] == [G]
    assert [r for r in caplog.records if "bad-row" in r.getMessage()]  # warned, named

    trainer._generate_and_score_completions(rows)  # drawn again: replaced, warned only once
    assert trainer._metrics["train"]["audio/replaced_rows"] == [G, G]
    assert len([r for r in caplog.records if "bad-row" in r.getMessage()]) == 1
    assert trainer.audio_stats["bad_clips"] == 1


@pytest.mark.parametrize("kind", ["undecodable-bytes", "nan-samples", "inf-samples"])
def test_every_kind_of_unusable_clip_gets_the_same_replacement(tmp_path: Path,
                                                               kind: str) -> None:
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=3, bad_records="skip")
    dataset = trainer.train_dataset
    bad = _bad(kind, dataset[0])
    rows, clips = trainer._rollout_rows([bad, dataset[1], bad])
    assert rows[0] is not bad and rows[0]["id"] != "bad-row" and rows[2] is rows[0]
    assert rows[1]["id"] == "syn-1"
    assert len(clips) == 3 and all(np.isfinite(c).all() for c in clips)
    again, _ = trainer._rollout_rows([bad])  # the same replacement each time (and on each rank)
    assert again[0]["id"] == rows[0]["id"]


def test_unusable_clip_stops_the_run_with_bad_records_raise(tmp_path: Path) -> None:
    trainer = make_trainer("qwen2_audio", tmp_path, rows=2, bad_records="raise")
    trainer.model.train()
    rows = _rollout_rows(trainer, [_bad("undecodable-bytes", trainer.train_dataset[0])])
    with pytest.raises(UnusableClipError, match="bad-row: cannot decode audio.*bad_records"):
        trainer._generate_and_score_completions(rows)


def test_train_py_stops_cleanly_on_an_unusable_clip(tmp_path: Path, monkeypatch) -> None:
    """bad_records: raise, a clip that only fails at rollout time: train.py ends with one line
    (SystemExit with the message: no traceback), not an exception from inside TRL."""
    import train

    dataset = synthetic_rows(2)
    bad = dataset.to_list()
    bad[0] = _bad("undecodable-bytes", bad[0])
    rows = type(dataset).from_list(bad)
    report = type("Report", (), {"summary": lambda self: "2 rows"})()
    monkeypatch.setattr(train, "build_train_dataset", lambda *a, **k: (rows, report))
    argv = ["--model_name_or_path", str(tiny_checkpoint("qwen2_audio")),
            "--output_dir", str(tmp_path / "run"), "--use_cpu", "true", "--bf16", "false",
            "--model_dtype", "float32", "--gradient_checkpointing", "false",
            "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
            "--max_completion_length", "4", "--max_steps", "1", "--save_strategy", "no",
            "--report_to", "none", "--bad_records", "raise", "--log_completions", "false"]
    with pytest.raises(SystemExit) as stop:
        train.main(argv)
    assert "bad-row: cannot decode audio" in str(stop.value.code)


def test_a_tokenizer_is_not_an_audio_processor(tmp_path: Path) -> None:
    loaded = load_model_and_processor(str(tiny_checkpoint("qwen2_5_omni")), dtype="float32")
    with pytest.raises(TypeError, match="audio processor.*feature_extractor.*got .*Tokenizer"):
        AudioGRPOTrainer(model=loaded.model, processing_class=loaded.processor.tokenizer,
                         family=loaded.family, reward_funcs=[vowel_reward],
                         args=small_config(tmp_path), train_dataset=synthetic_rows(2))
