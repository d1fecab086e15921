"""MMAR's protocol reproduces the official `code/evaluation.py` item for item.

The official scorer (github ddlBoJack/MMAR, `code/evaluation.py` at commit 3bce090a) judges
`answer_prediction` by `string_match`, MMAU's token-set rule, skips items without that key and
prints tables by modality, category and sub-category and "Total Accuracy: X% over N samples".
The figures committed below are what that script printed (run from a copy of the commit, outside
the repository) on the files these tests build:

* `TABLE`: constructed predictions over real-shaped items (answers contained, distractor
  tokens, empty, punctuation, case, a missing key, two answers, two-choice, duplicated-choice,
  number, CJK and accented items), `OFFICIAL_TABLE`;
* the real 1,000-item question file with deterministic varied predictions (`real_rows`), every
  item predicted (`OFFICIAL_REAL`), and with 20 keys and 10 rows removed (`OFFICIAL_GAPS`).

To re-check against the script, point MMAR_OFFICIAL_SCRIPT at a copy of it:
`test_against_the_official_script` then runs it on the same files and compares every line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate_mmar
from local.core.answers import match_mmau
from local.eval.benchmarks.mmar_official import official_match, official_verdict, printout
from tests.sources import REAL_MMAR_JSONL, mmar_item, real_mmar_jsonl, write_mmar_jsonl

SKIP = "skipped"  # the official script skips the row: not in its denominator
MISSING = None  # no answer_prediction key in the row
C4 = ["Mountain Canyon", "Dense Forest", "Open Grassland", "City Streets"]
YN = ["Yes", "No"]
DUP = ["A dog barking", "A dog barking", "A cat meowing"]
SPEAKERS = ["A man speaking", "A woman speaking", "A child speaking"]
NUMBERS = ["3", "30", "13", "4"]
CJK = ["普通话", "粤语"]
CAFE = ["Café music", "Street music"]
SIX = ["one", "two", "three", "four", "five", "six"]

# (prediction, choices, answer, what the official script makes of it: True, False or SKIP)
TABLE = [
    ("Open Grassland", C4, "Open Grassland", True),
    ("It comes from an open grassland.", C4, "Open Grassland", True),
    ("OPEN GRASSLAND!!!", C4, "Open Grassland", True),
    ("open-grassland", C4, "Open Grassland", True),
    ("Open\nGrassland", C4, "Open Grassland", True),
    ("C. Open Grassland", C4, "Open Grassland", True),
    ("(C)", C4, "Open Grassland", False),
    ("Grassland", C4, "Open Grassland", False),
    ("Open Grassland, not City Streets", C4, "Open Grassland", False),
    ("Open Grassland or Dense Forest", C4, "Open Grassland", False),
    ("Dense Forest", C4, "Open Grassland", False),
    ("", C4, "Open Grassland", False),
    (" ... !", C4, "Open Grassland", False),
    (MISSING, C4, "Open Grassland", SKIP),
    ("Yes", YN, "Yes", True),
    ("yes, definitely", YN, "Yes", True),
    ("No", YN, "Yes", False),
    ("Yes and no", YN, "Yes", False),
    (MISSING, YN, "No", SKIP),
    ("a dog barking", DUP, "A dog barking", True),
    ("A cat meowing", DUP, "A dog barking", False),
    ("A woman speaking", SPEAKERS, "A woman speaking", True),
    ("a woman", SPEAKERS, "A woman speaking", False),
    ("woman speaking, not a man", SPEAKERS, "A woman speaking", False),
    ("3", NUMBERS, "3", True),
    ("There are 3 beeps.", NUMBERS, "3", True),
    ("30", NUMBERS, "3", False),
    ("普通话", CJK, "普通话", True),
    ("是普通话", CJK, "普通话", False),
    ("cafe music", CAFE, "Café music", False),
    ("CAFÉ MUSIC", CAFE, "Café music", True),
    ("six", SIX, "six", True),
    ("five or six", SIX, "six", False),
]
MODALITIES = ["sound", "music", "speech", "mix-sound-music", "mix-sound-speech",
              "mix-music-speech", "mix-sound-music-speech"]
LAYERS = ["Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer"]

# What the official code/evaluation.py (commit 3bce090a, run on files these functions wrote)
# printed for `table_rows()`:
OFFICIAL_TABLE = {
    "total": "Total Accuracy: 48.39% over 31 samples",
    "modality": ["sound : 60.00% over 5 samples", "music : 40.00% over 5 samples",
                 "speech : 40.00% over 5 samples", "mix-sound-music : 60.00% over 5 samples",
                 "mix-sound-speech : 50.00% over 4 samples",
                 "mix-music-speech : 50.00% over 4 samples",
                 "mix-sound-music-speech : 33.33% over 3 samples"],
    "category": ["Signal Layer : 33.33% over 9 samples",
                 "Perception Layer : 57.14% over 7 samples",
                 "Semantic Layer : 42.86% over 7 samples",
                 "Cultural Layer : 62.50% over 8 samples"],
}
# ... for `real_rows()` (all 1000 items predicted) and `real_rows(gaps=True)`, with the first
# modality lines it printed:
OFFICIAL_REAL = ("Total Accuracy: 49.50% over 1000 samples",
                 ["sound : 46.67% over 165 samples", "music : 50.00% over 206 samples",
                  "speech : 51.36% over 294 samples"])
OFFICIAL_GAPS = ("Total Accuracy: 48.87% over 970 samples",
                 ["sound : 46.63% over 163 samples", "music : 48.21% over 195 samples",
                  "speech : 50.35% over 284 samples"])


def table_items() -> list[dict]:
    """One real-shaped question item per TABLE row (the modalities and layers spread)."""
    return [mmar_item(i, choices=choices, answer=answer, modality=MODALITIES[i % 7],
                      category=LAYERS[i % 4], **{"sub-category": f"Sub {i % 3}"})
            for i, (_, choices, answer, _) in enumerate(TABLE)]


def table_rows() -> list[dict]:
    """The official-format file of TABLE: each item with its answer_prediction (or none)."""
    return [item if prediction is MISSING else {**item, "answer_prediction": prediction}
            for item, (prediction, *_) in zip(table_items(), TABLE, strict=True)]


def real_rows(gaps: bool = False) -> list[dict]:
    """Official-format predictions for the real question file, varied by position: the answer,
    a sentence holding it, a wrong option, both, empty, upper case, its letter, a prefix; with
    `gaps`, every 50th row loses its answer_prediction and every 97th row is removed."""
    items = [json.loads(line) for line in real_mmar_jsonl().read_text().splitlines()]
    rows = []
    for i, item in enumerate(items):
        answer, choices = item["answer"], item["choices"]
        wrong = next(c for c in choices if c != answer)
        prediction = [answer, f"The answer is {answer.lower()}.", wrong, f"{answer} or {wrong}",
                      "", f"{answer.upper()}!", f"({'ABCDEF'[choices.index(answer)]})",
                      f"I think: {answer}"][i % 8]
        row = {**item, "answer_prediction": prediction}
        if gaps and i % 50 == 49:
            del row["answer_prediction"]
        if not (gaps and i % 97 == 96):
            rows.append(row)
    return rows


def write_json(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


PREDICTED = [row for row in TABLE if row[0] is not MISSING]


@pytest.mark.parametrize(("prediction", "choices", "answer", "expected"), PREDICTED,
                         ids=[f"{i}-{t[0][:14]!r}" for i, t in enumerate(PREDICTED)])
def test_each_prediction_is_judged_as_the_official_script_judges_it(
        prediction: str, choices: list[str], answer: str, expected: bool) -> None:
    assert official_match(answer, prediction, choices) is expected
    assert match_mmau(prediction, answer, choices) is expected  # the recipe's matcher: the same


def test_official_figures_equal_what_the_official_script_printed() -> None:
    lines = printout(official_verdict(table_rows()))
    assert lines[-1] == OFFICIAL_TABLE["total"]
    assert lines[:11] == OFFICIAL_TABLE["modality"] + OFFICIAL_TABLE["category"]


def test_score_only_strict_and_official_on_the_table(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    questions = write_mmar_jsonl(tmp_path / "MMAR-meta.jsonl", table_items())
    predictions = write_json(tmp_path / "predictions.json", table_rows())
    result = evaluate_mmar.main(["--score_only", str(predictions), "--mmar_json",
                                 str(questions), "--out", str(tmp_path / "r.json")])
    correct = sum(expected is True for *_, expected in TABLE)
    skipped = [f"mmar-{i}" for i, row in enumerate(TABLE) if row[3] == SKIP]
    assert (result["correct"], result["total"]) == (correct, len(TABLE))  # strict: every item
    assert result["no_prediction_ids"] == skipped  # counted wrong, listed
    assert "the official evaluation.py skips" in result["no_prediction_reasons"][skipped[0]]
    assert result["official_correct"] == correct
    assert result["official_denominator"] == len(TABLE) - len(skipped)
    assert result["official_left_out"] == skipped
    out = capsys.readouterr().out
    assert "MMAR accuracy [mmar: MMAR official rule" in out
    assert "as the official code/evaluation.py computes it on this file" in out
    assert f"{correct}/{len(TABLE) - len(skipped)}; 2 left out" in out


@pytest.mark.parametrize(("change", "why"), [
    ({"answer_prediction": None}, "answer_prediction is NoneType"),
    ({"answer_prediction": ["Yes"]}, "answer_prediction is list"),
    ({"modality": "mix"}, "KeyError 'mix'"),
    ({"category": "Other Layer"}, "KeyError 'Other Layer'"),
])
def test_where_the_official_script_stops_the_item_is_counted_wrong(
        change: dict, why: str, tmp_path: Path) -> None:
    rows = table_rows()
    rows[1] = {**rows[1], **change}
    verdict = official_verdict(rows)
    assert verdict.accuracy is None and why in verdict.stops and "mmar-1" in verdict.stops
    questions = write_mmar_jsonl(tmp_path / "q.jsonl", [{**i, **{k: v for k, v in change.items()
                                                                 if k != "answer_prediction"}}
                                                        if n == 1 else i
                                                        for n, i in enumerate(table_items())])
    result = evaluate_mmar.main(["--score_only", str(write_json(tmp_path / "p.json", rows)),
                                 "--mmar_json", str(questions), "--out", str(tmp_path / "r.json")])
    assert result["official_accuracy"] is None and result["official_stops"] == verdict.stops
    if "answer_prediction" in change:
        assert "the official evaluation.py stops on it" in result["no_prediction_reasons"]["mmar-1"]
    assert result["total"] == len(TABLE)


def test_score_only_on_the_real_file_gives_the_official_accuracy(tmp_path: Path) -> None:
    rows = real_rows()
    path = write_json(tmp_path / "predictions.json", rows)
    result = evaluate_mmar.main(["--score_only", str(path), "--mmar_json",
                                 str(real_mmar_jsonl()), "--out", str(tmp_path / "r.json")])
    assert f"Total Accuracy: {result['accuracy']:.2f}% over {result['total']} samples" \
        == OFFICIAL_REAL[0]
    assert printout(official_verdict(rows))[:3] == OFFICIAL_REAL[1]
    assert result["no_prediction"] == 0 and result["question_check"]["matched"] == 1000
    assert (result["official_correct"], result["official_denominator"]) == \
        (result["correct"], result["total"])
    verdict = official_verdict(rows)  # and per modality, category, sub-category, as printed
    strict = {r["group"]: (r["correct"], r["total"]) for r in result["tables"]["modality"]}
    assert {name: (c, n) for name, c, n in verdict.tables["modality"] if n} == strict


def test_score_only_counts_what_the_official_script_leaves_out(tmp_path: Path) -> None:
    rows = real_rows(gaps=True)
    path = tmp_path / "predictions.jsonl"  # JSON lines, as the official script also reads
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result = evaluate_mmar.main(["--score_only", str(path), "--mmar_json",
                                 str(real_mmar_jsonl()), "--out", str(tmp_path / "r.json")])
    official = official_verdict(rows)
    assert printout(official)[-1] == OFFICIAL_GAPS[0]
    assert printout(official)[:3] == OFFICIAL_GAPS[1]
    assert result["official_accuracy"] == official.accuracy
    removed = [json.loads(line)["id"] for n, line in
               enumerate(real_mmar_jsonl().read_text().splitlines()) if n % 97 == 96]
    keyless = [r["id"] for r in rows if "answer_prediction" not in r]
    assert result["question_check"]["missing_ids"] == removed
    assert sorted(result["no_prediction_ids"]) == sorted(removed + keyless)
    assert result["total"] == 1000 and result["correct"] == official.correct
    assert result["accuracy"] == pytest.approx(official.correct / 10)


def test_against_the_official_script(tmp_path: Path) -> None:
    script = os.environ.get("MMAR_OFFICIAL_SCRIPT")
    if not script:
        pytest.skip("set MMAR_OFFICIAL_SCRIPT to the official code/evaluation.py to run it")
    files = [write_json(tmp_path / "table.json", table_rows())]
    if REAL_MMAR_JSONL.is_file():  # the real file's rows, where the workspace has it
        files += [write_json(tmp_path / "real.json", real_rows()),
                  write_json(tmp_path / "gaps.json", real_rows(gaps=True))]
    for path in files:
        printed = subprocess.run([sys.executable, script, "--input", str(path)],
                                 capture_output=True, text=True, check=True).stdout
        lines = [line for line in printed.splitlines() if " over " in line]
        assert lines == printout(official_verdict(json.loads(path.read_text()))), path.name
