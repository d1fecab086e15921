"""--score_only: the official MMAU rule on table cases, MMSU's two protocols, nothing dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local import eval_mmau, eval_mmsu
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


def _write(tmp_path: Path, items: list[dict]) -> Path:
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(items))
    return path


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
    out = tmp_path / "RESULTS.json"
    eval_mmau.main(["--score_only", str(_write(tmp_path, _mmau_items())), "--out", str(out)])
    results = json.loads(out.read_text())
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
    result = eval_mmau.score_predictions([item])
    assert result["correct"] == (expected is True), why
    assert result["no_prediction"] == (expected is None), why


@pytest.mark.parametrize(("output", "reason"), [
    pytest.param(None, "model_output is null", id="null"),
    pytest.param(["Man"], "model_output is not text (list: ['Man'])", id="list"),
    pytest.param(3, "model_output is not text (int: 3)", id="number"),
])
def test_non_text_output_is_listed_with_its_reason(output, reason: str) -> None:
    item = {"id": "q", "answer": "Man", "choices": CHOICES, "model_output": output}
    result = eval_mmau.score_predictions([item])
    assert result["no_prediction_reasons"] == {"q": reason}


def test_malformed_and_errored_items_are_wrong_and_listed(tmp_path) -> None:
    items = [{"id": "ok", "answer": "Man", "choices": CHOICES, "model_output": "Man"},
             {"id": "audio", "answer": "Man", "choices": CHOICES, "model_output": "",
              "prediction_error": "unreadable audio: x.wav"},
             {"id": "broken", "question": "no answer or choices", "model_output": "Man"}]
    result = eval_mmau.score_predictions(items)
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
    ],
)
def test_score_only_rejects_wrong_files(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(SystemExit, match=message):
        eval_mmau.main(["--score_only", str(path)])


MMSU_CHOICES = ["Yes", "No", "None", "None"]
# (model_output, answer, exact verdict, letter verdict, why)
MMSU_CASES = [
    ("No", "No", True, False, "the option text: right for the seed, no letter for the official"),
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
    result = eval_mmsu.main(["--score_only", str(_write(tmp_path, items)), "--protocols",
                             protocol, "--out", str(out)])
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
