"""Record validation and row round-trips (the one record format of every dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from local.core.records import (
    AUDIO_COLUMNS,
    BAD_RECORD_POLICIES,
    Errors,
    Record,
    RecordError,
    audio_columns,
    from_row,
    row_audio,
    to_rows,
)
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


# ---------------------------------------------------------------- a row's audio: one definition

AUDIO_KINDS = [
    pytest.param("clips/a.wav", "audio_path", id="path"),
    pytest.param(WAV, "audio_bytes", id="bytes"),
    pytest.param(np.linspace(-0.5, 0.5, 800, dtype=np.float32), "audio_array", id="samples"),
]


def _same(a: object, b: object) -> bool:
    return np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


@pytest.mark.parametrize(("audio", "column"), AUDIO_KINDS)
def test_every_row_writer_sets_one_audio_column_and_row_audio_reads_it(
        audio: object, column: str) -> None:
    from local.train.dataset import training_row

    record = make(audio=audio, sampling_rate=16_000)
    for row in (record.to_row(), training_row(record, "default")):
        assert {c: row[c] is not None for c in AUDIO_COLUMNS} == {
            c: c == column for c in AUDIO_COLUMNS}
        assert _same(row_audio(row), audio)
    columns = audio_columns(audio)
    assert [c for c in AUDIO_COLUMNS if columns[c] is not None] == [column]
    assert columns[column] is audio


@pytest.mark.parametrize(("audio", "column"), AUDIO_KINDS)
def test_row_audio_reads_rows_back_from_arrow(audio: object, column: str) -> None:
    """Arrow returns samples as a list: row_audio gives the float32 array back."""
    from local.train.dataset import training_row

    record = make(audio=audio, sampling_rate=16_000)
    for row in datasets.Dataset.from_list([record.to_row(), training_row(record, "default")]):
        back = row_audio(row)
        assert _same(back, audio) and type(back) is type(audio)
        assert not isinstance(back, np.ndarray) or back.dtype == np.float32


def test_row_audio_of_a_row_without_audio_is_none() -> None:
    assert row_audio(dict.fromkeys(AUDIO_COLUMNS)) is None and row_audio({"id": "x"}) is None


# The column names are spelled in records.py only; elsewhere they come from AUDIO_COLUMNS /
# audio_columns / row_audio (`audio_path` is also a column name of some source layouts, so the
# check covers the two names that exist only in our rows).
ROW_ONLY_COLUMNS = ("audio_bytes", "audio_array")


def test_no_other_module_spells_the_row_audio_columns() -> None:
    import ast

    from tests.helpers import REPO

    found = []
    for path in sorted((REPO / "local").rglob("*.py")):
        if path == REPO / "local/core/records.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
                and n.body and isinstance(n.body[0], ast.Expr)}
        found += [f"{path.relative_to(REPO)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in ROW_ONLY_COLUMNS
                  and id(n) not in docs]
    assert found == [], "read/write a row's audio with local.core.records:\n" + "\n".join(found)


# ------------------------------------------------------------------ the one bad-record policy

def test_bad_record_policies_are_one_definition() -> None:
    from typing import get_args

    assert get_args(Errors) == BAD_RECORD_POLICIES == ("skip", "raise")


def test_every_bad_records_option_is_checked_by_the_one_check() -> None:
    from local.train.dataset import build_train_dataset
    from local.train.trainer import AudioGRPOTrainer

    for call in (lambda: build_train_dataset("unused", "avqa", errors="sometimes"),
                 lambda: AudioGRPOTrainer(family=None, bad_records="sometimes",  # type: ignore
                                          processing_class=None)):
        with pytest.raises(ValueError, match=r"bad_records='sometimes': use 'skip'"):
            call()
