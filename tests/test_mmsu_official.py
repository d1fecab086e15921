"""MMSU's letter protocol reproduces the official `mmsu_evaluation.py` item for item.

The table below is a corpus of constructed responses. Its expectations follow the official
rule (dingdongwang/MMSU, `mmsu_evaluation.py`, commit 217d1d3); the official script itself, run
on this table's JSONL, printed `Overall Accuracy: 0.6538` and `Total count: 26`. To re-check
against the script, point MMSU_OFFICIAL_SCRIPT at a copy of it: `test_against_the_official_script`
then runs it on the same file and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate_mmsu
from local.core.answers import match_letter, mmsu_official_letter
from local.core.prompts import build_letter_prompt
from local.core.readers import read_mmsu
from local.core.records import ReadReport
from local.eval.benchmarks.mmsu import OFFICIAL_AS_IS
from local.eval.benchmarks.mmsu_official import official_rows, official_score
from tests.sources import mmsu_row, save_mmsu

ABCD = ["cat", "dog", "bird", "fish"]
PADDED = ["Yes", "No", "None", "None"]
DROP = "left out"  # the official script skips the row: not in its denominator

# (response, choices, answer text, what the official parser reads: a letter, None (counted,
#  wrong) or DROP)
TABLE = [
    ("A", ABCD, "cat", "A"), ("B", ABCD, "cat", "B"), ("C", ABCD, "bird", "C"),
    ("D", ABCD, "fish", "D"), ("a", ABCD, "cat", DROP), ("B.", ABCD, "dog", "B"),
    ("(B)", ABCD, "dog", "B"), ("(B) dog", ABCD, "dog", DROP), ("Both", ABCD, "dog", "B"),
    ("Answer: C", ABCD, "bird", "A"), ("The answer is C.", ABCD, "bird", "C"),
    ("The answer is C", ABCD, "bird", DROP), ("None", ABCD, "cat", None), ("", ABCD, "cat", None),
    ("   ", ABCD, "cat", None), (None, ABCD, "cat", DROP), (3, ABCD, "cat", DROP),
    (["A"], ABCD, "cat", DROP), ("\nB\n", ABCD, "dog", "B"),
    ("B\nbecause it barks", ABCD, "dog", "B"), ("I think D is right", ABCD, "fish", DROP),
    ("Dog", ABCD, "fish", "D"), ("<answer>B</answer>", ABCD, "dog", DROP),
    ("C)", ABCD, "bird", "C"), ("(D)", ABCD, "fish", "D"), ("E", ABCD, "cat", DROP),
    ("AB", ABCD, "cat", "A"), ("none", ABCD, "cat", DROP), ("Choice: B", ABCD, "dog", "C"),
    ("Answer (B).", ABCD, "dog", "A"), ("B", PADDED, "No", "B"), ("C", PADDED, "No", "C"),
    ("A", ["None", "Some", "All", "Few"], "None", "A"), ("C", ["x", "y", "x", "z"], "x", "C"),
    ("dog", ABCD, "dog", DROP), ("b", ABCD, "dog", DROP), ("\u00a0A", ABCD, "cat", "A"),
    ("Option A", ABCD, "cat", DROP),
]
OFFICIAL_PRINTED = {"accuracy": 0.6538, "total_count": 26}  # the official script on this table


def table_rows() -> list[dict]:
    rows = []
    for i, (response, choices, answer, _) in enumerate(TABLE):
        rows.append({"id": f"r{i}", **dict(zip(("choice_a", "choice_b", "choice_c", "choice_d"),
                                               choices, strict=True)),
                     "answer_gt": answer, "response": response,
                     "category": ["Perception", "Reasoning"][i % 2], "sub-category": "Phonology"})
    # no `response` key at all: the script reads "" (counted, wrong)
    rows.append({"id": "nokey", "choice_a": "x", "choice_b": "y", "choice_c": "", "choice_d": "",
                 "answer_gt": "x", "category": "Perception", "sub-category": "P"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("response", "choices", "answer", "read"), TABLE,
                         ids=[f"{i}-{str(t[0])[:12]!r}" for i, t in enumerate(TABLE)])
def test_each_response_is_read_as_the_official_script_reads_it(
        response: object, choices: list[str], answer: str, read: object) -> None:
    letter, counted = mmsu_official_letter(response)
    assert (DROP if not counted else letter) == read
    correct = read not in (None, DROP) and choices["ABCD".index(read)] == answer
    assert match_letter(response, answer, choices) is correct  # strict: same letter, same rule


def test_official_figures_equal_what_the_official_script_printed() -> None:
    score = official_score(table_rows())
    assert score["official_denominator"] == OFFICIAL_PRINTED["total_count"]
    assert round(score["official_accuracy"] / 100, 4) == OFFICIAL_PRINTED["accuracy"]
    expected_out = [f"r{i}" for i, row in enumerate(TABLE) if row[3] == DROP]
    assert score["official_left_out"] == expected_out


def test_score_only_on_the_official_format(tmp_path: Path, capsys: pytest.CaptureFixture
                                           ) -> None:
    path = write_jsonl(tmp_path / "official.jsonl", table_rows())
    result = evaluate_mmsu.main(["--score_only", str(path), "--protocols", "letter"])
    letter = result["protocols"]["letter"]
    assert letter["official_denominator"] == OFFICIAL_PRINTED["total_count"]
    assert round(letter["official_accuracy"] / 100, 4) == OFFICIAL_PRINTED["accuracy"]
    correct = sum(1 for r, c, a, read in TABLE if read not in (None, DROP)
                  and c["ABCD".index(read)] == a)
    assert (letter["correct"], letter["total"]) == (correct, len(TABLE) + 1)  # strict: all
    assert letter["accuracy"] == pytest.approx(100 * correct / (len(TABLE) + 1))
    printed = capsys.readouterr().out
    assert "MMSU accuracy [letter: MMSU letter protocol, strict" in printed
    assert "as the official mmsu_evaluation.py computes it" in printed and "17/26" in printed
    saved = json.loads((tmp_path / "results.json").read_text())["protocols"]["letter"]
    assert saved["official_denominator"] == 26 and saved["accuracy"] == letter["accuracy"]


def test_against_the_official_script(tmp_path: Path) -> None:
    script = os.environ.get("MMSU_OFFICIAL_SCRIPT")
    if not script:
        pytest.skip("set MMSU_OFFICIAL_SCRIPT to the official mmsu_evaluation.py to run it")
    path = write_jsonl(tmp_path / "t.jsonl", table_rows())
    printed = subprocess.run([sys.executable, script, str(path)], capture_output=True,
                             text=True, check=True).stdout
    overall = float(printed.split("Overall Accuracy: ")[1].split()[0])
    total = int(printed.split("Total count: ")[1].split()[0])
    ours = official_score(table_rows())
    assert total == ours["official_denominator"]
    assert overall == round(ours["official_accuracy"] / 100, 4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("", "the file is empty", id="empty"),
        pytest.param("[]", "not an MMSU predictions file", id="empty-list"),
        pytest.param(json.dumps([{"id": "m0", "audio_id": "./a.wav", "question": "q"}]),
                     "not an MMSU predictions file", id="mmau-question-file"),
        pytest.param(json.dumps({"accuracy": 50.0}), "not an MMSU predictions file",
                     id="a-results-file"),
        pytest.param('{"choice_a": "x"}\nnot json\n', ":2: not a JSON line", id="broken-jsonl"),
    ],
)
def test_score_only_refuses_what_is_not_predictions(content: str, message: str,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "file.json"
    path.write_text(content)
    with pytest.raises(SystemExit, match=message):
        evaluate_mmsu.main(["--score_only", str(path), "--protocols", "letter"])
    assert not (tmp_path / "results.json").exists()


def test_our_predictions_convert_to_the_official_format_and_score_alike() -> None:
    items = [{"id": f"r{i}", "choices": c, "answer": a, "response": r,
              "category": "Perception-Phonology-Stress-Word"} for i, (r, c, a, _) in
             enumerate(TABLE)]
    rows = official_rows(items)
    assert rows[0]["choice_a"] == "cat" and rows[0]["sub-category"] == "Phonology"
    assert official_score(rows) == official_score(table_rows()[:-1])


# ------------------------------------------------------------------- options by position

def test_options_keep_their_positions_and_padding(tmp_path: Path) -> None:
    rows = [mmsu_row(0, ["Yes", "No", "None", "None"], 1),
            mmsu_row(1, ["None", "Some", "All", "Few"], 0),  # a real "None" option
            mmsu_row(2, ["x", "None", "y", "None"], 2)]       # padding not trailing
    records = list(read_mmsu(save_mmsu(tmp_path / "mmsu", rows)))
    assert [r.choices for r in records] == [row["options"] for row in rows]
    assert [(r.answer, r.meta["answer_index"]) for r in records] == [
        ("No", 1), ("None", 0), ("y", 2)]
    prompt = build_letter_prompt(records[2].question, records[2].choices)
    assert prompt.endswith("A. x\nB. None\nC. y\nD. None")  # C is still the answer's letter


def test_official_columns_by_position_and_a_bad_answer_is_listed() -> None:
    import datasets

    ds = datasets.Dataset.from_list([
        {"id": "o1", "question": "q", "choice_a": "x", "choice_b": "y", "choice_c": "",
         "choice_d": "", "answer_gt": "y"},
        {"id": "o2", "question": "q", "choice_a": "x", "choice_b": "y", "choice_c": "z",
         "choice_d": "w", "answer_gt": "nope"}])
    report = ReadReport()
    (record,) = list(read_mmsu(ds, report=report))
    assert record.choices == ["x", "y"] and record.meta["answer_index"] == 1
    assert report.reasons and "answer_gt 'nope' is not one of the choices" in report.reasons[0][1]


def test_letter_prompt_is_the_official_template() -> None:
    # mmsu_inference.py: f"{question_prompts}\n\nQuestion: {question}\n\n{choices}" with
    # choices "A. {a}\nB. {b}\nC. {c}\nD. {d}"
    assert build_letter_prompt("Which word is stressed?", ["first", "second"]) == (
        "Choose the most suitable answer from options A, B, C, and D. You must respond with "
        "only A, B, C, or D.\n\nQuestion: Which word is stressed?\n\n"
        "A. first\nB. second\nC. \nD. ")


# ------------------------------------------------------- --score_only and the question set

def test_score_only_checks_our_predictions_against_the_question_set(tmp_path: Path) -> None:
    mmsu = save_mmsu(tmp_path / "mmsu", [mmsu_row(i, answer_index=1) for i in range(4)])
    predictions = [
        {"id": "k0", "answer": "second", "choices": [], "response": "<answer>second</answer>"},
        {"id": "k0", "answer": "second", "choices": [], "response": "<answer>first</answer>"},
        {"id": "k2", "answer": "x", "choices": ["x"], "response": "<answer>second</answer>"},
        {"id": "k3", "answer": "second", "choices": [], "response": "<answer>third</answer>"},
        {"id": "k9", "answer": "second", "choices": [], "response": "<answer>second</answer>"},
    ]
    path = tmp_path / "predictions_exact.json"
    path.write_text(json.dumps(predictions))
    result = evaluate_mmsu.main(["--score_only", str(path), "--protocols", "exact",
                             "--mmsu_path", str(mmsu)])
    exact = result["protocols"]["exact"]
    # answers and choices come from the question set: k2's own "x" is not trusted
    assert (exact["correct"], exact["total"]) == (2, 4)
    check = exact["question_check"]
    assert (check["extra_ids"], check["duplicate_ids"], check["missing_ids"]) == (
        ["k9"], ["k0"], ["k1"])
    assert exact["no_prediction_ids"] == ["k1"]

    with pytest.raises(SystemExit, match="--no_question_check"):
        evaluate_mmsu.main(["--score_only", str(path), "--mmsu_path", str(tmp_path / "none")])
    unchecked = evaluate_mmsu.main(["--score_only", str(path), "--protocols", "exact",
                                "--no_question_check"])
    assert unchecked["protocols"]["exact"]["total"] == 5
    assert "not checked" in unchecked["protocols"]["exact"]["question_check"]


def test_official_format_is_scored_as_it_is(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "official.jsonl", table_rows())
    result = evaluate_mmsu.main(["--score_only", str(path), "--protocols", "letter",
                             "--mmsu_path", str(tmp_path / "no-such-folder")])
    assert result["protocols"]["letter"]["question_check"] == OFFICIAL_AS_IS
