"""MMSU's official letter scorer, reproduced item for item, and its input format.

The official `mmsu_evaluation.py` (dingdongwang/MMSU, commit 217d1d3) reads JSONL rows with
`choice_a`..`choice_d`, `answer_gt` (the answer's text), `response` (the raw model response),
`category` and `sub-category`. Per row it reads a letter from the raw response
(`local.core.answers.mmsu_official_letter`: first character A-D, else the second-to-last), counts it
correct when that letter's choice text equals `answer_gt`, and **leaves out of the denominator**
every row whose response is not a string or has no letter in either place ("None" and ""
stay in, wrong). It prints `Overall Accuracy` = correct / counted and `Total count` = counted.

`official_score` gives those two figures (`official_accuracy` as a percentage, and
`official_denominator`); the recipe's own strict figure (`accuracy`: the same letters,
unreadable responses counted wrong, denominator = every item) comes from `local.eval.scoring`.
`official_rows` turns the recipe's items into the official input format, so the official script
can be run on our predictions (`predictions_letter.jsonl`), and `items_from_official` reads that
format back (`evaluate_mmsu.py --score_only FILE.jsonl`).

Example:
    >>> rows = [{"choice_a": "yes", "choice_b": "no", "answer_gt": "no", "response": "B"},
    ...         {"choice_a": "yes", "choice_b": "no", "answer_gt": "no", "response": "maybe"}]
    >>> score = official_score(rows)
    >>> score["official_accuracy"], score["official_denominator"], score["official_left_out"]
    (100.0, 1, ['row-1'])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.core.answers import MMSU_LETTERS, mmsu_official_letter

CHOICE_KEYS = ("choice_a", "choice_b", "choice_c", "choice_d")
_CATEGORY_KEYS = ("category", "sub-category", "sub-sub-category", "linguistics_sub_discipline")


def _row_id(row: dict[str, Any], index: int) -> str:
    ident = row.get("id", row.get("key"))
    return str(ident) if ident not in (None, "") else f"row-{index}"


def official_score(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the official script prints for these rows: correct / counted, as a percentage."""
    correct, counted, left_out = 0, 0, []
    for index, row in enumerate(rows):
        letter, counts = mmsu_official_letter(row.get("response", ""))
        if not counts:
            left_out.append(_row_id(row, index))
            continue
        counted += 1
        if letter is not None:
            key = CHOICE_KEYS[MMSU_LETTERS.index(letter)]
            correct += int(row.get(key, "") == row.get("answer_gt", ""))
    return {"official_correct": correct, "official_denominator": counted,
            "official_accuracy": 100.0 * correct / counted if counted else 0.0,
            "official_left_out": left_out}


def official_rows(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe's scored MMSU items as the official scorer's JSONL rows.

    Choices go to `choice_a`..`choice_d` by position (blank where an item has fewer), the
    response is the raw one (None where there is no prediction: the official script leaves such
    rows out, our strict figure counts them wrong), and the "L1-L2-L3-L4" category is split into
    `category`, `sub-category`, `sub-sub-category`, `linguistics_sub_discipline`.
    """
    rows = []
    for item in items:
        choices = list(item.get("choices") or [])
        levels = str(item.get("category") or "").split("-", 3)
        row = {"id": item.get("id"),
               **{key: (choices[i] if i < len(choices) else "") for i, key in
                  enumerate(CHOICE_KEYS)},
               "answer_gt": item.get("answer"), "response": item.get("response")}
        row.update({key: (levels[i] if i < len(levels) else "")
                    for i, key in enumerate(_CATEGORY_KEYS)})
        rows.append(row)
    return rows


def is_official_format(rows: Sequence[Any]) -> bool:
    """True for the official scorer's rows: dicts with `choice_a` and `answer_gt` each, and a
    `response` in some (the script reads a missing one as "")."""
    return (bool(rows) and all(isinstance(r, dict) and "choice_a" in r and "answer_gt" in r
                               for r in rows) and any("response" in r for r in rows))


def items_from_official(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Official rows as the recipe's items (`model_output` = the raw response, as the letter
    protocol scores it; a row without `response` has "", as the script reads it); category
    levels joined back with '-'."""
    items = []
    for index, row in enumerate(rows):
        choices = [str(row.get(key) or "") for key in CHOICE_KEYS]
        while choices and not choices[-1].strip():
            choices.pop()
        category = "-".join(str(row[k]) for k in _CATEGORY_KEYS if row.get(k) not in (None, ""))
        response = row.get("response", "")
        items.append({"id": _row_id(row, index), "choices": choices,
                      "answer": row.get("answer_gt"), "response": response,
                      "model_output": response, "category": category or None})
    return items


def read_jsonl(path: Path) -> list[Any]:
    """Rows of a JSONL file; a line that is not JSON stops with its line number."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON line ({err}).") from err
    return rows
