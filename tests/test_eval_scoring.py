"""--score_only: the official MMAU rule on table cases, MMSU's two protocols, nothing dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evaluate_mmau
import evaluate_mmsu
from local.eval.benchmarks.mmau import MMAU
from local.eval.question_check import reconcile
from tests.helpers import REPO

CHOICES = ["Man", "Woman", "Child", "Robot"]

# (id, model_output or MISSING, answer, choices, official verdict, why). The verdicts follow the
# official evaluation.py's string_match: lower-cased word-token sets; every answer token present
# and no token that belongs only to a wrong choice.
MISSING = object()
MMAU_CASES = [
    ("exact", "Man", "Man", CHOICES, True, "the option text"),
    ("case", "MAN", "Man", CHOICES, True, "tokens are lower-cased"),
    ("sentence", "The answer is (A) man.", "Man", CHOICES, True, "extra non-choice words are fine"),
    ("two-choices", "Man or woman", "Man", CHOICES, False, "a wrong choice's token"),
    ("wrong", "Robot", "Man", CHOICES, False, "another option"),
    ("multi-word", "a dog barking loudly", "Dog barking", ["Dog barking", "Cat meowing"], True,
     "all answer tokens present"),
    ("partial", "barking", "Dog barking", ["Dog barking", "Cat meowing"], False,
     "an answer token missing"),
    ("shared-token", "Dog barking", "Dog barking", ["Dog barking", "Dog howling"], True,
     "'dog' is also in the answer, so it is not a distractor"),
    ("duplicate-choices", "dog", "Dog", ["Dog", "Dog", "Cat"], True,
     "a duplicate of the answer is not a wrong choice (MMAU has 27 such items)"),
    ("empty", "", "Man", CHOICES, False, "no tokens: wrong (official: no prediction tokens)"),
    ("punctuation-only", "...", "Man", CHOICES, False, "no word tokens"),
    ("no-key", MISSING, "Man", CHOICES, None, "no model_output: the official script drops it; "
     "we count it wrong"),
    ("null", None, "Man", CHOICES, None, "null model_output: no prediction, counted wrong"),
    # Not text: the official script crashes on these (it lower-cases model_output); str(["Man"])
    # would read as "man", so they are no prediction, counted wrong and listed.
    ("list", ["Man"], "Man", CHOICES, None, "a list is not text"),
    ("number", 1, "Man", CHOICES, None, "a number is not text"),
    ("object", {"text": "Man"}, "Man", CHOICES, None, "an object is not text"),
]


def _write(tmp_path: Path, items: list[dict], name: str = "predictions.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(items))
    return path


OUTPUTS = ("model_output", "response", "prediction_error")


def _score_only(tmp_path: Path, predictions: list[dict], questions: list[dict] | None = None,
                *extra: str) -> dict:
    """MMAU --score_only against a question file (by default the predictions' own items)."""
    if questions is None:
        questions = [{k: v for k, v in p.items() if k not in OUTPUTS} for p in predictions]
    return evaluate_mmau.main(["--score_only", str(_write(tmp_path, predictions)), "--mmau_json",
                           str(_write(tmp_path, questions, "questions.json")),
                           "--out", str(tmp_path / "RESULTS.json"), *extra])


def _mmau_items() -> list[dict]:
    items = []
    for rid, output, answer, choices, _, _ in MMAU_CASES:
        item = {"id": rid, "answer": answer, "choices": choices, "task": "sound",
                "difficulty": "easy", "sub-category": "x"}
        if output is not MISSING:
            item["model_output"] = output
        items.append(item)
    return items


def test_score_only_follows_the_official_rule_and_counts_missing_as_wrong(tmp_path) -> None:
    _score_only(tmp_path, _mmau_items())
    results = json.loads((tmp_path / "RESULTS.json").read_text())
    correct = [c[0] for c in MMAU_CASES if c[4] is True]
    missing = [c[0] for c in MMAU_CASES if c[4] is None]
    assert results["total"] == len(MMAU_CASES)  # nothing dropped
    assert results["correct"] == len(correct)
    assert results["accuracy"] == pytest.approx(100 * len(correct) / len(MMAU_CASES))
    assert results["no_prediction_ids"] == missing
    # What the official script would print: the missing items left out of the denominator.
    official_denominator = len(MMAU_CASES) - len(missing)
    assert results["accuracy"] < 100 * len(correct) / official_denominator


@pytest.mark.parametrize(("rid", "output", "answer", "choices", "expected", "why"), MMAU_CASES,
                         ids=[c[0] for c in MMAU_CASES])
def test_each_official_case(tmp_path, rid, output, answer, choices, expected, why) -> None:
    item = {"id": rid, "answer": answer, "choices": choices}
    if output is not MISSING:
        item["model_output"] = output
    result = MMAU.score([item], "mmau")
    assert result["correct"] == (expected is True), why
    assert result["no_prediction"] == (expected is None), why


@pytest.mark.parametrize(("output", "reason"), [
    pytest.param(None, "model_output is null", id="null"),
    pytest.param(["Man"], "model_output is not text (list: ['Man'])", id="list"),
    pytest.param(3, "model_output is not text (int: 3)", id="number"),
])
def test_non_text_output_is_listed_with_its_reason(output, reason: str) -> None:
    item = {"id": "q", "answer": "Man", "choices": CHOICES, "model_output": output}
    result = MMAU.score([item], "mmau")
    assert result["no_prediction_reasons"] == {"q": reason}


def test_malformed_and_errored_items_are_wrong_and_listed(tmp_path) -> None:
    items = [{"id": "ok", "answer": "Man", "choices": CHOICES, "model_output": "Man"},
             {"id": "audio", "answer": "Man", "choices": CHOICES, "model_output": "",
              "prediction_error": "unreadable audio: x.wav"},
             {"id": "broken", "question": "no answer or choices", "model_output": "Man"}]
    result = MMAU.score(items, "mmau")
    assert (result["correct"], result["total"]) == (1, 3)
    assert result["accuracy"] == pytest.approx(100 / 3)
    assert result["no_prediction_reasons"] == {
        "audio": "unreadable audio: x.wav",
        "broken": "malformed item: no answer/choices to judge"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"id": 1}', "expected a JSON list", id="object-not-list"),
        pytest.param("[1, 2]", "expected a JSON list", id="list-of-numbers"),
        pytest.param("not json", "not valid JSON", id="not-json"),
        pytest.param("[]", "holds no predictions", id="empty-predictions"),
    ],
)
def test_score_only_rejects_wrong_files(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(SystemExit, match=message):
        evaluate_mmau.main(["--score_only", str(path)])


def _q(i: int, **fields) -> dict:
    return {"id": f"q{i}", "answer": "Man", "choices": CHOICES, "task": "speech", **fields}


QUESTIONS = [_q(i) for i in range(4)]
RIGHT = [{**q, "model_output": "Man"} for q in QUESTIONS]

# (predictions, correct, total, question_check lists expected non-empty, why). The question set
# is QUESTIONS (4 items); the official evaluation.py would score each file as it is.
RECONCILE_CASES = [
    pytest.param(RIGHT, 4, 4, {}, id="clean"),
    pytest.param([*RIGHT, {**_q(9), "model_output": "Man"}], 4, 4, {"extra_ids": ["q9"]},
                 id="extra-id-listed-and-ignored"),  # official: 5/5
    pytest.param([*RIGHT, {**RIGHT[0], "model_output": "Robot"}], 4, 4,
                 {"duplicate_ids": ["q0"]}, id="duplicate-listed-first-counted-once"),  # 5/5
    pytest.param(RIGHT[:3], 3, 4, {"missing_ids": ["q3"]},
                 id="missing-counted-wrong"),  # official: 3/3
    pytest.param([{k: v for k, v in p.items() if k != "id"} for p in RIGHT[:1]] + RIGHT[1:], 3, 4,
                 {"extra_ids": ["(no id: entry 0)"], "missing_ids": ["q0"]}, id="no-id"),
    pytest.param([{**p, "answer": "Robot"} for p in RIGHT], 4, 4, {},
                 id="answer-comes-from-the-question-file"),
]


@pytest.mark.parametrize(("predictions", "correct", "total", "found"), RECONCILE_CASES)
def test_score_only_checks_predictions_against_the_question_set(
        tmp_path, predictions: list[dict], correct: int, total: int, found: dict) -> None:
    result = _score_only(tmp_path, predictions, QUESTIONS)
    assert (result["correct"], result["total"]) == (correct, total)
    check = result["question_check"]
    for key in ("extra_ids", "duplicate_ids", "missing_ids", "duplicate_question_ids"):
        assert check[key] == found.get(key, []), key
    assert result["no_prediction_ids"] == check["missing_ids"]
    assert all(result["no_prediction_reasons"][i] == "missing from the predictions file"
               for i in check["missing_ids"])
    markdown = (tmp_path / "RESULTS.md").read_text()
    for ids in found.values():
        assert all(i in markdown for i in ids)
    assert json.loads((tmp_path / "RESULTS.json").read_text())["question_check"] == check


def test_score_only_duplicate_question_ids_are_each_counted_wrong(tmp_path) -> None:
    questions = [*QUESTIONS, {**QUESTIONS[1], "answer": "Robot"}]
    result = _score_only(tmp_path, RIGHT, questions)
    assert (result["correct"], result["total"]) == (4, 5)
    assert result["question_check"]["duplicate_question_ids"] == ["q1"]
    assert list(result["no_prediction_reasons"]) == ["q1 (item 4)"]
    assert "duplicate id in the question file" in result["no_prediction_reasons"]["q1 (item 4)"]


def test_score_only_needs_the_question_file_or_an_explicit_opt_out(tmp_path, capsys) -> None:
    predictions = str(_write(tmp_path, [*RIGHT, RIGHT[0]]))
    absent = str(tmp_path / "absent.json")
    with pytest.raises(SystemExit, match="question file .*absent.json is not found.*"
                                         "--no_question_check"):
        evaluate_mmau.main(["--score_only", predictions, "--mmau_json", absent])
    result = evaluate_mmau.main(["--score_only", predictions, "--mmau_json", absent,
                             "--no_question_check"])
    assert result["total"] == 5  # the file as it is, and the results say so
    assert "--no_question_check" in result["question_check"]
    assert "--no_question_check" in capsys.readouterr().out
    assert "--no_question_check" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize(
    ("predictions", "questions", "message"),
    [
        pytest.param(RIGHT, [], "--mmau_json .*holds no questions", id="empty-question-file"),
        pytest.param([], QUESTIONS, "--score_only .*holds no predictions", id="empty-predictions"),
        pytest.param([{**p, "id": f"other-{i}"} for i, p in enumerate(RIGHT)], QUESTIONS,
                     "none of its 4 predictions has the id of a question", id="other-benchmark"),
    ],
)
def test_score_only_refuses_what_cannot_be_scored(tmp_path, predictions, questions,
                                                  message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        _score_only(tmp_path, predictions, questions)


@pytest.mark.parametrize(
    ("question_ids", "predictions", "expected"),
    [
        pytest.param(["a", "b"], ["a", "b"], ([], [], [], []), id="clean"),
        pytest.param(["a"], ["a", "x", "a"], (["x"], ["a"], [], []), id="extra-and-duplicate"),
        pytest.param(["a", "b", "a"], ["b"], ([], [], ["a"], ["a"]), id="questions-repeat"),
        pytest.param(["a", "a"], ["a", "a"], ([], [], [], ["a"]), id="repeat-predicted-twice"),
    ],
)
def test_reconcile(question_ids: list[str], predictions: list[str], expected: tuple) -> None:
    rec = reconcile(question_ids, [{"id": i, "model_output": i} for i in predictions])
    assert (rec.extra, rec.duplicates, rec.missing, rec.duplicate_questions) == expected
    assert [i["id"] for i in rec.items] == question_ids  # one per question, in order
    assert rec.matched == len(set(question_ids) & set(predictions))


MMSU_CHOICES = ["Yes", "No", "None", "None"]
# (model_output, answer, exact verdict, letter verdict, why)
MMSU_CASES = [
    ("No", "No", True, False,
     "the option text: right for the reference recipe, no letter for the official"),
    ("B", "No", False, True, "the letter: the official protocol's answer"),
    ("B. No", "No", False, True, "letter and text"),
    ("no", "No", False, False, "exact is case-sensitive; not a letter"),
    ("A", "No", False, False, "the wrong letter"),
    (None, "No", None, None, "no prediction: counted wrong under both"),
]


@pytest.mark.parametrize("protocol", ["exact", "letter"])
def test_mmsu_score_only_per_protocol(tmp_path, protocol: str) -> None:
    items = [{"id": f"q{i}", "answer": answer, "choices": MMSU_CHOICES, "model_output": output,
              "category": "Perception-Phonetics-Pitch-Tone"}
             for i, (output, answer, *_) in enumerate(MMSU_CASES)]
    out = tmp_path / "r.json"
    result = evaluate_mmsu.main(["--score_only", str(_write(tmp_path, items)), "--protocols",
                             protocol, "--out", str(out), "--no_question_check"])
    column = 2 if protocol == "exact" else 3
    expected = [c[column] for c in MMSU_CASES]
    scored = result["protocols"][protocol]
    assert result["accuracy_protocol"] == protocol
    assert scored["correct"] == expected.count(True)
    assert scored["no_prediction"] == expected.count(None)
    assert scored["total"] == len(MMSU_CASES)
    assert set(scored["tables"]) == {"overall", "level 1", "level 2", "level 3", "level 4"}
    markdown = out.with_suffix(".md").read_text()
    assert f"Accuracy [{protocol}]" in markdown


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    return text[start:text.index("\n## ", start)]


def test_readme_states_the_no_prediction_policy() -> None:
    section = " ".join(_readme_section("### mmau, mmsu").split())
    for needle in ("`prediction_error`", "counted **wrong**", "`no_prediction_ids`",
                   "`no_prediction_reasons`", "null or not text", 'model_output: ""'):
        assert needle in section, needle


def test_readme_states_the_score_only_question_check() -> None:
    section = " ".join(_readme_section("### mmau, mmsu").split())
    for needle in ("listed and ignored", "listed and counted once", "counted wrong",
                   "`question_check`", "`--no_question_check`", "empty question or predictions "
                   "file is an error"):
        assert needle in section, needle


@pytest.mark.parametrize(("extra", "printed"), [
    ([], "MMAU test-mini accuracy ["),
    (["--set_title", "synthetic demo set (MMAU format)"],
     "synthetic demo set (MMAU format) accuracy ["),
], ids=["benchmark-set", "other-set"])
def test_the_printed_accuracy_names_the_question_set(tmp_path, capsys, extra: list[str],
                                                      printed: str) -> None:
    """Items that are not the benchmark's own set are not printed as the benchmark's number."""
    predictions = str(_write(tmp_path, RIGHT))
    evaluate_mmau.main(["--score_only", predictions, "--no_question_check", *extra])
    lines = [line for line in capsys.readouterr().out.splitlines() if " accuracy [" in line]
    assert lines and all(line.startswith(printed) for line in lines), lines
