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
from local.core.records import ReadReport
from local.data.mmsu import read_mmsu
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
        pytest.param('{"choice_a": "x"}\nnot json\n', "no usable row.*line 2: not JSON",
                     id="broken-jsonl"),
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


# ------------------------------------------- --score_only on a faulty official-format file
# Each file below is built line by line: a dict is written as one JSON line, a str as it is.

def orow(i: int, response: object = "B", answer: object = "dog", **extra: object) -> dict:
    """One official-format row (options cat/dog/bird/fish), id "r{i}"."""
    return {"id": f"r{i}", **dict(zip(("choice_a", "choice_b", "choice_c", "choice_d"), ABCD,
                                      strict=True)),
            "answer_gt": answer, "response": response, "category": "Perception",
            "sub-category": "Phonology", **extra}


def without(row: dict, *keys: str) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


def score_file(path: Path, *argv: str) -> dict:
    return evaluate_mmsu.main(["--score_only", str(path), *argv])


def refusal(path: Path, *argv: str) -> str:
    """The one-line message --score_only stops with (no traceback, nothing written)."""
    with pytest.raises(SystemExit) as stop:
        score_file(path, *argv)
    message = str(stop.value.code)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"--score_only {path}")
    assert not (path.parent / "results.json").exists()
    return message


@pytest.mark.parametrize("argv", [[], ["--protocols", "exact,letter"],
                                  ["--protocols", "letter,exact"], ["--protocols", "letter"]],
                         ids=["default", "exact-first", "letter-first", "letter"])
def test_a_letter_only_file_is_headlined_by_the_letter_protocol(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_lines(tmp_path / "predictions_letter.jsonl",
                       [orow(0), orow(1), orow(2, response="A")])
    result = score_file(path, *argv)
    assert (result["accuracy_protocol"], list(result["protocols"])) == ("letter", ["letter"])
    assert result["accuracy"] == pytest.approx(200 / 3)
    letter = result["protocols"]["letter"]
    assert letter["not_scored"]["exact"].startswith(
        "not scorable from this file: it has no option text")
    assert "exact" in letter["headline_reason"]
    printed = capsys.readouterr().out
    assert "0.00%" not in printed and "[exact" not in printed
    assert printed.splitlines()[0].startswith("MMSU accuracy [letter: ")
    assert "Headline: letter" in printed and "not scorable from this file" in printed
    markdown = (tmp_path / "results.md").read_text()
    assert "Headline: letter" in markdown and "not scorable from this file" in markdown
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["accuracy_protocol"] == "letter"
    assert saved["protocols"]["letter"]["not_scored"] == letter["not_scored"]


def test_exact_alone_on_an_official_file_says_why_it_cannot_be_scored(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "predictions_letter.jsonl", [orow(0), orow(1)])
    message = refusal(path, "--protocols", "exact")
    assert "not scorable from this file: it has no option text" in message
    assert "--protocols letter" in message


# (lines of the file, the bad row's line, its id in the results, words of its reason)
BAD_ROWS = [
    pytest.param([orow(0), '{"id": "r1", "choice_a": "cat", broken', orow(2)], 2, "r1",
                 "not JSON", id="not-json-id-recovered"),
    pytest.param([orow(0), "{{{", orow(2)], 2, "line-2", "not JSON", id="not-json-no-id"),
    pytest.param([orow(0), '["r1", "B"]', orow(2)], 2, "line-2", "not a JSON object",
                 id="a-list"),
    pytest.param([orow(0), "17", orow(2)], 2, "line-2", "not a JSON object", id="a-number"),
    pytest.param([orow(0), without(orow(1), "answer_gt"), orow(2)], 2, "r1",
                 "missing answer_gt", id="no-answer_gt"),
    pytest.param([orow(0), without(orow(1), "choice_a", "choice_b"), orow(2)], 2, "r1",
                 "missing choice_a, choice_b", id="no-choices"),
    pytest.param([orow(0), {"id": "r1", "response": "B"}, orow(2)], 2, "r1",
                 "missing choice_a, choice_b, answer_gt", id="only-a-response"),
    pytest.param([orow(0), orow(1, choice_b=7), orow(2)], 2, "r1", "choice_b is not text",
                 id="choice-a-number"),
    pytest.param([orow(0), orow(1, choice_c=["bird"]), orow(2)], 2, "r1",
                 "choice_c is not text", id="choice-a-list"),
    pytest.param([orow(0), orow(1, choice_a=""), orow(2)], 2, "r1", "choice_a is blank",
                 id="choice-blank"),
    pytest.param([orow(0), orow(1, response=3), orow(2)], 2, "r1", "response is not text",
                 id="response-a-number"),
    pytest.param([orow(0), orow(1, response={"text": "B"}), orow(2)], 2, "r1",
                 "response is not text", id="response-an-object"),
    pytest.param([orow(0), orow(2), '{"id": "r9"'], 3, "r9", "not JSON", id="last-line"),
    pytest.param(["", orow(0), "  ", "oops", orow(2)], 4, "line-4", "not JSON",
                 id="blank-lines-keep-numbers"),
]


@pytest.mark.parametrize(("lines", "line", "ident", "reason"), BAD_ROWS)
def test_a_bad_row_is_named_listed_and_counted_wrong(
        lines: list[object], line: int, ident: str, reason: str, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    path = write_lines(tmp_path / "p.jsonl", lines)
    letter = score_file(path)["protocols"]["letter"]
    assert (letter["correct"], letter["total"]) == (2, 3)  # the rest scored, the bad row wrong
    (bad,) = letter["file_check"]["bad_rows"]
    assert (bad["line"], bad["id"] or f"line-{line}") == (line, ident) and reason in bad["reason"]
    assert ident in letter["no_prediction_ids"]
    assert f"line {line}" in letter["no_prediction_reasons"][ident]
    assert letter["official_denominator"] == 2  # the official script cannot read that row
    printed = capsys.readouterr().out
    assert f"line {line}" in printed and reason in printed
    assert f"line {line}" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        pytest.param(["{{{", "not json either"], ["line 1: not JSON", "line 2: not JSON"],
                     id="nothing-parses"),
        pytest.param([without(orow(0), "answer_gt"), orow(1, choice_a=3)],
                     ["line 1 (id r0): missing answer_gt", "line 2 (id r1): choice_a is not"],
                     id="every-row-broken"),
        pytest.param([orow(0, answer=None), orow(1, answer="nope")],
                     ["line 1 (id r0): answer_gt is null", "line 2 (id r1): answer_gt 'nope'"],
                     id="no-known-answer"),
        pytest.param(['{"choice_a": "x"}', "not json"],
                     ["line 1: missing choice_b, answer_gt", "line 2: not JSON"],
                     id="broken-jsonl"),
    ],
)
def test_a_file_without_a_usable_row_is_refused_in_one_line(
        lines: list[object], words: list[str], tmp_path: Path) -> None:
    message = refusal(write_lines(tmp_path / "p.jsonl", lines))
    for word in words:
        assert word in message
    assert "question set" not in message


def test_a_repeated_id_is_counted_once_and_the_repeat_listed(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture
                                                             ) -> None:
    path = write_lines(tmp_path / "p.jsonl",
                       [orow(0), orow(1), orow(1, response="A"), orow(2), orow(1, response="C")])
    letter = score_file(path)["protocols"]["letter"]
    assert (letter["correct"], letter["total"]) == (3, 3)  # r1 once: its first row (B, right)
    assert (letter["official_correct"], letter["official_denominator"]) == (3, 3)
    check = letter["file_check"]
    assert (check["rows"], check["scored"], check["duplicate_ids"]) == (5, 3, ["r1"])
    assert check["duplicate_rows"] == [{"id": "r1", "line": 3, "first_line": 2},
                                       {"id": "r1", "line": 5, "first_line": 2}]
    printed = capsys.readouterr().out
    assert "r1 at line 3 (first at line 2)" in printed


# (answer_gt, words of the reason)
UNKNOWN_ANSWERS = [
    pytest.param(None, "answer_gt is null", id="null"),
    pytest.param("nope", "answer_gt 'nope' is not one of the options", id="not-an-option"),
    pytest.param("", "answer_gt is blank", id="blank"),
    pytest.param(2, "answer_gt is not text", id="a-number"),
    pytest.param("E", "answer_gt 'E' is not one of the options", id="letter-E"),
    pytest.param("Dog", "answer_gt 'Dog' is not one of the options", id="case-differs"),
]


@pytest.mark.parametrize(("answer", "reason"), UNKNOWN_ANSWERS)
def test_a_row_without_a_known_answer_is_listed_and_counted_wrong(
        answer: object, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_lines(tmp_path / "p.jsonl", [orow(0), orow(1, answer=answer), orow(2)])
    letter = score_file(path)["protocols"]["letter"]
    assert (letter["correct"], letter["total"]) == (2, 3)  # kept in the denominator, wrong
    (unknown,) = letter["file_check"]["unknown_answer_rows"]
    assert (unknown["line"], unknown["id"]) == (2, "r1") and reason in unknown["reason"]
    assert "line 2" in letter["no_prediction_reasons"]["r1"]
    assert reason in letter["no_prediction_reasons"]["r1"]
    printed = capsys.readouterr().out
    markdown = (tmp_path / "results.md").read_text()
    for text in (printed, markdown):
        assert "line 2 (id r1)" in text and "counted wrong" in text
        assert "kept in the denominator" in text


def test_a_letter_answer_names_its_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_lines(tmp_path / "p.jsonl", [orow(0, answer="B"), orow(1, answer="C"),
                                              orow(2, answer="dog")])
    letter = score_file(path)["protocols"]["letter"]
    assert (letter["correct"], letter["total"]) == (2, 3)  # r1 answers C (bird): B is wrong
    assert [(r["line"], r["read_as"]) for r in letter["file_check"]["letter_answer_rows"]] == [
        (1, "dog"), (2, "bird")]
    assert letter["file_check"]["unknown_answer_rows"] == []
    assert "read as that option" in capsys.readouterr().out


# (rows, what the message says of each format)
MIXED = [
    pytest.param("p.jsonl", [orow(0), orow(1), orow(2), {"id": "r3", "answer": "dog",
                                                         "choices": ABCD, "model_output": "dog"}],
                 ["lines 1-3 are the official scorer's format",
                  "line 4 is the recipe's predictions format"], id="jsonl"),
    pytest.param("p.jsonl", [{"id": "r0", "answer": "dog", "choices": ABCD, "response": "x"},
                             orow(1), "oops", orow(3), {"id": "r4", "answer": "dog",
                                                       "choices": ABCD, "response": "y"}],
                 ["lines 2, 4 are the official scorer's format",
                  "lines 1, 5 are the recipe's predictions format"], id="interleaved"),
    pytest.param("p.json", [[orow(0), {"id": "r1", "answer": "dog", "choices": ABCD,
                                       "model_output": "dog"}, orow(2)]],
                 ["items 0, 2 are the official scorer's format",
                  "item 1 is the recipe's predictions format"], id="json-list"),
]


@pytest.mark.parametrize(("name", "lines", "words"), MIXED)
def test_a_file_mixing_both_formats_says_which_lines_are_which(
        name: str, lines: list[object], words: list[str], tmp_path: Path) -> None:
    path = write_lines(tmp_path / name, lines)
    for argv in ([], ["--mmsu_path", str(tmp_path / "no-such-folder")]):
        message = refusal(path, *argv)
        assert "mixes two formats" in message and "question set" not in message
        for word in words:
            assert word in message


def test_a_clean_official_file_says_its_denominator(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    path = write_lines(tmp_path / "p.jsonl", [orow(0), orow(1, response="A")])
    letter = score_file(path)["protocols"]["letter"]
    check = letter["file_check"]
    assert (check["rows"], check["scored"], check["bad_rows"], check["duplicate_ids"],
            check["unknown_answer_rows"]) == (2, 2, [], [], [])
    assert "2 rows, 2 scored" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("entries", "where", "reason"),
    [
        pytest.param([orow(0), "B", orow(2)], "item 1", "not a JSON object (str)", id="a-string"),
        pytest.param([orow(0), without(orow(1), "choice_b"), orow(2)], "item 1 (id r1)",
                     "missing choice_b", id="no-choice_b"),
        pytest.param([orow(0), orow(2), orow(3, answer=None)], "item 2 (id r3)",
                     "answer_gt is null", id="null-answer"),
    ],
)
def test_a_json_list_in_the_official_format_names_items(
        entries: list[object], where: str, reason: str, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "official.json"
    path.write_text(json.dumps(entries))
    letter = score_file(path)["protocols"]["letter"]
    assert (letter["correct"], letter["total"]) == (2, 3)
    assert f"{where}: {reason}" in capsys.readouterr().out


def test_the_question_data_is_refused_not_scored(tmp_path: Path) -> None:
    questions = [without(orow(i), "response") for i in range(3)]  # MMSU's own rows: no response
    message = refusal(write_lines(tmp_path / "mmsu.jsonl", questions))
    assert "no row has a response" in message and "question data" in message


def test_a_null_response_is_no_prediction_named_by_its_row(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [orow(0), orow(1, response=None), orow(2)])
    letter = score_file(path)["protocols"]["letter"]
    assert (letter["correct"], letter["total"], letter["no_prediction_ids"]) == (2, 3, ["r1"])
    assert letter["no_prediction_reasons"]["r1"] == (
        "line 2 (id r1): response is null: no prediction")
    assert letter["file_check"]["bad_rows"] == [] and letter["official_left_out"] == ["r1"]
