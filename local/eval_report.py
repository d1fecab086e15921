"""Scored items -> results JSON and markdown, for either benchmark; nothing is ever dropped.

An item counts as "no prediction" (wrong, and listed with its reason) when its `model_output`
is absent, null or not text (a number, a list: `local.scoring.prediction_problem`), when it
carries a `prediction_error` (unreadable audio, interrupted run: even beside a `model_output`),
or when it lacks the `answer`/`choices` needed to judge it (a malformed source row). Every other
item is judged by `local.scoring.judge` with the benchmark's matcher.

Example:
    >>> items = [{"id": "a", "answer": "Man", "choices": ["Man", "Woman"], "model_output": "Man"},
    ...          {"id": "b", "answer": "Dog", "choices": ["Dog", "Cat"], "model_output": None}]
    >>> result = score_items(items, match="mmau")
    >>> result["accuracy"], result["no_prediction_ids"]
    (50.0, ['b'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from local.scoring import Row, breakdown, judge, prediction_problem, render_report

PROTOCOLS = {
    "mmau": "MMAU official token rule (word-token sets of the <answer> content)",
    "exact": "seed protocol: <answer> content equals the option text exactly",
    "letter": "official MMSU letter protocol: the response names the option letter",
}


def _reason(item: dict[str, Any]) -> str | None:
    if not isinstance(item.get("answer"), str) or not isinstance(item.get("choices"), list):
        return item.get("prediction_error") or "malformed item: no answer/choices to judge"
    if item.get("prediction_error"):
        return str(item["prediction_error"])
    return prediction_problem(item)


def judge_all(items: Sequence[dict[str, Any]], match: str) -> tuple[list[dict], dict[str, str]]:
    """Judged copies of `items` in order (correct None = no prediction) and the reasons."""
    reasons: dict[str, str] = {}
    prepared = []
    for index, item in enumerate(items):
        item = {**item, "id": str(item.get("id") or f"item-{index}")}
        reason = _reason(item)
        if reason is not None:
            reasons[item["id"]] = reason
        prepared.append((item, reason))
    judged_ok = iter(judge([i for i, r in prepared if r is None], match=match))
    judged = [next(judged_ok) if r is None else {**i, "correct": None} for i, r in prepared]
    return judged, reasons


def tables_json(tables: dict[str, list[Row]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{"group": r.group, "correct": r.correct, "total": r.total,
                    "accuracy": r.accuracy, "no_prediction": r.no_prediction}
                   for r in rows] for name, rows in tables.items()}


def score_items(items: Sequence[dict[str, Any]], match: str,
                tables_fn: Callable[[Sequence[dict[str, Any]]], dict[str, list[Row]]] = breakdown,
                ) -> dict[str, Any]:
    """Results for one protocol: top-level `accuracy` in percent, counts, tables, what is missing.

    `tables_fn` makes the breakdown (`local.scoring.breakdown` for MMAU, `mmsu_breakdown`).
    """
    judged, reasons = judge_all(items, match)
    tables = tables_fn(judged)
    overall = tables["overall"][0] if tables["overall"] else Row("all", 0, 0, 0)
    return {
        "protocol": match,
        "protocol_description": PROTOCOLS.get(match, match),
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


def markdown(result: dict[str, Any], heading: str) -> str:
    """One protocol's tables as markdown, the protocol named beside every number."""
    name = f"{result['protocol']}: {result['protocol_description']}"
    summary = (f"**Accuracy [{result['protocol']}]: {result['accuracy']:.2f}%** "
               f"({result['correct']}/{result['total']}; {result['no_prediction']} without a "
               "prediction, counted wrong)\n\n")
    body = render_report(result["_tables"], result["no_prediction_ids"], heading=heading,
                         protocol=name)
    return body.replace("\n\n", "\n\n" + summary, 1)


def headline(benchmark: str, result: dict[str, Any]) -> str:
    """The one line printed at the end of a run: the number with its protocol."""
    return (f"{benchmark} accuracy [{result['protocol']}: {result['protocol_description']}]: "
            f"{result['accuracy']:.2f}% ({result['correct']}/{result['total']}, "
            f"{result['no_prediction']} without prediction counted wrong)")
