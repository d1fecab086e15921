"""Scored items -> results JSON and markdown, for any benchmark; nothing is ever dropped.

An item counts as "no prediction" (wrong, and listed with its reason) when its `model_output`
is absent, null or not text (a number, a list: `local.eval.scoring.prediction_problem`), when it
carries a `prediction_error` (unreadable audio, interrupted run: even beside a `model_output`),
or when it lacks the `answer`/`choices` needed to judge it (a malformed source row). Every other
item is judged by `local.eval.scoring.judge` with the benchmark's matcher.

Example:
    >>> items = [{"id": "a", "answer": "Man", "choices": ["Man", "Woman"], "model_output": "Man"},
    ...          {"id": "b", "answer": "Dog", "choices": ["Dog", "Cat"], "model_output": None}]
    >>> result = score_items(items, match="mmau")
    >>> result["accuracy"], result["no_prediction_ids"]
    (50.0, ['b'])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.eval.scoring import Row, breakdown, judge, prediction_problem, render_report


def item_id(item: Any, index: int) -> str:
    """An item's id as results name it: its `id` as text, else `item-<index>` (file position)."""
    value = item.get("id") if isinstance(item, dict) else None
    return str(value) if value not in (None, "") else f"item-{index}"


def duplicate_question_reason(first: int) -> str:
    """Why a later item with an already used id is counted wrong (`first`: the first's index)."""
    return (f"duplicate id in the question file (first at item {first}): only the first item "
            "is scored, each later one is counted wrong")


def _reason(item: dict[str, Any]) -> str | None:
    if not isinstance(item.get("answer"), str) or not isinstance(item.get("choices"), list):
        return item.get("prediction_error") or "malformed item: no answer/choices to judge"
    if item.get("prediction_error"):
        return str(item["prediction_error"])
    return prediction_problem(item)


def judge_all(items: Sequence[dict[str, Any]], match: str) -> tuple[list[dict], dict[str, str]]:
    """Judged copies of `items` in order (correct None = no prediction) and the reasons, by id
    (by "<id> (item <index>)" for an id that several items carry)."""
    reasons: dict[str, str] = {}
    prepared = []
    ids = [item_id(item, index) for index, item in enumerate(items)]
    repeated = {i for i, n in Counter(ids).items() if n > 1}
    for index, (item, ident) in enumerate(zip(items, ids, strict=True)):
        item = {**item, "id": ident}
        reason = _reason(item)
        if reason is not None:  # an id used twice is listed as "<id> (item <index>)"
            reasons[f"{ident} (item {index})" if ident in repeated else ident] = reason
        prepared.append((item, reason))
    judged_ok = iter(judge([i for i, r in prepared if r is None], match=match))
    judged = [next(judged_ok) if r is None else {**i, "correct": None} for i, r in prepared]
    return judged, reasons


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


def check_lines(check: dict[str, Any] | str) -> list[str]:
    """What the question check found, as lines for the log and results.md (empty: all fine)."""
    if isinstance(check, str):
        return [f"Predictions {check}."]
    lines = []
    for key, text in (("missing_ids", "questions without a prediction (counted wrong)"),
                      ("extra_ids", "predictions whose id is no question (ignored)"),
                      ("duplicate_ids", "ids predicted more than once (the first one scored)"),
                      ("duplicate_question_ids", "ids repeated in the question file (each "
                       "repeat counted wrong)")):
        if check.get(key):
            shown = ", ".join(check[key][:20]) + (", ..." if len(check[key]) > 20 else "")
            lines.append(f"{len(check[key])} {text}: {shown}")
    return lines


def tables_json(tables: dict[str, list[Row]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{"group": r.group, "correct": r.correct, "total": r.total,
                    "accuracy": r.accuracy, "no_prediction": r.no_prediction}
                   for r in rows] for name, rows in tables.items()}


def score_items(items: Sequence[dict[str, Any]], match: str,
                tables_fn: Callable[[Sequence[dict[str, Any]]], dict[str, list[Row]]] = breakdown,
                description: str | None = None) -> dict[str, Any]:
    """Results for one protocol: top-level `accuracy` in percent, counts, tables, what is missing.

    `match` names the matcher and the protocol; `description` says what it does (printed beside
    every number; default: the name). `tables_fn` makes the tables (default: overall only).
    """
    if not items:
        raise ValueError("nothing to score: no items (an accuracy of 0/0 means nothing); check the "
                         "question and predictions files.")
    judged, reasons = judge_all(items, match)
    tables = tables_fn(judged)
    overall = tables["overall"][0] if tables["overall"] else Row("all", 0, 0, 0)
    return {
        "protocol": match,
        "protocol_description": description or match,
        "accuracy": overall.accuracy,
        "correct": overall.correct,
        "total": overall.total,
        "no_prediction": overall.no_prediction,
        "no_prediction_ids": list(reasons),
        "no_prediction_reasons": reasons,
        "tables": tables_json(tables),
        "_tables": tables,  # Row objects, for markdown; dropped before writing JSON
    }


def public(result: dict[str, Any]) -> dict[str, Any]:
    """`result` without its in-memory-only keys (ready for JSON)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


TRUNCATED_AUDIO = ("scored on truncated audio (the file is shorter than its header says: an "
                   "interrupted download or copy; answered on the audio it holds, nothing dropped; "
                   "fetch the files again and re-run with --overwrite)")


def truncated_audio_lines(result: dict[str, Any]) -> list[str]:
    """The items of `result["audio_incomplete"]` ({id: why}) as markdown lines (none: [])."""
    cut = result.get("audio_incomplete") or {}
    if not cut:
        return []
    return [f"**{len(cut)} items {TRUNCATED_AUDIO}:**", "",
            *(f"- {reason}" for reason in cut.values()), ""]


def markdown(result: dict[str, Any], heading: str, preface: str = "") -> str:
    """One protocol's tables as markdown, the protocol named beside every number; `preface`
    goes under the heading (e.g. which question set), then the accuracy, then the items scored
    on truncated audio (`audio_incomplete`), then the tables."""
    name = f"{result['protocol']}: {result['protocol_description']}"
    summary = preface + (f"**Accuracy [{result['protocol']}]: {result['accuracy']:.2f}%** "
                         f"({result['correct']}/{result['total']}; {result['no_prediction']} "
                         "without a prediction, counted wrong)\n\n")
    cut = truncated_audio_lines(result)
    if cut:
        summary += "\n".join(cut) + "\n"
    body = render_report(result["_tables"], result["no_prediction_ids"], heading=heading,
                         protocol=name)
    if "question_check" in result:
        check = result["question_check"]
        found = check_lines(check) or [
            f"all {check['questions']} questions have exactly one prediction"]
        summary += "Question check: " + "; ".join(found) + "\n\n"
    return body.replace("\n\n", "\n\n" + summary, 1)


def headline(benchmark: str, result: dict[str, Any]) -> str:
    """The one line printed at the end of a run: the number with its protocol."""
    line = (f"{benchmark} accuracy [{result['protocol']}: {result['protocol_description']}]: "
            f"{result['accuracy']:.2f}% ({result['correct']}/{result['total']}, "
            f"{result['no_prediction']} without prediction counted wrong)")
    if isinstance(result.get("question_check"), str):
        line += f" [{result['question_check']}]"
    return line
