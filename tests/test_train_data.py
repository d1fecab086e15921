"""Training rows: bad records are skipped with a warning and a count, or stop the run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from local.audio import AudioError
from local.records import RecordError
from local.train_data import build_train_dataset
from tests.helpers_train import make_trainer
from tests.test_readers import WAV, avqa_row, save_avqa

BAD_ROWS = [
    pytest.param(avqa_row(question="How many? A. 3 B. 4"), "no 'Choices:' block",
                 id="question-without-choices"),
    pytest.param(avqa_row(answer="E. five"), "not one of the choices", id="answer-not-a-choice"),
    pytest.param(avqa_row(audio=None), "no audio", id="no-audio-at-all"),
    pytest.param(avqa_row(audio=b""), "no audio", id="empty-audio-bytes"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS)
def test_bad_records_are_skipped_with_a_count_and_a_warning(tmp_path: Path, caplog, bad,
                                                            reason: str) -> None:
    path = save_avqa(tmp_path, [avqa_row(), bad, avqa_row(file_name="c.wav")])
    with caplog.at_level(logging.WARNING):
        ds, report = build_train_dataset(path, "avqa")
    assert (len(ds), report.read, report.skipped) == (2, 2, 1)
    assert report.reasons[0][0] == "avqa-train-1" and reason in report.reasons[0][1]
    assert "skipped 1 bad record" in caplog.text
    assert [row["id"] for row in ds] == ["avqa-train-0", "avqa-train-2"]  # original row numbers
    assert ds[1]["audio_bytes"] == WAV and ds[1]["answer"] == "One"


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS)
def test_bad_records_stop_the_run_when_configured(tmp_path: Path, bad, reason: str) -> None:
    path = save_avqa(tmp_path, [avqa_row(), bad])
    with pytest.raises(RecordError, match="row 1") as error:
        build_train_dataset(path, "avqa", errors="raise")
    assert reason in str(error.value) and "bad_records: skip" in str(error.value)


def test_no_usable_record_is_an_error_not_an_empty_run(tmp_path: Path) -> None:
    path = save_avqa(tmp_path, [avqa_row(audio=None), avqa_row(answer="E. x")])
    with pytest.raises(RecordError, match="no usable training records"):
        build_train_dataset(path, "avqa")


def test_rows_carry_the_prompt_and_reward_columns(tmp_path: Path) -> None:
    path = save_avqa(tmp_path, [avqa_row()])
    ds, _ = build_train_dataset(path, "avqa", template="think")
    row = ds[0]
    assert row["choices"] == ["3", "One", "4", "2"] and row["answer"] == "One"
    content = row["prompt"][0]["content"]
    assert [part["type"] for part in content] == ["audio", "text"]
    assert "<think> </think>" in content[1]["text"]


def test_corrupt_audio_stops_training_with_the_item_named(tmp_path: Path) -> None:
    """Bytes that pass the cheap check but do not decode: the rollout names the row."""
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2)
    row = dict(trainer.train_dataset[0], id="avqa-train-7", audio_bytes=b"RIFF not audio")
    with pytest.raises(AudioError, match="avqa-train-7: cannot decode audio"):
        trainer._decode_rows([row])
