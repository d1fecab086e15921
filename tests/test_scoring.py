"""Accuracy tables: unanswered items are wrong and listed, never dropped; groups; markdown."""

from __future__ import annotations

import pytest

from local.eval.benchmarks.mmau import MMAU
from local.eval.benchmarks.mmsu import MMSU
from local.eval.judge import MISSING_GROUP, Row, accuracy_table, judge, no_prediction
from local.eval.results import render_markdown, render_report

ITEMS = [
    {"id": "1", "correct": True, "task": "sound", "difficulty": "easy", "sub-category": "A"},
    {"id": "2", "correct": False, "task": "sound", "difficulty": "hard", "sub-category": "A"},
    {"id": "3", "correct": None, "task": "music", "difficulty": "medium", "sub-category": "B"},
    {"id": "4", "correct": True, "task": "music", "difficulty": "easy", "sub-category": None},
]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(None, [Row("all", 2, 4, 1)], id="overall-unanswered-in-denominator"),
        pytest.param("task", [Row("music", 1, 2, 1), Row("sound", 1, 2, 0)], id="per-task"),
        pytest.param("difficulty", [Row("easy", 2, 2, 0), Row("medium", 0, 1, 1),
                                    Row("hard", 0, 1, 0)], id="difficulty-in-natural-order"),
        pytest.param("sub-category", [Row("A", 1, 2, 0), Row("B", 0, 1, 1),
                                      Row(MISSING_GROUP, 1, 1, 0)],
                     id="missing-value-gets-its-own-group"),
    ],
)
def test_accuracy_table(key: str | None, expected: list[Row]) -> None:
    assert accuracy_table(ITEMS, key) == expected


def test_accuracy_value_counts_unanswered_as_wrong() -> None:
    (row,) = accuracy_table(ITEMS)
    assert row.accuracy == 50.0  # 2 of 4, not 2 of 3
    assert Row("empty", 0, 0, 0).accuracy == 0.0


def test_missing_correct_key_counts_as_no_prediction() -> None:
    rows = accuracy_table([{"id": "x"}, {"id": "y", "correct": True}])
    assert rows == [Row("all", 1, 2, 1)]
    assert no_prediction([{"id": "x"}, {"id": "y", "correct": False}]) == ["x"]


def test_non_boolean_correct_is_an_error() -> None:
    with pytest.raises(ValueError, match="item 'z'"):
        accuracy_table([{"id": "z", "correct": 1}])


def test_list_valued_category_groups_by_its_text() -> None:
    """13 real MMAU items store category as ['Reasoning']."""
    rows = accuracy_table([{"id": "a", "correct": True, "category": ["Reasoning"]},
                           {"id": "b", "correct": False, "category": "Reasoning"}], "category")
    assert rows == [Row("Reasoning", 1, 2, 0)]


def test_breakdown_has_overall_and_mmau_keys() -> None:
    tables = MMAU.tables(ITEMS)
    assert list(tables) == ["overall", "task", "difficulty", "sub-category"]
    assert tables["overall"] == [Row("all", 2, 4, 1)]


def test_mmsu_levels_group_by_category_prefix() -> None:
    items = [
        {"id": "1", "correct": True, "category": "Perception-Semantics-Syntax-Word order"},
        {"id": "2", "correct": False, "category": "Perception-Phonology-Stress-Lexical"},
        {"id": "3", "correct": None, "category": "Reasoning-Semantics-Syntax-Inference"},
        {"id": "4", "correct": True},
    ]
    tables = MMSU.tables(items)
    assert list(tables) == ["overall", "level 1", "level 2", "level 3", "level 4"]
    assert tables["level 1"] == [Row("Perception", 1, 2, 0), Row("Reasoning", 0, 1, 1),
                                 Row(MISSING_GROUP, 1, 1, 0)]
    # same level-2 name under different parents stays apart
    assert [r.group for r in tables["level 2"]] == [
        "Perception-Phonology", "Perception-Semantics", "Reasoning-Semantics", MISSING_GROUP]
    assert len(tables["level 4"]) == 4


@pytest.mark.parametrize(
    ("item", "match", "expected"),
    [
        pytest.param({"model_output": "a man"}, "mmau", True, id="mmau-extra-words"),
        pytest.param({"model_output": "man"}, "exact", False, id="exact-is-case-sensitive"),
        pytest.param({"model_output": "(A)"}, "robust", True, id="robust-letter"),
        pytest.param({"model_output": "A"}, "letter", True, id="letter-protocol"),
        pytest.param({"model_output": ""}, "mmau", False, id="empty-output-is-wrong-not-missing"),
        pytest.param({"model_output": None}, "mmau", None, id="none-output-is-no-prediction"),
        pytest.param({}, "mmau", None, id="absent-output-is-no-prediction-not-dropped"),
        pytest.param({"model_output": ["Man"]}, "mmau", None, id="list-output-is-no-prediction"),
        pytest.param({"model_output": 1}, "letter", None, id="number-output-is-no-prediction"),
        pytest.param({"model_output": {"a": "Man"}}, "exact", None, id="object-is-no-prediction"),
        pytest.param({"model_output": True}, "mmau", None, id="bool-output-is-no-prediction"),
    ],
)
def test_judge(item: dict, match: str, expected: bool | None) -> None:
    base = {"id": "q", "answer": "Man", "choices": ["Man", "Woman"], "task": "speech"}
    (judged,) = judge([{**base, **item}], match=match)
    assert judged["correct"] is expected
    assert judged["task"] == "speech"  # meta kept for the tables


def test_judge_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown matcher"):
        judge([], match="fuzzy")
    with pytest.raises(ValueError, match="item 'q'"):
        judge([{"id": "q", "model_output": "x"}])


def test_render_markdown_exact() -> None:
    text = render_markdown([Row("sound", 1, 3, 1)], "task")
    assert text == ("| task | correct | total | accuracy (%) | no prediction |\n"
                    "|---|---:|---:|---:|---:|\n"
                    "| sound | 1 | 3 | 33.33 | 1 |")


def test_render_report_lists_unanswered_and_protocol() -> None:
    text = render_report(MMAU.tables(ITEMS), no_prediction(ITEMS), protocol="MMAU official rule")
    assert "Scored with: MMAU official rule." in text
    assert "No prediction (counted wrong): 1 items: 3" in text
    assert "| all | 2 | 4 | 50.00 | 1 |" in text
