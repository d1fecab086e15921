"""One record format for every dataset (readers of the real layouts: local.data).

A `Record` is one multiple-choice audio question: `answer` is the option TEXT and is always one
of `choices` (duplicates are legal: MMAU has 27 such items), or None where the benchmark
withholds it (the full MMAU test: such a record is asked, never scored or trained on). Audio
stays undecoded here (a path, encoded bytes, or a waveform with its rate); `local.core.audio`
decodes it when a batch needs it.

A row (`Record.to_row`, and the training rows of `local.train.dataset`) carries its audio in
exactly one of the `AUDIO_COLUMNS` (`audio_path` / `audio_bytes` / `audio_array`, the others
None): `audio_columns` writes them and `row_audio` reads them back, for every writer and reader.

Readers are generators, so a 55 GB dataset is never decoded (or even fully read) to get one
record. Bad rows follow the recipe's one policy (`skip_or_raise`, the `bad_records` option of
training): ``errors="skip"`` logs a warning, counts the row in a `ReadReport` and goes on;
``errors="raise"`` stops with a `RecordError` naming the row.

Example:
    >>> from local.core.records import Record, from_row
    >>> rec = Record(id="q1", audio="clip.wav", question="Who speaks?",
    ...              choices=["Man", "Woman"], answer="Woman", meta={"task": "speech"})
    >>> from_row(rec.to_row()) == rec
    True
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Errors = Literal["skip", "raise"]
BAD_RECORD_POLICIES: tuple[Errors, ...] = ("skip", "raise")  # = get_args(Errors); a test checks
MAX_LOGGED_SKIPS = 20  # individual warnings per read; the rest are only counted


class RecordError(ValueError):
    """A record or source row that cannot be used; the message names it and says what to do."""


AUDIO_COLUMNS = ("audio_path", "audio_bytes", "audio_array")  # a row's audio: one of them set


def audio_columns(audio: str | bytes | np.ndarray | list | None) -> dict[str, Any]:
    """The `AUDIO_COLUMNS` of a row holding `audio`: the one that fits it set, the others None.

    A path goes to `audio_path`, encoded bytes to `audio_bytes`, samples (an array, or the list
    Arrow stores) to `audio_array`.

    >>> audio_columns("clip.wav")
    {'audio_path': 'clip.wav', 'audio_bytes': None, 'audio_array': None}
    """
    return {"audio_path": audio if isinstance(audio, str) else None,
            "audio_bytes": audio if isinstance(audio, bytes) else None,
            "audio_array": audio if isinstance(audio, (np.ndarray, list)) else None}


def row_audio(row: dict[str, Any]) -> str | bytes | np.ndarray | None:
    """The audio a row carries: the first of `AUDIO_COLUMNS` set, None when none is.

    Samples come back as a float32 array (Arrow hands them back as a list).

    >>> row_audio({"audio_path": None, "audio_bytes": b"RIFF", "audio_array": None})
    b'RIFF'
    """
    name = next((c for c in AUDIO_COLUMNS if row.get(c) is not None), None)
    if name is None:
        return None
    audio = row[name]
    if name == "audio_array":
        return np.asarray(audio, dtype=np.float32)
    return bytes(audio) if isinstance(audio, bytearray) else audio


@dataclass
class Record:
    """One audio multiple-choice question, the same shape for every dataset.

    `audio` is a file path, encoded bytes (WAV/FLAC/...), a waveform (`sampling_rate` then
    required) or None (evaluation keeps items whose audio is missing and scores them wrong).
    """

    id: str
    audio: str | bytes | np.ndarray | None
    question: str
    choices: list[str]
    answer: str | None  # None: withheld (the full MMAU test): asked, never scored or trained on
    sampling_rate: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        label = f"record {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise RecordError(f"record id {self.id!r}: ids must be non-empty strings.")
        if isinstance(self.audio, Path):
            self.audio = str(self.audio)
        if isinstance(self.audio, bytearray):
            self.audio = bytes(self.audio)
        if not (self.audio is None or isinstance(self.audio, (str, bytes, np.ndarray))):
            raise RecordError(f"{label}: audio of type {type(self.audio).__name__} is not a "
                              "path, encoded bytes or a numpy waveform.")
        if isinstance(self.audio, (str, bytes)) and len(self.audio) == 0:
            raise RecordError(f"{label}: audio is empty; give a path, bytes, or None.")
        if isinstance(self.audio, np.ndarray) and not self.sampling_rate:
            raise RecordError(f"{label}: a waveform needs its sampling_rate.")
        if self.sampling_rate is not None and (
            not isinstance(self.sampling_rate, (int, np.integer)) or self.sampling_rate <= 0
        ):
            raise RecordError(f"{label}: sampling_rate {self.sampling_rate!r} must be a "
                              "positive integer.")
        if not isinstance(self.question, str) or not self.question.strip():
            raise RecordError(f"{label}: the question is empty.")
        if not isinstance(self.choices, (list, tuple)) or len(self.choices) < 2:
            raise RecordError(f"{label}: needs at least two choices, got {self.choices!r}.")
        self.choices = list(self.choices)
        bad = [c for c in self.choices if not isinstance(c, str)]
        if bad:
            raise RecordError(f"{label}: choices must be strings; {bad!r} are not.")
        if self.answer is not None and (not isinstance(self.answer, str)
                                        or self.answer not in self.choices):
            raise RecordError(f"{label}: answer {self.answer!r} is not one of the choices "
                              f"{self.choices!r}; the answer must be the option text exactly.")
        if not isinstance(self.meta, dict):
            raise RecordError(f"{label}: meta must be a dict, got {type(self.meta).__name__}.")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        same_audio = (
            np.array_equal(self.audio, other.audio)
            if isinstance(self.audio, np.ndarray) or isinstance(other.audio, np.ndarray)
            else self.audio == other.audio
        )
        return same_audio and (self.id, self.question, self.choices, self.answer,
                               self.sampling_rate, self.meta) == (
            other.id, other.question, other.choices, other.answer, other.sampling_rate,
            other.meta)

    def to_row(self) -> dict[str, Any]:
        """A flat dict for `datasets.Dataset.from_list` (see `from_row` for the way back).

        Audio goes to exactly one of `audio_path` / `audio_bytes` / `audio_array` (the others
        None); `meta` is a JSON string so rows with different meta keys share one schema.
        """
        audio = self.audio
        if isinstance(audio, np.ndarray):  # a plain list: one Arrow type for every row
            audio = np.asarray(audio, dtype=np.float32).tolist()
        return {
            "id": self.id,
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            **audio_columns(audio),
            "sampling_rate": int(self.sampling_rate) if self.sampling_rate else None,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict for JSONL: audio only as a path (bytes and arrays left out)."""
        return {
            "id": self.id,
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "audio_path": self.audio if isinstance(self.audio, str) else None,
            "meta": copy.deepcopy(self.meta),
        }


def from_row(row: dict[str, Any]) -> Record:
    """Rebuild a `Record` from `Record.to_row()` (or `to_json()`) output, e.g. a dataset row."""
    missing = [k for k in ("id", "question", "choices", "answer") if k not in row]
    if missing:
        raise RecordError(f"row {row.get('id', '?')!r}: missing keys {missing}; rows must come "
                          "from Record.to_row().")
    audio = row_audio(row)
    meta = row.get("meta") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    return Record(id=row["id"], audio=audio, question=row["question"],
                  choices=list(row["choices"]), answer=row["answer"],
                  sampling_rate=row.get("sampling_rate"), meta=meta)


@dataclass
class ReadReport:
    """What a reader did: records yielded, rows skipped (with reasons), audio files not found."""

    source: str = ""
    read: int = 0
    skipped: int = 0
    reasons: list[tuple[str, str]] = field(default_factory=list)
    missing_audio: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.source}: read {self.read} records, skipped {self.skipped}"
        if self.missing_audio:
            text += f", {len(self.missing_audio)} with missing audio (scored wrong in evaluation)"
        return text


def check_errors(errors: str, option: str = "errors") -> None:
    """Refuse a bad-record policy other than `BAD_RECORD_POLICIES` (`option`: how it was given)."""
    if errors not in BAD_RECORD_POLICIES:
        raise ValueError(f"{option}={errors!r}: use 'skip' (warn, count, go on) or 'raise'.")


def skip_or_raise(report: ReadReport, errors: Errors, row_id: str, err: Exception, *,
                  label: str | None = None, advice: str = "") -> None:
    """The one bad-record policy, for readers and the training set alike.

    "raise": a `RecordError` naming the source and the row (`label`, else `row_id`), then
    `advice`. "skip": the row is counted in `report`, its reason kept under `row_id`, and the
    first `MAX_LOGGED_SKIPS` are logged one warning each.
    """
    label = label or row_id
    if errors == "raise":
        raise RecordError(f"{report.source} {label}: {err}{advice}") from err
    report.skipped += 1
    report.reasons.append((row_id, str(err)))
    if report.skipped <= MAX_LOGGED_SKIPS:
        logger.warning("%s: skipping %s: %s", report.source, label, err)
    elif report.skipped == MAX_LOGGED_SKIPS + 1:
        logger.warning("%s: more rows skipped; see the ReadReport for all reasons.",
                       report.source)


def audio_from_cell(cell: Any, audio_dir: Path | None) -> str | bytes | None:
    """Undecoded audio from a dataset cell: {'bytes', 'path'} dict, a path string, or None."""
    if cell is None:
        return None
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
        if not cell:
            return None
    if isinstance(cell, (str, Path)):
        path = Path(cell)
        if audio_dir is not None and not path.is_absolute():
            path = audio_dir / path
        return str(path)
    raise RecordError(f"audio cell of type {type(cell).__name__} is neither a path nor a "
                      "{'bytes', 'path'} dict; was it decoded? Read with Audio(decode=False).")


def undecoded(ds: Any) -> Any:
    """Make sure the `audio` column (if an Audio feature) yields bytes/paths, never arrays."""
    import datasets

    features = getattr(ds, "features", None) or {}
    if isinstance(features.get("audio"), datasets.Audio):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
    return ds


def to_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    """`Record.to_row()` for many records, e.g. for `datasets.Dataset.from_list`."""
    return [r.to_row() for r in records]
