"""The curation table: per training item, accuracy with and without the audio, their difference
and whether a GRPO group would have zero spread; one parquet file, written atomically.

Columns (one row per item, in the training data's order):
  id, category            the training row's id (what a selection lists) and its task: the
                          record's `category` / `task` (MMAU-style, the demo's), else AVQA's
                          question word (`question_type`)
  acc_audio, acc_no_audio share of the k samples that are right, with / without the audio
  audio_contribution      acc_audio - acc_no_audio (-1..1): what hearing the clip adds
  zero_spread             all k with-audio samples right, or all wrong: a GRPO group of this
                          item would have equal rewards, zero advantage and no gradient
  correct_audio, correct_no_audio, responses_audio, responses_no_audio, errors_audio,
  errors_no_audio         the k verdicts, answers and errors of each pass
  answer                  the right option
The file's metadata (`curate` key) holds the model, the settings, their hash and the commit.

Example:
    >>> rows = table_rows(records, logs_audio, logs_no_audio, k=4)     # doctest: +SKIP
    >>> write_table(rows, Path("data/curate/m/abc/table.parquet"), meta)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from local.core.records import Record
from local.util.fsio import atomic_path

TABLE_FILE = "table.parquet"
META_KEY = b"curate"
QUESTION_WORDS = ("what", "where", "which", "who", "why", "when", "how", "is", "are", "does",
                  "do", "can")


def question_type(question: str) -> str:
    """AVQA's question type as the question's leading word (the processed set has no column).

    >>> question_type("Where is the sound coming from?"), question_type("The man is ...?")
    ('where', 'other')
    """
    match = re.match(r"\s*([A-Za-z]+)", question)
    word = match.group(1).lower() if match else ""
    return word if word in QUESTION_WORDS else "other"


def category_of(record: Record) -> str:
    """An item's task: its `category` or `task` (MMAU, the demo), else its question word."""
    meta = record.meta or {}
    for key in ("category", "task"):
        if meta.get(key):
            return str(meta[key])
    return question_type(record.question)


def table_rows(records: Sequence[Record], audio: dict[str, dict[str, Any]],
               no_audio: dict[str, dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """One row per record from the two passes' logs (`local.curate.scoring`); an item missing
    from a log, or logged with another k, is an error naming it."""
    rows = []
    for record in records:
        passes = {}
        for name, logs in (("audio", audio), ("no_audio", no_audio)):
            entry = logs.get(record.id)
            if entry is None:
                raise ValueError(f"item {record.id!r} has no {name} samples: the pass did "
                                 "not finish; re-run the curation to complete it")
            if len(entry["correct"]) != k:
                raise ValueError(f"item {record.id!r}: {len(entry['correct'])} {name} "
                                 f"samples logged, k={k}")
            passes[name] = entry
        acc = {name: sum(e["correct"]) / k for name, e in passes.items()}
        rows.append({
            "id": record.id, "category": category_of(record), "answer": record.answer,
            "acc_audio": acc["audio"], "acc_no_audio": acc["no_audio"],
            "audio_contribution": acc["audio"] - acc["no_audio"],
            "zero_spread": acc["audio"] in (0.0, 1.0),
            **{f"{field}_{name}": passes[name][field] for name in passes
               for field in ("correct", "responses", "errors")},
        })
    return rows


SCHEMA = pa.schema([
    ("id", pa.string()), ("category", pa.string()), ("answer", pa.string()),
    ("acc_audio", pa.float64()), ("acc_no_audio", pa.float64()),
    ("audio_contribution", pa.float64()), ("zero_spread", pa.bool_()),
    ("correct_audio", pa.list_(pa.int8())), ("responses_audio", pa.list_(pa.string())),
    ("errors_audio", pa.list_(pa.string())),
    ("correct_no_audio", pa.list_(pa.int8())), ("responses_no_audio", pa.list_(pa.string())),
    ("errors_no_audio", pa.list_(pa.string())),
])


def write_table(rows: Sequence[dict[str, Any]], path: Path, meta: dict[str, Any]) -> Path:
    """`rows` as parquet at `path` (temporary name, then renamed), `meta` in its metadata."""
    table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, default=str).encode()})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    return path


def read_table(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, meta) of a table `write_table` wrote."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table.to_pylist(), meta
