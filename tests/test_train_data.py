"""Training rows: bad records are skipped with a warning and a count, or stop the run; an unusable
training file stops train.py before the model loads, with one line naming it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.core.audio import AudioError
from local.core.records import RecordError
from local.train.dataset import build_train_dataset
from tests.helpers import REPO
from tests.helpers_train import make_trainer
from tests.sources import WAV, avqa_row, save_avqa

BAD_ROWS = [
    pytest.param(avqa_row(1, question="How many? A. one B. two"), "no 'Choices:' block",
                 id="question-without-choices"),
    pytest.param(avqa_row(1, answer="E. five"), "not one of the choices",
                 id="answer-not-a-choice"),
    pytest.param(avqa_row(1, audio=None), "no audio", id="no-audio-at-all"),
    pytest.param(avqa_row(1, audio=b""), "no audio", id="empty-audio-bytes"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS)
def test_bad_records_are_skipped_with_a_count_and_a_warning(tmp_path: Path, caplog, bad,
                                                            reason: str) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row(0), bad, avqa_row(2)])
    with caplog.at_level(logging.WARNING):
        ds, report = build_train_dataset(path, "avqa")
    assert (len(ds), report.read, report.skipped) == (2, 2, 1)
    assert report.reasons[0][0] == "avqa-train-1" and reason in report.reasons[0][1]
    assert "skipped 1 bad record" in caplog.text
    assert [row["id"] for row in ds] == ["avqa-train-0", "avqa-train-2"]  # original row numbers
    assert ds[1]["audio_bytes"] == WAV and ds[1]["answer"] == "two"


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS)
def test_bad_records_stop_the_run_when_configured(tmp_path: Path, bad, reason: str) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row(0), bad])
    with pytest.raises(RecordError, match="row 1") as error:
        build_train_dataset(path, "avqa", errors="raise")
    assert reason in str(error.value) and "bad_records: skip" in str(error.value)


def test_no_usable_record_is_an_error_not_an_empty_run(tmp_path: Path) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row(0, audio=None), avqa_row(1, answer="E. x")])
    with pytest.raises(RecordError, match="no usable training records"):
        build_train_dataset(path, "avqa")


def test_rows_carry_the_prompt_and_reward_columns(tmp_path: Path) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row()])
    ds, _ = build_train_dataset(path, "avqa", template="think")
    row = ds[0]
    assert row["choices"] == ["one", "two"] and row["answer"] == "two"
    content = row["prompt"][0]["content"]
    assert [part["type"] for part in content] == ["audio", "text"]
    assert "<think> </think>" in content[1]["text"]


def test_corrupt_audio_stops_training_with_the_item_named(tmp_path: Path) -> None:
    """Bytes that pass the cheap check but do not decode: the rollout names the row."""
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2)
    row = dict(trainer.train_dataset[0], id="avqa-train-7", audio_bytes=b"RIFF not audio")
    with pytest.raises(AudioError, match="avqa-train-7: cannot decode audio"):
        trainer._decode_rows([row])


# -- an unusable training file stops train.py before the model loads, with one clear line -----

def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _avqa_copy(tmp_path: Path, damage) -> Path:
    root = save_avqa(tmp_path / "avqa", [avqa_row()])
    damage(root / "train")
    return root


BROKEN_DATA = [  # (train_format, builds the path, what the line must say)
    pytest.param("avqa", lambda t: t / "missing", "not found", id="avqa-missing-folder"),
    pytest.param("avqa", lambda t: (t / "empty").mkdir() or t / "empty", "no split folder",
                 id="avqa-folder-without-splits"),
    pytest.param("avqa", lambda t: _write(t / "q.json", "[]"), "--train_format mmau",
                 id="avqa-given-a-json-file"),
    pytest.param("avqa", lambda t: _avqa_copy(t, lambda s: _truncate(s / "state.json", 20)),
                 "cannot read", id="avqa-truncated-state-json"),
    pytest.param("avqa", lambda t: _avqa_copy(
        t, lambda s: _truncate(next(s.glob("*.arrow")), 100)), "cannot read",
                 id="avqa-truncated-arrow"),
    pytest.param("avqa", lambda t: save_avqa(t / "avqa", [avqa_row(0, audio=None),
                                                           avqa_row(1, answer="E. x")]),
                 "no usable training records", id="avqa-no-usable-row"),
    pytest.param("mmau", lambda t: t / "missing.json", "not found", id="mmau-missing-file"),
    pytest.param("mmau", lambda t: _write(t / "q.json", '[{"id": "a", "audio_id"'),
                 "not valid JSON", id="mmau-truncated-json"),
    pytest.param("mmau", lambda t: _write(t / "q.json", ""), "not valid JSON",
                 id="mmau-empty-file"),
    pytest.param("mmau", lambda t: _write(t / "q.json", '{"id": "a"}'), "expected a JSON list",
                 id="mmau-not-a-list"),
    pytest.param("mmau", lambda t: _write(t / "q.json", json.dumps(
        [{"id": "a", "audio_id": "gone.wav", "question": "q", "choices": ["x", "y"],
          "answer": "x"}])), "no usable training records", id="mmau-no-usable-row"),
    pytest.param("mmsu", lambda t: t / "missing", "not found", id="mmsu-missing-folder"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("data_format", "make", "says"), BROKEN_DATA)
def test_unusable_training_data_stops_train_py_before_the_model_loads(
        tmp_path: Path, monkeypatch, data_format: str, make, says: str) -> None:
    import train

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded before the training data was checked")

    monkeypatch.setattr(train, "policy_source", no_model)
    monkeypatch.setattr(train, "load_model_and_processor", no_model)
    data = make(tmp_path)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        train.main(["--config", str(REPO / "conf/demo.yaml"), "--model_name_or_path",
                    str(tmp_path / "model"), "--train_data", str(data),
                    "--train_format", data_format, "--output_dir", str(out)])
    line = stop.value.code
    assert isinstance(line, str) and "\n" not in line, line  # a message: exit status 1
    assert line.startswith("train.py: ") and str(data) in line and says in line, line
    assert not out.exists()  # nothing written for a run that cannot start


@pytest.mark.slow
def test_train_py_reports_unusable_data_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    data = _write(tmp_path / "q.json", '[{"id": "a", "audio_id"')
    result = subprocess.run(
        [sys.executable, "train.py", "--config", "conf/demo.yaml", "--model_name_or_path",
         str(tmp_path / "model"), "--train_data", str(data), "--train_format", "mmau",
         "--output_dir", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: ") and str(data) in last and "not valid JSON" in last


# -- a training row's audio: every reader takes it from the one definition ---------------------

@pytest.mark.parametrize("kind", ["path", "bytes", "samples"])
def test_every_reader_of_a_training_row_gets_its_audio(tmp_path: Path, kind: str) -> None:
    """Rollouts and the demo's warm-up read any audio column (the warm-up ignored samples)."""
    import datasets
    import numpy as np

    from local.core.collate import load_clip
    from local.core.models import QWEN2_5_OMNI
    from local.core.records import Record
    from local.demo.warmup import row_clip
    from local.train.dataset import training_row
    from local.train.rollout_clips import audio_source
    from tests.helpers import encode, tone

    wave = tone(0.5, 440)
    (tmp_path / "a.wav").write_bytes(encode(wave, 16_000))
    audio = {"path": str(tmp_path / "a.wav"), "bytes": encode(wave, 16_000),
             "samples": wave}[kind]
    record = Record(id="r", audio=audio, question="Q?", choices=["a", "b"], answer="a",
                    sampling_rate=16_000)
    expected = load_clip(audio, family=QWEN2_5_OMNI, sampling_rate=16_000).array
    row = datasets.Dataset.from_list([training_row(record, "default")])[0]  # as TRL gets it
    from_rollout = load_clip(audio_source(row), family=QWEN2_5_OMNI, sampling_rate=16_000).array
    np.testing.assert_array_equal(from_rollout, expected)
    np.testing.assert_array_equal(row_clip(row, QWEN2_5_OMNI), expected)


def test_missing_audio_files_follow_the_bad_records_policy(tmp_path: Path, caplog) -> None:
    """MMAU/MMSU-style data: a missing audio file is a bad record like any other."""
    audio = tmp_path / "a.wav"
    audio.write_bytes(WAV)
    items = [{"id": i, "audio_id": name, "question": "Q?", "choices": ["x", "y"], "answer": "x"}
             for i, name in (("ok", "a.wav"), ("gone", "gone.wav"))]
    path = _write(tmp_path / "q.json", json.dumps(items))
    with caplog.at_level(logging.WARNING):
        ds, report = build_train_dataset(path, "mmau", audio_dir=tmp_path)
    assert [row["id"] for row in ds] == ["ok"] and report.skipped == 1
    assert report.reasons[0][0] == "gone" and "audio file not found" in report.reasons[0][1]
    assert "gone" in caplog.text  # warned, naming it
    with pytest.raises(RecordError, match="gone: audio file not found") as error:
        build_train_dataset(path, "mmau", audio_dir=tmp_path, errors="raise")
    assert "bad_records: skip" in str(error.value)
