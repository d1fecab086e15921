"""The question-file benchmarks' shared steps (MMAU test-mini and full test, MMAR): every item of
the file with the record its reader made of it, the items a run asks, and the official-format
items written back.

A benchmark released as one question file (a JSON list, or JSON lines) is scored item by item
in file order: the first item with an id is the question, a later one with the same id is
counted wrong (`duplicate_question_reason`), an item the reader skipped is counted wrong with
its reason, and every item is written back with its prediction (empty where none, so the
official scripts count it wrong instead of dropping it).

Example:
    >>> from local.eval.benchmarks.question_file import align
    >>> [q.reason for q in align([{"id": "a"}, {"id": "a"}], [], ["no audio_id", "dup"])][0]
    'no audio_id'
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.core.records import ReadReport, Record
from local.eval.benchmarks.base import QuestionSet, prediction_fields
from local.eval.judge import duplicate_question_reason, item_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    """One item of the question file: its record, or None and why it is counted wrong."""

    index: int
    item: Any
    record: Record | None
    reason: str | None = None


@dataclass
class FileQuestions(QuestionSet):
    """The records to ask, and every item of the question file in order (`Question`)."""

    questions: list[Question] = field(default_factory=list)


def _same(record: Record, item: Any) -> bool:
    """Whether `record` was read from `item` (the reader keeps a deep copy of it as meta)."""
    return isinstance(item, dict) and record.id == item.get("id") and (
        json.dumps(record.meta, sort_keys=True, default=str)
        == json.dumps(item, sort_keys=True, default=str))


def align(raw: Sequence[Any], records: Sequence[Record], skipped: Sequence[str]
          ) -> list[Question]:
    """Each item of the question file with the record `read_mmau` made of it, in file order.

    The reader yields records in file order and skips the rest, each skip with a reason
    (`skipped`, in order). The first item with an id is the question; every later item with the
    same id is a duplicate, counted wrong (`duplicate_question_reason`) even if it is readable.
    """
    pending, reasons = iter(records), iter(skipped)
    record = next(pending, None)
    first_at: dict[str, int] = {}
    questions = []
    for index, item in enumerate(raw):
        mine = record if record is not None and _same(record, item) else None
        if mine is not None:
            record = next(pending, None)
        reason = None if mine is not None else next(reasons, "skipped by the reader")
        ident = item_id(item, index)
        if ident in first_at:
            mine, reason = None, duplicate_question_reason(first_at[ident])
        first_at.setdefault(ident, index)
        questions.append(Question(index, item, mine, reason))
    return questions


def official_items(questions: Sequence[Question],
                   by_id: dict[str, dict[str, Any]]) -> list[dict]:
    """Every original item with model_output / response / prediction_error (official format)."""
    items = []
    for q in questions:
        item = dict(q.item) if isinstance(q.item, dict) else {"id": f"item-{q.index}",
                                                              "raw": q.item}
        if q.record is None:
            fields = {"model_output": None, "response": None, "prediction_error": q.reason}
        else:
            fields = prediction_fields(by_id.get(q.record.id))
        if fields["model_output"] is None:  # the official script drops items lacking the key
            fields["model_output"] = ""
            fields["prediction_error"] = fields["prediction_error"] or "no prediction"
        items.append({**item, **fields})
    return items


def asked(questions: list[Question], report: ReadReport, args: argparse.Namespace, *,
          source: Path, audio_option: str, fetch: str) -> FileQuestions:
    """The first --limit items of a question file (aligned: `align`) as the set a run asks;
    every audio file missing (without --no_audio) stops in one line naming `fetch`, and the
    items counted wrong are logged (MMAU, MMAR)."""
    questions = questions[:args.limit] if args.limit is not None else questions
    records = [q.record for q in questions if q.record is not None]
    if questions and not records:  # e.g. another benchmark's file: refuse, not a 0% result
        first = questions[0]
        raise SystemExit(f"{source}: none of its {len(questions)} items is a usable question "
                         f"(e.g. item {first.index}: {first.reason}); is it another benchmark's "
                         "question file, or the full MMAU test without --split test?")
    missing = set(report.missing_audio)
    if records and all(r.id in missing for r in records) and not args.no_audio:
        raise SystemExit(f"none of the {len(records)} audio files was found (e.g. "
                         f"{records[0].audio}). Run `{fetch}`, pass {audio_option}, or use "
                         "--no_audio for the text-only ablation.")
    unusable = [q for q in questions if q.record is None]
    if unusable:
        logger.warning("%d items in %s are counted wrong: %s", len(unusable), source,
                       [f"item {q.index}: {q.reason}" for q in unusable[:5]])
    return FileQuestions(records, questions=questions)
