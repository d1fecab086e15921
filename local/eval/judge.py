"""Judging: each item's verdict, accuracy tables, one protocol's results; data only.

Items are dicts with `id`, `correct` (True / False / None = no prediction) and the fields the
tables group by (MMAU's `task`, MMSU's `category` path "L1-L2-L3-L4"). An item is "no
prediction" (counted WRONG and listed with its reason, never dropped from the denominator as
the MMAU official script drops it) when its `model_output` is absent, null or not text
(`prediction_problem`), when it carries a `prediction_error` (unreadable audio: even beside a
`model_output`), or when it lacks the `answer`/`choices` to judge it; every other item is
judged by `judge` with the benchmark's matcher. Nothing here renders or writes: results.json
and results.md are `local.eval.results`; `--score_only` matches a predictions file to the
question set first (`local.eval.question_check`).

Example:
    >>> items = judge([
    ...     {"id": "a", "answer": "Man", "choices": ["Man", "Woman"], "model_output": "man",
    ...      "task": "speech"},
    ...     {"id": "b", "answer": "Dog", "choices": ["Dog", "Cat"], "task": "sound"},
    ... ], match="mmau")
    >>> [(i["id"], i["correct"]) for i in items]
    [('a', True), ('b', None)]
    >>> row = accuracy_table(items)[0]
    >>> row.correct, row.total, row.no_prediction, row.accuracy
    (1, 2, 1, 50.0)
    >>> score_items(items, match="mmau")["no_prediction_ids"]
    ['b']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from local.core.answers import MATCHERS

MISSING_GROUP = "(missing)"
_ORDER = {"easy": 0, "medium": 1, "hard": 2}


@dataclass(frozen=True)
class Row:
    """One line of an accuracy table."""

    group: str
    correct: int
    total: int
    no_prediction: int

    @property
    def accuracy(self) -> float:
        """Percent correct; items without a prediction are in the denominator."""
        return 100.0 * self.correct / self.total if self.total else 0.0


def _correct(item: dict[str, Any]) -> bool | None:
    value = item.get("correct")
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"item {item.get('id')!r}: correct={value!r}; use True, False, or None "
                         "(no prediction).")
    return value


def _group_name(value: Any) -> str:
    if value is None or value == "":
        return MISSING_GROUP
    if isinstance(value, (list, tuple)):  # MMAU has a few categories stored as lists
        return ", ".join(str(v) for v in value) or MISSING_GROUP
    return str(value)


def prediction_problem(item: dict[str, Any], output_key: str = "model_output") -> str | None:
    """Why `item[output_key]` is no prediction (absent, null, not text), or None if it is text.

    A list or a number is not a prediction: `str(["Man"])` would read as "man" (and the MMAU
    official script, which lower-cases the field, crashes on it).
    """
    if output_key not in item:
        return f"no {output_key}"
    value = item[output_key]
    if value is None:
        return f"{output_key} is null"
    if not isinstance(value, str):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return f"{output_key} is not text ({type(value).__name__}: {shown})"
    return None


def judge(items: Iterable[dict[str, Any]], match: str = "mmau",
          output_key: str = "model_output") -> list[dict[str, Any]]:
    """Copies of `items` with `correct` set by the matcher `match` ("mmau", "exact", "robust",
    "letter") on `item[output_key]`; an output that is absent, null or not text
    (`prediction_problem`) gives `correct=None` (no prediction)."""
    if match not in MATCHERS:
        raise ValueError(f"unknown matcher {match!r}; choose one of {sorted(MATCHERS)}.")
    matcher = MATCHERS[match]
    judged = []
    for item in items:
        if "answer" not in item or "choices" not in item:
            raise ValueError(f"item {item.get('id')!r}: needs 'answer' and 'choices' to be "
                             "judged; keep the record's fields in the results.")
        correct = None if prediction_problem(item, output_key) else bool(
            matcher(item[output_key], item["answer"], item["choices"]))
        judged.append({**item, "correct": correct})
    return judged


def no_prediction(items: Iterable[dict[str, Any]]) -> list[str]:
    """Ids of items without a prediction (counted wrong)."""
    return [str(item.get("id")) for item in items if _correct(item) is None]


def accuracy_table(items: Sequence[dict[str, Any]], key: str | None = None,
                   level: int | None = None, sep: str = "-") -> list[Row]:
    """Rows of accuracy: one "all" row if `key` is None, else one row per value of `item[key]`.

    With `level`, the group is the first `level` parts of `item[key]` split on `sep` (MMSU's
    "L1-L2-L3-L4" categories), so level 2 groups "Perception-Semantics" apart from
    "Reasoning-Semantics". Rows are sorted by group (easy, medium, hard in that order), with
    items lacking the key grouped as "(missing)", last.
    """
    counts: dict[str, list[int]] = {}
    for item in items:
        if key is None:
            group = "all"
        else:
            group = _group_name(item.get(key))
            if level is not None and group != MISSING_GROUP:
                group = sep.join(group.split(sep)[:level])
        correct = _correct(item)
        c = counts.setdefault(group, [0, 0, 0])
        c[0] += correct is True
        c[1] += 1
        c[2] += correct is None
    groups = sorted(counts, key=lambda g: (g == MISSING_GROUP, _ORDER.get(g, len(_ORDER)), g))
    return [Row(g, *counts[g]) for g in groups]


def breakdown(items: Sequence[dict[str, Any]],
              keys: Sequence[str] = ()) -> dict[str, list[Row]]:
    """{"overall": ..., key: ...}: the overall row, then one table per field of `keys`."""
    tables = {"overall": accuracy_table(items)}
    for key in keys:
        tables[key] = accuracy_table(items, key)
    return tables


def level_breakdown(items: Sequence[dict[str, Any]], key: str,
                    depth: int) -> dict[str, list[Row]]:
    """{"overall": ..., "level 1": ..., ..., "level <depth>": ...} for a "-"-separated path in
    `item[key]` (MMSU's category), each level grouped by its prefix."""
    tables = {"overall": accuracy_table(items)}
    for level in range(1, depth + 1):
        tables[f"level {level}"] = accuracy_table(items, key, level=level)
    return tables

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
