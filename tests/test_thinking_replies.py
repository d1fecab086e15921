"""Completions in Qwen3-Omni-Thinking's own format against every reward and the answer extractor.

The Thinking model writes its reasoning first, as its chat template renders an assistant turn:
`<think>\\n{reasoning}\\n</think>\\n\\n{reply}` (tests/data/model-configs/Qwen3-Omni-30B-A3B-
Thinking/chat_template.json, the assistant branch: `content.split('</think>')[-1].lstrip('\\n')`
is the reply it keeps). The reasoning often repeats the instruction, tags included; a completion
that opens with a `<think>` block is therefore judged on its reply by the answer rewards
(`local.core.answers.reply_text`); `format_think*` judge the whole text and `format*` keep the
reference rule (the whole completion is one answer block).
"""

from __future__ import annotations

import json

import pytest

from local.core.answers import extract_all_answers, extract_answer, reply_text
from local.core.rewards import REWARDS, default_rewards
from tests.helpers import REPO

CHOICES = ["two", "three", "four"]
REASONING = ("The user asks how many beeps. I must output the final answer in <answer> "
             "</answer>. I hear three short tones.")


def thinking(reply: str, reasoning: str = REASONING) -> str:
    """A completion as the Thinking template renders an assistant turn."""
    return "<think>\n" + reasoning + "\n</think>\n\n" + reply


# (completion, template, expected reward values by name); the id says why.
CASES = [
    pytest.param(thinking("<answer>three</answer>"), "think",
                 {"accuracy": 1.0, "format_answer": 1.0, "format_think": 1.0},
                 id="think-template-native-block-and-answer"),
    # `format` keeps the reference rule (the whole completion is one answer block): 0 for any
    # Thinking reply, a constant that gives no advantage; `--template think` is the one to use.
    pytest.param(thinking("<answer>three</answer>"), "default",
                 {"accuracy": 1.0, "format": 0.0}, id="default-template-accuracy-on-the-reply"),
    pytest.param(thinking("<answer>two</answer>"), "think",
                 {"accuracy": 0.0, "format_answer": 1.0, "format_think": 1.0},
                 id="wrong-answer-still-well-formed"),
    pytest.param(thinking("three"), "default", {"accuracy": 1.0, "format": 0.0},
                 id="reply-without-tags-whole-reply-is-the-answer"),
    pytest.param(thinking("<answer>three</answer>"), "new", {"accuracy_mmau": 1.0},
                 id="mmau-rule-on-the-reply-not-the-reasoning"),
    pytest.param("<think>\nunfinished reasoning <answer> </answer>", "think",
                 {"accuracy": 0.0, "format_answer": 0.0, "format_think": 0.0},
                 id="cut-off-inside-the-reasoning"),
    pytest.param(thinking("<answer>three</answer>", reasoning="Options: two, three."), "think",
                 {"accuracy": 1.0, "format_answer": 1.0, "format_think": 1.0},
                 id="reasoning-without-tags"),
]


@pytest.mark.parametrize(("completion", "template", "expected"), CASES)
@pytest.mark.parametrize("robust", [False, True])
def test_thinking_completions_score_on_their_reply(completion: str, template: str,
                                                    expected: dict[str, float],
                                                    robust: bool) -> None:
    names, _ = default_rewards(template, robust=robust)
    for name in names:
        base = name.removesuffix("_robust")
        if base not in expected:
            continue
        got = REWARDS[name]([completion], answer=["three"], choices=[CHOICES])
        assert got == [expected[base]], (name, completion)


def test_the_reasoning_s_quoted_tags_are_not_the_answer() -> None:
    completion = thinking("<answer>three</answer>")
    assert extract_answer(completion) == "three"
    assert extract_answer(completion, "eval") == "three"
    assert extract_all_answers(completion) == ["three"]
    assert reply_text(completion) == "<answer>three</answer>"


@pytest.mark.parametrize(("text", "reply"), [
    ("<answer>x</answer>", "<answer>x</answer>"),  # no reasoning block: the whole text
    ("<think>a</think><answer>x</answer>", "<answer>x</answer>"),
    ("  <think>a</think>\n\nx", "x"),
    ("<think>unclosed <answer>x</answer>", ""),  # cut off while reasoning: no reply
    ("<answer>x</answer><think>later</think>", "<answer>x</answer><think>later</think>"),
    ("", ""),
])
def test_reply_text(text: str, reply: str) -> None:
    assert reply_text(text) == reply


def test_the_rule_is_the_thinking_template_s_own() -> None:
    """The official template keeps `content.split('</think>')[-1].lstrip('\\n')` as the reply."""
    path = (REPO / "tests" / "data" / "model-configs" / "Qwen3-Omni-30B-A3B-Thinking"
            / "chat_template.json")
    if not path.is_file():
        pytest.skip("no copy of the Thinking chat template")
    template = json.loads(path.read_text())["chat_template"]
    assert "content.split('</think>')[-1].lstrip('\\n')" in template
    completion = thinking("<answer>three</answer>")
    assert reply_text(completion) == completion.split("</think>")[-1].lstrip("\n")
