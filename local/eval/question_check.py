"""--score_only's question check: a predictions file matched to the benchmark's question set.

The answer, choices and tables' fields come from the question file, the benchmark's reference;
the predictions file gives only `model_output`, `response`, `prediction_error`. Nothing is
dropped: a question without a prediction is counted wrong (`MISSING_PREDICTION`), extra and
repeated predictions are listed and ignored (`reconcile`); what was found goes into results.json
as `question_check` (`Reconciled.summary`), rendered by `local.eval.results.check_lines`.

Example:
    >>> rec = reconcile(["a", "b"], [{"id": "a", "model_output": "x"}, {"id": "z"}])
    >>> rec.matched, rec.extra, rec.missing
    (1, ['z'], ['b'])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.eval.judge import duplicate_question_reason, item_id

MISSING_PREDICTION = "missing from the predictions file"
CHECK_SKIPPED = ("not checked against the question set (--no_question_check): extra, duplicated "
                 "or missing items are not detected")


@dataclass
class Reconciled:
    """Predictions matched to a benchmark's question ids (see `reconcile`)."""

    items: list[dict[str, Any]]  # one per question id, in question order
    extra: list[str] = field(default_factory=list)  # prediction ids not in the question set
    duplicates: list[str] = field(default_factory=list)  # ids predicted twice (first one kept)
    missing: list[str] = field(default_factory=list)  # question ids without a prediction
    duplicate_questions: list[str] = field(default_factory=list)  # ids the question set repeats
    predictions: int = 0  # entries in the predictions file

    @property
    def matched(self) -> int:
        """Question ids that found a prediction."""
        return len(self.items) - len(self.missing) - len(self.duplicate_questions)

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts and id lists (results.json `question_check`)."""
        return {"questions": len(self.items), "predictions": self.predictions,
                "matched": self.matched, "extra_ids": self.extra,
                "duplicate_ids": self.duplicates, "missing_ids": self.missing,
                "duplicate_question_ids": self.duplicate_questions}


def _prediction_label(prediction: Any, index: int) -> str:
    value = prediction.get("id") if isinstance(prediction, dict) else None
    return str(value) if value not in (None, "") else f"(no id: entry {index})"


def reconcile(question_ids: Sequence[str], predictions: Sequence[dict[str, Any]]) -> Reconciled:
    """Match `predictions` (dicts with `id`) to the benchmark's `question_ids`, nothing dropped.

    `items` has one entry per question id, in order: the first prediction with that id (a copy),
    or, when there is none, `{"id", "model_output": None, "prediction_error":
    MISSING_PREDICTION}` (counted wrong). Predictions whose id is not a question (or that have
    no id) are listed in `extra` and ignored; an id predicted more than once is listed in
    `duplicates` and counted once. A question id that repeats an earlier one is listed in
    `duplicate_questions` and its entry is counted wrong (`duplicate_question_reason`).

    >>> rec = reconcile(["a", "b", "c"], [{"id": "a", "model_output": "x"},
    ...                                   {"id": "a", "model_output": "y"}, {"id": "z"}])
    >>> [i.get("model_output") for i in rec.items], rec.extra, rec.duplicates, rec.missing
    (['x', None, None], ['z'], ['a'], ['b', 'c'])
    """
    counts = Counter(question_ids)
    by_id: dict[str, dict[str, Any]] = {}
    rec = Reconciled(items=[], predictions=len(predictions))
    for index, prediction in enumerate(predictions):
        ident = _prediction_label(prediction, index)
        if ident not in counts:
            rec.extra.append(ident)
        elif ident not in by_id:
            by_id[ident] = prediction
        elif counts[ident] == 1:  # a repeated question repeats its prediction: no news
            rec.duplicates.append(ident)
    first_at: dict[str, int] = {}
    for index, ident in enumerate(question_ids):
        if ident in first_at:
            rec.duplicate_questions.append(ident)
            rec.items.append({"id": ident, "model_output": None,
                              "prediction_error": duplicate_question_reason(first_at[ident])})
            continue
        first_at[ident] = index
        if ident in by_id:
            rec.items.append({**by_id[ident], "id": ident})
        else:
            rec.missing.append(ident)
            rec.items.append({"id": ident, "model_output": None,
                              "prediction_error": MISSING_PREDICTION})
    return rec


_OUTPUTS = ("model_output", "response", "prediction_error")


def checked_items(questions: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any]],
                  pred_path: Path, question_option: str
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One item per question (question fields, the prediction's outputs) and what was found.

    The answer, choices and tables' fields come from the question file, the benchmark's
    reference; the predictions file gives only `model_output`, `response`, `prediction_error`.
    """
    ids = [item_id(q, i) for i, q in enumerate(questions)]
    rec = reconcile(ids, predictions)
    if rec.matched == 0:
        raise SystemExit(f"--score_only {pred_path}: none of its {len(predictions)} predictions "
                         f"has the id of a question (e.g. {rec.extra[0]!r}); is it a predictions "
                         f"file of this benchmark, scored against the right {question_option}?")
    items = [{**item, **{k: v for k, v in question.items() if k not in _OUTPUTS}}
             for question, item in zip(questions, rec.items, strict=True)]
    return items, rec.summary()
