"""Prompt templates render exactly as the reference recipe's, and the message builder's
shape."""

from __future__ import annotations

import pytest

from local.core.prompts import TEMPLATES, build_messages, build_prompt, record_messages
from local.core.records import Record

QUESTION = "How many animals are there in the audio?"
CHOICES = ["3", "One", "4", "2"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            "default",
            "How many animals are there in the audio? Please choose the answer from the "
            "following options: ['3', 'One', '4', '2']. Output the final answer in "
            "<answer> </answer>.",
            id="default-reference-wording-and-list-repr",
        ),
        pytest.param(
            "think",
            "How many animals are there in the audio? Please choose the answer from the "
            "following options: ['3', 'One', '4', '2']. Output the thinking process in "
            "<think> </think> and final answer in <answer> </answer>.",
            id="think-reference-wording-and-list-repr",
        ),
        pytest.param(
            "new",
            "How many animals are there in the audio?Select one option from the provided "
            "choices.['3', 'One', '4', '2']",
            id="new-no-space-after-question-no-tags",
        ),
    ],
)
def test_templates_render_exactly(template: str, expected: str) -> None:
    assert build_prompt(QUESTION, CHOICES, template) == expected


@pytest.mark.parametrize(
    ("question", "choices", "expected_tail"),
    [
        pytest.param("Q?", ["it's", 'say "hi"'], "[\"it's\", 'say \"hi\"']",
                     id="quotes-rendered-as-python-repr-like-the-reference"),
        pytest.param("Q?", ("a", "b"), "['a', 'b']",
                     id="tuple-choices-still-render-as-a-list"),
        pytest.param("Q?", ["fourteen", "fourteen"], "['fourteen', 'fourteen']",
                     id="duplicate-choices-kept-verbatim"),
        pytest.param("Use {braces}?", ["x", "y"], "['x', 'y']",
                     id="braces-in-question-are-not-format-fields"),
    ],
)
def test_choices_render_as_list_repr(question: str, choices: list[str],
                                     expected_tail: str) -> None:
    text = build_prompt(question, choices, "new")
    assert text == f"{question}Select one option from the provided choices.{expected_tail}"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"template": "fancy"}, ValueError, id="unknown-template-named"),
        pytest.param({"choices": "ABCD"}, TypeError, id="a-string-is-not-a-choice-list"),
    ],
)
def test_build_prompt_rejects(kwargs: dict, error: type[Exception]) -> None:
    args = {"question": "Q", "choices": ["a", "b"], "template": "default", **kwargs}
    with pytest.raises(error):
        build_prompt(**args)


def test_templates_are_the_three_of_the_issue() -> None:
    assert sorted(TEMPLATES) == ["default", "new", "think"]


def test_messages_one_user_turn_audio_then_text() -> None:
    messages = build_messages("hello", audio="clip-1")
    assert messages == [{"role": "user", "content": [
        {"type": "audio", "audio": "clip-1"}, {"type": "text", "text": "hello"}]}]


def test_messages_built_fresh_and_without_none_values() -> None:
    first, second = build_messages("a"), build_messages("a")
    first[0]["content"][0]["audio"] = "changed"
    assert second[0]["content"][0]["audio"] != "changed"

    def walk(obj: object) -> None:
        if isinstance(obj, dict):
            assert None not in obj.values(), obj
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(second)
    # the text part must not carry an 'audio' key (Qwen templates count `'audio' in content`)
    assert "audio" not in second[0]["content"][1]


def test_messages_refuse_none_audio_reference() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        build_messages("a", audio=None)


def test_record_messages_uses_template_and_id() -> None:
    rec = Record(id="r1", audio=None, question="Q?", choices=["a", "b"], answer="b")
    messages = record_messages(rec, "think")
    assert messages[0]["content"][0] == {"type": "audio", "audio": "r1"}
    assert messages[0]["content"][1]["text"] == build_prompt("Q?", ["a", "b"], "think")
