"""MMAR's official scorer, reproduced row for row, and its predictions format.

The official `code/evaluation.py` (github ddlBoJack/MMAR, commit 3bce090a) reads a JSON list
(`.json`) or JSON lines (`.jsonl`) of items, each the question item plus `answer_prediction`
(the model's answer text), and judges each by `string_match`, MMAU's word-token-set rule
(`local.core.answers.match_mmau`, the same function: lower-cased `\\b\\w+\\b` token sets; every
answer token in the prediction, no token of a wrong choice that the answer lacks). It differs
from the recipe's own count in what it leaves out or stops on:

* an item WITHOUT the `answer_prediction` key is skipped: not in its denominator;
* a null or non-text `answer_prediction`, a missing `answer`/`choices`/`modality`/`category`,
  or a modality/category outside its fixed tables (`local.data.mmar.MODALITIES`,
  `CATEGORIES`) raises: it prints nothing;
* it scores the file's rows as they are: no question file, so duplicated ids count twice and a
  question missing from the file is not noticed.

It prints one line per modality (its 7, in order), per category (its 4) and per sub-category
(first seen first), "{name} : {acc:.2f}% over {n} samples", then "Total Accuracy: {acc:.2f}%
over {n} samples". `official_verdict` gives those figures (`printout` the lines); the recipe
reports them beside its own strict accuracy, labelled (`official_accuracy`, ...).

`official_rows` writes the recipe's items in this format (`answer_prediction` = the `<answer>`
content, "" where there is no prediction so the script counts it wrong instead of skipping it);
`recipe_items` reads a file of this format (or the recipe's `model_output` items) back for
`--score_only`, naming a file of another benchmark in one line.

Example:
    >>> rows = [{"answer": "Dog", "choices": ["Dog", "Cat"], "modality": "sound",
    ...          "category": "Perception Layer", "answer_prediction": "a dog"},
    ...         {"answer": "Dog", "choices": ["Dog", "Cat"], "modality": "sound",
    ...          "category": "Perception Layer"}]
    >>> verdict = official_verdict(rows)
    >>> verdict.correct, verdict.total, verdict.left_out, printout(verdict)[-1]
    (1, 1, ['row-1'], 'Total Accuracy: 100.00% over 1 samples')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.core.answers import match_mmau, mmau_tokens
from local.core.records import RecordError
from local.data.mmar import CATEGORIES, MODALITIES, parse_text
from local.eval.judge import prediction_problem

OUTPUT_KEY = "answer_prediction"  # the official script's `output_key`
VERDICT_KEY = "_mmar_official"  # on every item read from a file: that file's Verdict
_RECIPE_OUTPUTS = ("model_output", "response", "prediction_error")
Group = list[Any]  # [name, correct, total]


@dataclass
class Verdict:
    """What the official script makes of a file: its counts, tables, the rows it skipped, and
    why it would stop (None: it prints its figures)."""

    correct: int = 0
    total: int = 0
    left_out: list[str] = field(default_factory=list)
    stops: str | None = None
    tables: dict[str, list[Group]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        if self.stops is not None or not self.total:
            return None
        return (self.correct / self.total) * 100  # the script's expression, for its rounding

    def summary(self) -> dict[str, Any]:
        """The labelled figures results.json carries beside the strict accuracy."""
        return {"official_accuracy": self.accuracy, "official_correct": self.correct,
                "official_denominator": self.total, "official_left_out": self.left_out,
                "official_stops": self.stops, "official_tables": self.tables}


def _row_id(row: Any, index: int) -> str:
    ident = row.get("id") if isinstance(row, dict) else None
    return str(ident) if ident not in (None, "") else f"row-{index}"


def official_match(answer: Any, prediction: Any, choices: Any) -> bool:
    """`string_match(answer, prediction, choices)` of the official script, raising where it
    raises (a prediction or answer that is not text; a choice that is not text once the
    prediction has tokens); for text it is `match_mmau`."""
    for name, value in (("answer_prediction", prediction), ("answer", answer)):
        if not isinstance(value, str):
            raise TypeError(f"{name} is {type(value).__name__}, not text")
    if not mmau_tokens(prediction):
        return False
    choices = list(choices)  # the script iterates them (a string: its characters)
    if not all(isinstance(c, str) for c in choices):
        raise TypeError("a choice is not text")
    return match_mmau(prediction, answer, choices)


def official_verdict(rows: Sequence[Any]) -> Verdict:
    """The official script's figures for `rows`, in its order of reading (see module doc)."""
    found = Verdict()
    modality = {m: [0, 0] for m in MODALITIES}
    category = {c: [0, 0] for c in CATEGORIES}
    sub: dict[Any, list[int]] = {}
    for index, row in enumerate(rows):
        if isinstance(row, (str, list, dict)) and OUTPUT_KEY not in row:
            found.left_out.append(_row_id(row, index))  # the script's `continue`
            continue
        try:
            if not isinstance(row, dict):
                raise TypeError(f"a {type(row).__name__}, not an object")
            prediction, answer = row[OUTPUT_KEY], row["answer"]
            mod, cat, choices = row["modality"], row["category"], row["choices"]
            subcat = row.get("sub-category")
            if subcat is not None:
                sub.setdefault(subcat, [0, 0])
            correct = int(official_match(answer, prediction, choices))
            groups = [modality[mod], category[cat]] + ([sub[subcat]] if subcat is not None else [])
        except KeyError as err:
            found.stops = f"row {index} (id {_row_id(row, index)}): KeyError {err}"
            break
        except (TypeError, AttributeError) as err:
            found.stops = f"row {index} (id {_row_id(row, index)}): {err}"
            break
        for group in groups:
            group[0] += correct
            group[1] += 1
        found.correct += correct
        found.total += 1
    if found.stops is None and not found.total:
        found.stops = f"no row has {OUTPUT_KEY} (it divides by zero)"
    found.tables = {name: [[key, c, n] for key, (c, n) in table.items()]
                    for name, table in (("modality", modality), ("category", category),
                                        ("sub-category", sub))}
    return found


def printout(verdict: Verdict) -> list[str]:
    """The lines the official script prints for this verdict (its tables, then the total)."""
    lines = []
    for name in ("modality", "category", "sub-category"):
        for key, correct, total in verdict.tables.get(name, []):
            lines.append(f"{key} : {((correct / total) * 100 if total else 0):.2f}% over "
                         f"{total} samples")
    if verdict.accuracy is not None:
        lines.append(f"Total Accuracy: {verdict.accuracy:.2f}% over {verdict.total} samples")
    return lines


def official_rows(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe's items in the official format: `model_output` becomes `answer_prediction`,
    in place (every other key kept); no prediction (None) becomes "" (counted wrong)."""
    rows = []
    for item in items:
        row = {(OUTPUT_KEY if key == "model_output" else key): value
               for key, value in item.items() if key != VERDICT_KEY}
        if row.get(OUTPUT_KEY) is None:
            row[OUTPUT_KEY] = ""
        rows.append(row)
    return rows


NOT_PREDICTIONS = ("expected MMAR predictions: the official format (the question items with "
                   f"{OUTPUT_KEY}), a JSON list or JSON lines, as evaluate_mmar.py writes them "
                   "(predictions.json)")


def read_rows(path: Path) -> list[Any]:
    """The rows of a predictions file (a JSON list or JSON lines); a one-line error otherwise."""
    try:
        rows = parse_text(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as err:
        raise SystemExit(f"--score_only {path}: file not found.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"--score_only {path}: cannot read it ({err}).") from err
    except RecordError as err:
        raise SystemExit(f"--score_only {path}: {err} {NOT_PREDICTIONS}.") from err
    if not rows:
        raise SystemExit(f"--score_only {path}: the file holds no predictions; "
                         f"{NOT_PREDICTIONS}.")
    return rows


def _other_benchmark(rows: Sequence[Any]) -> str | None:
    """What the rows are if they are not MMAR predictions (None: they are)."""
    dicts = [r for r in rows if isinstance(r, dict)]
    if any(OUTPUT_KEY in r for r in dicts):
        return None
    if any("audio_id" in r and "model_output" in r for r in dicts):
        return ("an MMAU predictions file (items with audio_id and model_output, no "
                f"{OUTPUT_KEY}): score it with evaluate_mmau.py")
    if any("answer_gt" in r or "choice_a" in r for r in dicts):
        return "MMSU rows (answer_gt, choice_a..): score them with evaluate_mmsu.py"
    if any("model_output" in r or "response" in r for r in dicts):
        return None  # the recipe's generic items (model_output): read as they are
    return (f"no row has a prediction ({OUTPUT_KEY}, or model_output/response); is it the "
            "question file?")


def recipe_items(rows: Sequence[Any], path: Path) -> list[dict[str, Any]]:
    """The rows of an MMAR predictions file as the recipe scores them (`model_output`), each
    carrying the file's official verdict (`VERDICT_KEY`). A row without `answer_prediction` or
    with one that is not text is counted wrong and says why (the official script skips or stops
    on it); a row that is not an object keeps no id (listed as an extra entry)."""
    other = _other_benchmark(rows)
    if other is not None:
        raise SystemExit(f"--score_only {path}: not MMAR predictions: {other}.")
    verdict = official_verdict(rows)
    items = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            items.append({"prediction_error": f"row {index} is not a JSON object",
                          VERDICT_KEY: verdict})
            continue
        item = {k: v for k, v in row.items() if k not in (OUTPUT_KEY, "model_output")}
        if OUTPUT_KEY in row:
            item["model_output"] = row[OUTPUT_KEY]
            problem = prediction_problem(row, OUTPUT_KEY)
            if problem is not None and not row.get("prediction_error"):
                item["prediction_error"] = f"{problem} (the official evaluation.py stops on it)"
        elif "model_output" in row:
            item["model_output"] = row["model_output"]
        elif not row.get("prediction_error"):
            item["prediction_error"] = (f"no {OUTPUT_KEY} (the official evaluation.py skips "
                                        "such an item; counted wrong here)")
        items.append({**item, VERDICT_KEY: verdict})
    return items


def verdict_of(items: Sequence[dict[str, Any]]) -> Verdict:
    """The official verdict of the file `items` were read from, else of `items` as the
    predictions file this run writes (`official_rows`)."""
    found = next((i[VERDICT_KEY] for i in items if isinstance(i.get(VERDICT_KEY), Verdict)),
                 None)
    return found if found is not None else official_verdict(official_rows(items))


def verdict_line(title: str, verdict: Verdict, file_read: bool) -> str:
    """The official figure, labelled, as printed after the strict headline."""
    label = (f"{title} accuracy [mmar, as the official code/evaluation.py computes it on "
             f"{'this file' if file_read else 'predictions.json'}: items without "
             f"{OUTPUT_KEY} left out]")
    if verdict.stops is not None:
        return f"{label}: none; the official script would stop ({verdict.stops})"
    return (f"{label}: {verdict.accuracy:.2f}% ({verdict.correct}/{verdict.total}; "
            f"{len(verdict.left_out)} left out)")
