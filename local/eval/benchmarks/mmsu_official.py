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
unreadable responses counted wrong, denominator = every item) comes from `local.eval.judge`.
`official_rows` turns the recipe's items into the official input format, so the official script
can be run on our predictions (`predictions_letter.jsonl`).

`read_rows` / `read_official` read that format back for `evaluate_mmsu.py --score_only FILE`
(JSONL, or a JSON list), row by row, naming each row by its line (a JSON list: its item, from 0)
and id: a bad row (not JSON, not an object, missing keys, a choice that is not text) and a row
whose `answer_gt` is unknown (null, blank, neither an option's text nor a letter A-D naming
one) are kept, counted wrong and listed; a repeated id is counted once (its first row) and the
repeats listed; a letter `answer_gt` is read as its option. `OfficialFile.summary` is what
results.json lists (`file_check`), `file_check_lines` what is printed. `UnusableFile` (one
line) for a file with no usable row, with no response at all (MMSU's question data) or mixing
the official rows with the recipe's (`check_one_format` says which lines are which).

Size: about 400 lines, because the official format's three parts belong together: its scoring
rule, its writer and its reader, whose row checks must accept exactly what the writer and the
official script produce and name every row they cannot score.

Example:
    >>> rows = [{"choice_a": "yes", "choice_b": "no", "answer_gt": "no", "response": "B"},
    ...         {"choice_a": "yes", "choice_b": "no", "answer_gt": "no", "response": "maybe"}]
    >>> score = official_score(rows)
    >>> score["official_accuracy"], score["official_denominator"], score["official_left_out"]
    (100.0, 1, ['row-1'])
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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



# ---------------------------------------------------------------------------------------------
# Reading a file given to --score_only: its rows, their format, the official rows as items
# ---------------------------------------------------------------------------------------------

OFFICIAL_KEYS = (*CHOICE_KEYS, "answer_gt")
RECIPE_KEYS = ("answer", "choices", "model_output")
REQUIRED_KEYS = ("choice_a", "choice_b", "answer_gt")
OFFICIAL_FORMAT = "the official scorer's format (choice_a..choice_d, answer_gt, response)"
RECIPE_FORMAT = "the recipe's predictions format (answer, choices, model_output/response)"
ROW_NEEDS = ("each row needs choice_a and choice_b (text; choice_c, choice_d text or blank), "
             "answer_gt (an option's text, or its letter A-D) and response")
COUNTED_WRONG = ("bad rows and rows without a known answer_gt counted wrong and kept in the "
                 "denominator, a repeated id counted once (its first row)")
NO_RESPONSE = ("no row has a response (is it MMSU's question data?): nothing to score; score "
               "predictions_letter.jsonl, or another file of the official script's input with "
               "each row's response")
FILE_KEY = "_official_file"  # on each item read from an official file: the `OfficialFile`
ROW_PROBLEM = "row_problem"  # on an item counted wrong for its row: BAD or NO_ANSWER
BAD, NO_ANSWER = "bad row", "no known answer"
_SHOWN = 10  # rows named per kind of problem in a results line
_ID_IN_TEXT = re.compile(r'"(?:id|key)"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?\d+))')


def count(n: int, noun: str, rest: str = "") -> str:
    """"1 bad row", "2 bad rows" (`noun` takes the plural; `rest` follows it)."""
    return f"{n} {noun}{'' if n == 1 else 's'}{rest}"


class UnusableFile(ValueError):
    """A file --score_only cannot score; the message is one line: what, where, what to do."""


@dataclass(frozen=True)
class Line:
    """One row of a predictions file: its number, its JSON value, why it is not JSON (or None)
    and, for such a line, its text."""

    number: int
    value: Any
    not_json: str | None = None
    text: str = ""


@dataclass
class Rows:
    """A predictions file's rows: a JSON list's items (`unit` "item", numbered from 0, as
    `item-<index>` ids are) or a JSONL file's non-blank lines (`unit` "line", from 1)."""

    unit: str
    rows: list[Line]
    whole: Any = None  # the JSON list, where the file is one

    def where(self, number: int) -> str:
        return f"{self.unit} {number}"


def read_rows(text: str) -> Rows:
    """The rows of a predictions file's text: a JSON list, else one JSON value per line (a line
    that is not JSON is kept, with why)."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return Rows("item", [Line(i, value) for i, value in enumerate(whole)], whole)
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):  # as editors number lines
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            rows.append(Line(number, json.loads(line)))
        except json.JSONDecodeError as err:
            rows.append(Line(number, None, f"not JSON ({err.msg} at column {err.colno})", line))
    return Rows("line", rows)


def row_format(value: Any) -> str | None:
    """"official" (a key of the official rows), "recipe" (one of ours), or None."""
    if not isinstance(value, dict):
        return None
    if any(key in value for key in OFFICIAL_KEYS):
        return "official"
    return "recipe" if any(key in value for key in RECIPE_KEYS) else None


def span(unit: str, numbers: Sequence[int]) -> str:
    """"lines 1-3, 7" / "line 4": `numbers` (ascending) as runs."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    shown = [str(a) if a == b else f"{a}-{b}" for a, b in runs]
    if len(shown) > 6:
        shown = [*shown[:6], f"... ({len(numbers)} in all)"]
    return f"{unit}{'' if len(numbers) == 1 else 's'} {', '.join(shown)}"


def check_one_format(rows: Rows) -> None:
    """UnusableFile when official rows and recipe rows share the file, saying which are which."""
    formats: dict[str, list[int]] = {"official": [], "recipe": []}
    for row in rows.rows:
        kind = row_format(row.value)
        if kind is not None:
            formats[kind].append(row.number)
    if formats["official"] and formats["recipe"]:
        said = [f"{span(rows.unit, formats[kind])} {'is' if len(formats[kind]) == 1 else 'are'} "
                f"{name}" for kind, name in (("official", OFFICIAL_FORMAT),
                                             ("recipe", RECIPE_FORMAT))]
        raise UnusableFile(f"mixes two formats: {said[0]}, {said[1]}; score one format per "
                           "file (predictions_letter.jsonl, or predictions_<protocol>.json, as "
                           "evaluate_mmsu.py writes them).")


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _ident(row: Line) -> str | None:
    """A row's id (`id`, else `key`) as text; for a line that is not JSON, as far as it reads."""
    if isinstance(row.value, dict):
        for key in ("id", "key"):
            if row.value.get(key) not in (None, ""):
                return str(row.value[key])
        return None
    found = _ID_IN_TEXT.search(row.text)
    if found is None:
        return None
    if found.group(2) is not None:
        return found.group(2)
    try:
        return str(json.loads(f'"{found.group(1)}"'))
    except json.JSONDecodeError:
        return found.group(1)


def _named(ident: str) -> str:
    return ident if ident.isprintable() and len(ident) <= 60 else _shown(ident, 60)


def row_problems(value: Any) -> list[str]:
    """What makes an official row unscorable: not an object, missing keys, a choice or response
    that is not text (a null response is no prediction), a blank choice_a/choice_b (an MMSU
    item has two options at least). [] when usable."""
    if not isinstance(value, dict):
        return [f"not a JSON object ({type(value).__name__})"]
    missing = [key for key in REQUIRED_KEYS if key not in value]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    for key in CHOICE_KEYS:
        choice = value.get(key)
        if choice is not None and not isinstance(choice, str):
            problems.append(f"{key} is not text ({type(choice).__name__}: {_shown(choice)})")
        elif key in value and key in REQUIRED_KEYS and not (choice or "").strip():
            problems.append(f"{key} is blank")
    response = value.get("response")
    if response is not None and not isinstance(response, str):  # null: no prediction
        problems.append(f"response is not text ({type(response).__name__}: {_shown(response)})")
    return problems


def resolve_answer(value: Any, choices: Sequence[str]) -> tuple[str | None, str | None]:
    """(the answer's text, why there is none): `answer_gt` is an option's text, or a letter A-D
    naming a non-blank option (then that option's text)."""
    if value is None:
        return None, "answer_gt is null"
    if not isinstance(value, str):
        return None, f"answer_gt is not text ({type(value).__name__}: {_shown(value)})"
    if not value.strip():
        return None, "answer_gt is blank"
    if value in [c for c in choices if c.strip()]:
        return value, None
    letter = value.strip()
    if len(letter) == 1 and letter in MMSU_LETTERS:
        index = MMSU_LETTERS.index(letter)
        if index < len(choices) and choices[index].strip():
            return choices[index], None
        return None, f"answer_gt {value!r} names a blank option"
    return None, (f"answer_gt {_shown(value)} is not one of the options (nor a letter A-D naming "
                  "one)")


@dataclass
class OfficialFile:
    """An official-format file as `--score_only` scores it: one item per id, in file order
    (bad rows and rows without a known answer among them, counted wrong), and what reading it
    found, row by row (`summary` for results.json, `file_check_lines` for people)."""

    path: Path
    unit: str
    rows: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    unknown_answers: list[dict[str, Any]] = field(default_factory=list)
    letter_answers: list[dict[str, Any]] = field(default_factory=list)
    repeats: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        repeated = list(dict.fromkeys(r["id"] for r in self.repeats))
        return {"file": str(self.path), "format": "official", "unit": self.unit,
                "rows": self.rows, "scored": len(self.items), "counted_wrong": COUNTED_WRONG,
                "bad_rows": self.bad_rows, "duplicate_ids": repeated,
                "duplicate_rows": self.repeats, "unknown_answer_rows": self.unknown_answers,
                "letter_answer_rows": self.letter_answers}


def _where(unit: str, number: int, ident: str | None) -> str:
    return f"{unit} {number}" + (f" (id {_named(ident)})" if ident is not None else "")


def _category(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    return "-".join(str(value[k]) for k in _CATEGORY_KEYS
                    if value.get(k) not in (None, "")) or None


def read_official(rows: Rows, path: Path) -> OfficialFile:
    """The items of an official-format file (the official script's reading: the raw response
    is what the letter protocol judges, a row without `response` has ""). A bad row, or one
    whose answer_gt is unknown, is kept and counted wrong with its row named; a repeated id is
    counted once (its first row). UnusableFile when no row can be scored."""
    found = OfficialFile(path, rows.unit, rows=len(rows.rows))
    first_at: dict[str, int] = {}
    for row in rows.rows:
        ident = _ident(row)
        if ident is not None and row.not_json is None:
            if ident in first_at:
                found.repeats.append({"id": ident, rows.unit: row.number,
                                      f"first_{rows.unit}": first_at[ident]})
                continue
            first_at[ident] = row.number
        label = ident if ident is not None else f"{rows.unit}-{row.number}"
        where = _where(rows.unit, row.number, ident)
        value = row.value if isinstance(row.value, dict) else {}
        item: dict[str, Any] = {"id": label, rows.unit: row.number,
                                "category": _category(row.value), FILE_KEY: found}
        problems = [row.not_json] if row.not_json else row_problems(row.value)
        if problems:
            reason = "; ".join(problems)
            found.bad_rows.append({rows.unit: row.number, "id": ident, "reason": reason})
            found.items.append({**item, "response": value.get("response"), ROW_PROBLEM: BAD,
                                "prediction_error": f"{where}: {reason}; counted wrong"})
            continue
        choices = [value.get(key) or "" for key in CHOICE_KEYS]
        while choices and not choices[-1].strip():
            choices.pop()
        response = value.get("response", "")
        item.update(choices=choices, response=response, model_output=response)
        answer, no_answer = resolve_answer(value["answer_gt"], choices)
        if no_answer is not None:
            found.unknown_answers.append({rows.unit: row.number, "id": ident,
                                          "reason": no_answer})
            item.update({"answer": value["answer_gt"], ROW_PROBLEM: NO_ANSWER,
                         "prediction_error": f"{where}: {no_answer}; counted wrong"})
        else:
            if response is None:
                item["prediction_error"] = f"{where}: response is null: no prediction"
            if answer != value["answer_gt"]:
                found.letter_answers.append({rows.unit: row.number, "id": ident,
                                             "answer_gt": value["answer_gt"], "read_as": answer})
            item["answer"] = answer
        found.items.append(item)
    if not any(ROW_PROBLEM not in item for item in found.items):
        problems = [f"{_where(rows.unit, r[rows.unit], r['id'])}: {r['reason']}" for r in
                    sorted(found.bad_rows + found.unknown_answers, key=lambda r: r[rows.unit])]
        more = f"; ... ({len(problems)} in all)" if len(problems) > 3 else ""
        raise UnusableFile(f"no usable row in {OFFICIAL_FORMAT}: {'; '.join(problems[:3])}"
                           f"{more}; {ROW_NEEDS}.")
    if not any(isinstance(row.value, dict) and "response" in row.value for row in rows.rows):
        raise UnusableFile(NO_RESPONSE)
    return found


def _listed(entries: Sequence[dict[str, Any]], unit: str, text: Any) -> str:
    shown = [f"{_where(unit, e[unit], e['id'])}: {text(e)}" for e in entries[:_SHOWN]]
    return "; ".join(shown) + ("; ..." if len(entries) > _SHOWN else "")


def file_check_lines(check: dict[str, Any]) -> list[str]:
    """What reading an official-format file found (`OfficialFile.summary`), one line each."""
    unit = check["unit"]
    lines = [f"File check: {check['rows']} rows, {check['scored']} scored (the strict "
             f"denominator: every row, each id once; {COUNTED_WRONG})."]
    if check["bad_rows"]:
        lines.append(f"{count(len(check['bad_rows']), 'bad row')}, counted wrong and left out "
                     "of the official figure (the official script cannot read such a row): "
                     + _listed(check["bad_rows"], unit, lambda e: e["reason"]))
    if check["duplicate_rows"]:
        repeats = check["duplicate_rows"]
        lines.append(f"{count(len(repeats), 'repeated row')} of "
                     f"{count(len(check['duplicate_ids']), 'id')}, each id counted once (its "
                     "first row): " + ", ".join(
                         f"{_named(r['id'])} at {unit} {r[unit]} (first at {unit} "
                         f"{r['first_' + unit]})" for r in repeats[:_SHOWN])
                     + (", ..." if len(repeats) > _SHOWN else ""))
    if check["unknown_answer_rows"]:
        lines.append(f"{count(len(check['unknown_answer_rows']), 'row')} without a known "
                     "answer_gt (null, blank, or neither an option's text nor a letter A-D "
                     "naming one), counted wrong and kept in the denominator: "
                     + _listed(check["unknown_answer_rows"], unit, lambda e: e["reason"]))
    if check["letter_answer_rows"]:
        lines.append(f"{count(len(check['letter_answer_rows']), 'row')} with answer_gt as a "
                     "letter, read as that option's text in both figures (the official script "
                     "compares texts, so it would count them wrong): " + _listed(
                         check["letter_answer_rows"], unit,
                         lambda e: f"{e['answer_gt']!r} -> {_shown(e['read_as'])}"))
    return lines
