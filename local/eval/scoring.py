"""Scoring for evaluation: judge predictions, then accuracy tables (overall and per group).

Items are dicts with `id`, `correct` (True / False / None = no prediction) and the fields the
tables group by (e.g. MMAU's `task`, or MMSU's `category` path "L1-L2-L3-L4"). An item
without a prediction is counted WRONG and listed: unlike the MMAU official script, which drops
items lacking `model_output` from the denominator, nothing is ever dropped here.

Example:
    >>> from local.eval.scoring import accuracy_table, judge, render_markdown
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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def render_markdown(rows: Sequence[Row], title: str = "group") -> str:
    """A markdown table: group, correct, total, accuracy (%), no prediction."""
    lines = [f"| {title} | correct | total | accuracy (%) | no prediction |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.group} | {r.correct} | {r.total} | {r.accuracy:.2f} | {r.no_prediction} |"
              for r in rows]
    return "\n".join(lines)


def render_report(tables: dict[str, list[Row]], missing: Sequence[str] = (),
                  heading: str = "Accuracy", protocol: str | None = None) -> str:
    """Markdown for several tables (from `breakdown`/`level_breakdown`) and the unanswered ids.

    `protocol` names the matcher that produced the numbers (e.g. "MMAU official token rule").
    """
    parts = [f"## {heading}"]
    if protocol:
        parts.append(f"Scored with: {protocol}.")
    for name, rows in tables.items():
        parts.append(render_markdown(rows, name))
    if missing:
        parts.append(f"No prediction (counted wrong): {len(missing)} items: "
                     + ", ".join(missing))
    return "\n\n".join(parts) + "\n"
