"""Record validation and row round-trips (the one record format of every dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from local.core.records import Record, RecordError, from_row, to_rows
from tests.helpers import encode

WAV = encode(np.zeros(800, dtype=np.float32), 16_000)  # 50 ms of silence

# ----------------------------------------------------------------------------------- Record

def make(**overrides: object) -> Record:
    args = {"id": "r1", "audio": "a.wav", "question": "Q?", "choices": ["a", "b"],
            "answer": "b", **overrides}
    return Record(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"id": ""}, "non-empty", id="empty-id"),
        pytest.param({"id": 7}, "non-empty strings", id="non-string-id"),
        pytest.param({"answer": "c"}, "not one of the choices", id="answer-not-a-choice"),
        pytest.param({"answer": "B"}, "not one of the choices", id="letter-is-not-option-text"),
        pytest.param({"choices": ["a"], "answer": "a"}, "at least two", id="one-choice"),
        pytest.param({"choices": "ab", "answer": "a"}, "at least two", id="choices-a-string"),
        pytest.param({"choices": ["a", 2], "answer": "a"}, "must be strings", id="numeric-choice"),
        pytest.param({"question": "  "}, "question is empty", id="blank-question"),
        pytest.param({"audio": np.zeros(10)}, "sampling_rate", id="waveform-without-rate"),
        pytest.param({"audio": b""}, "empty", id="empty-bytes"),
        pytest.param({"audio": 3.0}, "not a path", id="audio-of-wrong-type"),
        pytest.param({"sampling_rate": -1}, "positive", id="negative-rate"),
        pytest.param({"meta": []}, "meta must be a dict", id="meta-not-dict"),
    ],
)
def test_record_validation_names_the_record(overrides: dict, message: str) -> None:
    with pytest.raises(RecordError, match=message) as info:
        make(**overrides)
    assert "r1" in str(info.value) or "id" in overrides


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"choices": ["x", "x", "y"], "answer": "x"}, id="duplicate-choices-legal"),
        pytest.param({"audio": None}, id="no-audio-kept-for-evaluation"),
        pytest.param({"audio": Path("a.wav")}, id="path-object"),
        pytest.param({"audio": bytearray(b"RIFF")}, id="bytearray"),
        pytest.param({"audio": np.zeros(4, np.float32), "sampling_rate": 8000}, id="waveform"),
        pytest.param({"choices": ["yes", "no", "None", "None"], "answer": "no"},
                     id="mmsu-none-padding-legal"),
    ],
)
def test_record_accepts(overrides: dict) -> None:
    rec = make(**overrides)
    assert rec.answer in rec.choices
    assert rec.audio is None or isinstance(rec.audio, (str, bytes, np.ndarray))


def test_rows_round_trip_through_a_real_dataset() -> None:
    records = [
        make(id="p", audio="x/a.wav", meta={"task": "sound", "category": ["Reasoning"]}),
        make(id="b", audio=WAV, meta={"key": "k", "nested": {"a": 1}}),
        make(id="w", audio=np.linspace(0, 1, 5, dtype=np.float32), sampling_rate=8000),
        make(id="n", audio=None, choices=["x", "x"], answer="x"),
    ]
    ds = datasets.Dataset.from_list(to_rows(records))
    assert {"answer", "choices"} <= set(ds.column_names)  # the columns rewards read
    back = [from_row(row) for row in ds]
    assert back == records
    assert isinstance(back[1].audio, bytes) and back[2].sampling_rate == 8000


def test_to_json_is_serialisable_and_from_row_reads_it() -> None:
    rec = make(audio=WAV, meta={"difficulty": "easy"})
    text = json.dumps(rec.to_json())
    back = from_row(json.loads(text))
    assert back.audio is None and back.meta == {"difficulty": "easy"}


def test_from_row_names_missing_keys() -> None:
    with pytest.raises(RecordError, match="missing keys"):
        from_row({"id": "x", "question": "q"})
