"""Reward values (the reference recipe's semantics, robust variants) and TRL's reward contract."""

from __future__ import annotations

import pytest

from local.core.rewards import (
    REWARDS,
    completion_text,
    default_rewards,
    get_rewards,
    resolve_reward_weights,
)

VOICES = ["Man", "Woman", "Child", "Robot"]
DUPES = ["zero", "zero", "seven", "one"]

# (reward, completion, answer, choices, expected); the id says why.
CASES = [
    # --- accuracy: reference (first <answer> without DOTALL, else whole text; exact option text)
    ("accuracy", "<answer>Woman</answer>", "Woman", VOICES, 1.0, "acc-tag-exact"),
    ("accuracy", "<answer>  Woman </answer>", "Woman", VOICES, 1.0, "acc-spaces-in-tag-stripped"),
    ("accuracy", "<answer>\nWoman\n</answer>", "Woman", VOICES, 0.0,
     "acc-newlines-in-tag-reference-has-no-dotall"),
    ("accuracy", "Woman", "Woman", VOICES, 1.0, "acc-no-tag-whole-text"),
    ("accuracy", " Woman\n", "Woman", VOICES, 1.0, "acc-no-tag-whole-text-stripped"),
    ("accuracy", "<answer>Man</answer><answer>Woman</answer>", "Woman", VOICES, 0.0,
     "acc-several-tags-first-wins-wrong"),
    ("accuracy", "<answer>Woman</answer><answer>Man</answer>", "Woman", VOICES, 1.0,
     "acc-several-tags-first-wins-right"),
    ("accuracy", "<answer>Woman", "Woman", VOICES, 0.0, "acc-unclosed-tag"),
    ("accuracy", "<answer>woman</answer>", "Woman", VOICES, 0.0, "acc-case-wrong-in-reference"),
    ("accuracy", "<answer>B</answer>", "Woman", VOICES, 0.0, "acc-letter-wrong-in-reference"),
    ("accuracy", "", "Woman", VOICES, 0.0, "acc-empty-output"),
    ("accuracy", "<think>hmm\nok</think>\n<answer>Woman</answer>", "Woman", VOICES, 1.0,
     "acc-think-then-answer"),
    ("accuracy", "<answer>zero</answer>", "zero", DUPES, 1.0, "acc-duplicate-choices"),
    # --- accuracy_robust: DOTALL, all blocks agree, robust matching ---
    ("accuracy_robust", "<answer>\nWoman\n</answer>", "Woman", VOICES, 1.0,
     "robust-newlines-in-tag"),
    ("accuracy_robust", "<answer>woman.</answer>", "Woman", VOICES, 1.0,
     "robust-case-and-punctuation"),
    ("accuracy_robust", "<answer>B</answer>", "Woman", VOICES, 1.0, "robust-letter"),
    ("accuracy_robust", "<answer>(B)</answer>", "Woman", VOICES, 1.0, "robust-paren-letter"),
    ("accuracy_robust", "<answer>A</answer>", "Woman", VOICES, 0.0, "robust-wrong-letter"),
    ("accuracy_robust", "<answer>Man</answer><answer>Woman</answer>", "Woman", VOICES, 0.0,
     "robust-several-tags-disagree-hedge-scores-0"),
    ("accuracy_robust", "<answer>Woman</answer> so <answer>B</answer>", "Woman", VOICES, 1.0,
     "robust-several-tags-agree"),
    ("accuracy_robust", "Use <answer></answer>. <answer>Woman</answer>", "Woman", VOICES, 1.0,
     "robust-echoed-empty-tag-ignored"),
    ("accuracy_robust", "<answer></answer>", "Woman", VOICES, 0.0, "robust-only-empty-tag"),
    ("accuracy_robust", "<answer>Woman", "Woman", VOICES, 0.0, "robust-unclosed-tag"),
    ("accuracy_robust", "woman", "Woman", VOICES, 1.0, "robust-no-tag-whole-text"),
    ("accuracy_robust", "I think it is the woman", "Woman", VOICES, 0.0,
     "robust-sentence-without-tag"),
    ("accuracy_robust", "", "Woman", VOICES, 0.0, "robust-empty-output"),
    ("accuracy_robust", "<answer>B</answer>", "zero", DUPES, 1.0,
     "robust-duplicate-choices-second-copy-letter"),
    # --- accuracy_mmau: the MMAU official rule on the whole completion ---
    ("accuracy_mmau", "Woman", "Woman", VOICES, 1.0, "mmau-exact"),
    ("accuracy_mmau", "The voice is a woman's.", "Woman", VOICES, 1.0,
     "mmau-possessive-token-woman-s-still-has-woman"),
    ("accuracy_mmau", "It is a woman speaking.", "Woman", VOICES, 1.0, "mmau-extra-words"),
    ("accuracy_mmau", "A woman or a child", "Woman", VOICES, 0.0, "mmau-distractor-word"),
    ("accuracy_mmau", "B", "Woman", VOICES, 0.0, "mmau-bare-letter"),
    ("accuracy_mmau", "", "Woman", VOICES, 0.0, "mmau-empty"),
    ("accuracy_mmau", "zero", "zero", DUPES, 1.0, "mmau-duplicate-choices"),
    # --- format: reference default (whole completion fullmatches <answer>.*?</answer>, DOTALL) ---
    ("format", "<answer>Woman</answer>", "Woman", VOICES, 1.0, "fmt-exact"),
    ("format", "<answer>\nWoman\n</answer>", "Woman", VOICES, 1.0, "fmt-newlines-dotall"),
    ("format", " <answer>Woman</answer>", "Woman", VOICES, 0.0, "fmt-leading-space"),
    ("format", "<answer>Woman</answer>\n", "Woman", VOICES, 0.0, "fmt-trailing-newline"),
    ("format", "<think>x</think><answer>Woman</answer>", "Woman", VOICES, 0.0,
     "fmt-think-before-answer-not-whole"),
    ("format", "<answer>A</answer><answer>B</answer>", "Woman", VOICES, 1.0,
     "fmt-several-tags-reference-quirk-lazy-match-spans"),
    ("format", "<answer>Woman", "Woman", VOICES, 0.0, "fmt-unclosed"),
    ("format", "<answer></answer>", "Woman", VOICES, 1.0, "fmt-empty-tag-accepted-by-reference"),
    ("format", "", "Woman", VOICES, 0.0, "fmt-empty-output"),
    # --- format_robust ---
    ("format_robust", " <answer>Woman</answer>\n", "Woman", VOICES, 1.0,
     "fmtr-surrounding-space-ok"),
    ("format_robust", "<answer>A</answer><answer>B</answer>", "Woman", VOICES, 0.0,
     "fmtr-several-tags"),
    ("format_robust", "<answer> </answer>", "Woman", VOICES, 0.0, "fmtr-blank-content"),
    ("format_robust", "<answer>Woman</answer> because", "Woman", VOICES, 0.0,
     "fmtr-text-after-tag"),
    ("format_robust", "", "Woman", VOICES, 0.0, "fmtr-empty-output"),
    # --- format_answer / format_think: reference think template (exactly one, order free) ---
    ("format_answer", "<think>x</think><answer>Woman</answer>", "Woman", VOICES, 1.0,
     "fa-one-answer"),
    ("format_answer", "<answer>\nB\n</answer>", "Woman", VOICES, 1.0, "fa-newlines-dotall"),
    ("format_answer", "<answer>a</answer> <answer>b</answer>", "Woman", VOICES, 0.0,
     "fa-two-answers"),
    ("format_answer", "Woman", "Woman", VOICES, 0.0, "fa-missing"),
    ("format_answer", "<answer>Woman", "Woman", VOICES, 0.0, "fa-unclosed"),
    ("format_answer", "<answer></answer>", "Woman", VOICES, 1.0, "fa-empty-content-reference-ok"),
    ("format_think", "<think>\nx\n</think><answer>B</answer>", "Woman", VOICES, 1.0,
     "ft-one-think-dotall"),
    ("format_think", "<answer>B</answer><think>x</think>", "Woman", VOICES, 1.0,
     "ft-order-not-enforced"),
    ("format_think", "<think>a</think><think>b</think>", "Woman", VOICES, 0.0, "ft-two-thinks"),
    ("format_think", "<think>a", "Woman", VOICES, 0.0, "ft-unclosed"),
    ("format_think", "", "Woman", VOICES, 0.0, "ft-empty-output"),
    # --- robust tag-pair variants ---
    ("format_answer_robust", "<think>x</think> <answer>B</answer>", "Woman", VOICES, 1.0,
     "far-one-pair"),
    ("format_answer_robust", "<answer> </answer>", "Woman", VOICES, 0.0, "far-blank"),
    ("format_answer_robust", "</answer>B<answer>", "Woman", VOICES, 0.0, "far-reversed-tags"),
    ("format_answer_robust", "<answer>B</answer></answer>", "Woman", VOICES, 0.0,
     "far-extra-closing-tag"),
    ("format_think_robust", "<think>x</think>", "Woman", VOICES, 1.0, "ftr-one-pair"),
    ("format_think_robust", "<think></think><answer>B</answer>", "Woman", VOICES, 0.0,
     "ftr-empty-think"),
    ("format_think_robust", "<think>a<think>b</think>", "Woman", VOICES, 0.0,
     "ftr-nested-opening"),
]


@pytest.mark.parametrize(("name", "completion", "answer", "choices", "expected"),
                         [pytest.param(*c[:5], id=c[5]) for c in CASES])
def test_reward_value(name: str, completion: str, answer: str, choices: list[str],
                      expected: float) -> None:
    got = REWARDS[name]([completion], answer=[answer], choices=[choices])
    assert got == [expected]


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_conversational_completion_scores_like_string(name: str) -> None:
    """TRL passes [{'role': 'assistant', 'content': ...}] for chat datasets."""
    texts = ["<think>x</think><answer>Woman</answer>", "<answer>B</answer>", "Man", ""]
    chats = [[{"role": "assistant", "content": t}] for t in texts]
    kwargs = {"answer": ["Woman"] * 4, "choices": [VOICES] * 4}
    assert REWARDS[name](chats, **kwargs) == REWARDS[name](texts, **kwargs)


def test_rewards_follow_row_alignment_and_ignore_other_columns() -> None:
    completions = ["<answer>Man</answer>", "<answer>seven</answer>", "<answer>Man</answer>"]
    got = REWARDS["accuracy"](
        completions, prompts=["p"] * 3, answer=["Man", "seven", "Woman"],
        choices=[VOICES, DUPES, VOICES], id=["a", "b", "c"], trainer_state=None,
        completion_ids=[[1], [2], [3]])
    assert got == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"choices": [VOICES]}, "needs the dataset column 'answer'",
                     id="answer-column-missing"),
        pytest.param({"answer": ["Man", "Man"], "choices": [VOICES]}, "aligned",
                     id="answer-column-misaligned"),
    ],
)
def test_reward_column_errors_are_clear(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        REWARDS["accuracy"](["Man"], **kwargs)


def test_choices_needed_by_robust_and_mmau() -> None:
    for name in ("accuracy_robust", "accuracy_mmau"):
        with pytest.raises(ValueError, match="'choices'"):
            REWARDS[name](["Man"], answer=["Man"])


def test_registry_names_are_logged_names() -> None:
    required = {"accuracy", "format", "format_answer", "format_think",
                "accuracy_robust", "accuracy_mmau"}
    assert required <= set(REWARDS)
    for name, fn in REWARDS.items():
        assert fn.__name__ == name
        assert fn.__doc__


@pytest.mark.parametrize(
    ("template", "robust", "names", "weights"),
    [
        pytest.param("default", False, ["accuracy", "format"], [1.0, 1.0], id="default-reference"),
        pytest.param("think", False, ["accuracy", "format_answer", "format_think"],
                     [0.8, 0.1, 0.1], id="think-reference"),
        pytest.param("new", False, ["accuracy_mmau"], [1.0], id="new-mmau-accuracy-only"),
        pytest.param("default", True, ["accuracy_robust", "format_robust"], [1.0, 1.0],
                     id="default-robust-variants"),
        pytest.param("new", True, ["accuracy_mmau"], [1.0], id="new-has-no-robust-swap"),
    ],
)
def test_default_rewards(template: str, robust: bool, names: list[str],
                         weights: list[float]) -> None:
    assert default_rewards(template, robust) == (names, weights)
    assert len(get_rewards(names)) == len(names)


def test_unknown_names_are_clear() -> None:
    with pytest.raises(ValueError, match="available"):
        get_rewards(["accuracy", "accurracy"])
    with pytest.raises(ValueError, match="template"):
        default_rewards("fancy")


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        pytest.param("abc", "abc", id="string"),
        pytest.param([{"role": "assistant", "content": "abc"}], "abc", id="one-message"),
        pytest.param([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                        {"type": "text", "text": "bc"}]}],
                     "abc", id="content-parts"),
        pytest.param(None, "", id="none"),
    ],
)
def test_completion_text(completion: object, text: str) -> None:
    assert completion_text(completion) == text


@pytest.mark.parametrize(
    ("template", "funcs", "weights", "expected"),
    [
        pytest.param("think", ["format_think", "format_answer", "accuracy"], None,
                     [0.1, 0.1, 0.8], id="think-reordered-keeps-weights-by-name"),
        pytest.param("think", ["accuracy"], None, [0.8], id="think-subset-by-name"),
        pytest.param("think", ["format_answer_robust", "accuracy_robust"], None, [0.1, 0.8],
                     id="robust-variant-takes-plain-names-weight"),
        pytest.param("default", ["accuracy", "format_think"], None, [1.0, 1.0],
                     id="name-the-template-does-not-weight-gets-1"),
        pytest.param("new", ["format", "accuracy_mmau"], None, [1.0, 1.0], id="new-template"),
        pytest.param("think", ["format_think", "accuracy"], [0.3, 0.7], [0.3, 0.7],
                     id="explicit-weights-win"),
        pytest.param("think", None, None, [0.8, 0.1, 0.1], id="template-defaults"),
    ],
)
def test_reward_weights_follow_names_not_positions(template, funcs, weights, expected) -> None:
    names, resolved = resolve_reward_weights(template, reward_funcs=funcs, reward_weights=weights)
    assert names == (funcs or default_rewards(template)[0])
    assert resolved == expected


def test_reward_weight_resolution_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="one weight per reward"):
        resolve_reward_weights("default", reward_funcs=["accuracy"], reward_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="available"):
        resolve_reward_weights("default", reward_funcs=["accurracy"])


def test_train_resolves_rewards_by_name_and_logs_the_table(caplog) -> None:
    """train.py's resolution (what TRL then weights the rewards with) and its log line."""
    import logging

    import train
    from local.train.config import parse_args

    config, _ = parse_args(["--output_dir", "exp/test", "--use_cpu", "true", "--template",
                            "think", "--reward_funcs", "format_think", "format_answer",
                            "accuracy"])
    with caplog.at_level(logging.INFO, logger="train"):
        funcs = train.resolve_rewards(config)
    assert [f.__name__ for f in funcs] == ["format_think", "format_answer", "accuracy"]
    assert config.reward_weights == [0.1, 0.1, 0.8]
    assert "format_think=0.1, format_answer=0.1, accuracy=0.8" in caplog.text
