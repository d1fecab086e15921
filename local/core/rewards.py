"""Reward functions in TRL's contract, a registry to pick them by name, and per-template defaults.

Contract (TRL `GRPOTrainer`): ``fn(completions, **kwargs) -> list[float]``; `completions` are
strings or conversational lists (``[{"role": "assistant", "content": "..."}]``) and every dataset
column (`answer`, `choices`, ...) arrives as a keyword list aligned with them.

The semantics of the reference recipe (WeST's GRPO example) by default; `*_robust` variants are
selectable by name:
  * accuracy          first ``<answer>`` (no DOTALL) else whole text == option text, exactly.
  * accuracy_robust   every non-empty ``<answer>`` block (DOTALL), else the whole text, must
                      match robustly (`match_robust`: case/space/punctuation, option letters);
                      blocks that disagree (hedging) score 0.
  * accuracy_mmau     the MMAU official token rule on the whole completion (template `new`).
  * format            whole completion fullmatches ``<answer>.*?</answer>`` (DOTALL).
  * format_robust     surrounding whitespace allowed; exactly one non-empty answer block, nothing
                      else.
  * format_answer     exactly one ``<answer>.*?</answer>`` (DOTALL) anywhere.
  * format_think      exactly one ``<think>.*?</think>`` (DOTALL) anywhere.
  * format_answer_robust / format_think_robust: exactly one opening and one closing tag, in
                      order, with non-empty content.

A completion that opens with a `<think>` block (Qwen3-Omni-Thinking's every reply; the `think`
template's) is judged on its reply after `</think>` by the rewards that look for the answer
(`accuracy*`, `format_answer*`; `local.core.answers.reply_text`): its reasoning may quote
`<answer>` tags, and a block that never closes answers nothing. `format` and `format_robust`
keep the reference rule, the whole completion is one answer block: with the `default`
template a Thinking model scores 0 on them every time (a constant, so no GRPO advantage); train
it with `--template think`.

Example:
    >>> from local.core.rewards import REWARDS, default_rewards
    >>> names, weights = default_rewards("default")
    >>> names, weights
    (['accuracy', 'format'], [1.0, 1.0])
    >>> [REWARDS[n](["<answer>Dog</answer>", "dog"], answer=["Dog", "Dog"]) for n in names]
    [[1.0, 0.0], [1.0, 0.0]]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from local.core.answers import (
    extract_all_answers,
    extract_answer,
    match_exact,
    match_mmau,
    match_robust,
    reply_text,
)

RewardFn = Callable[..., list[float]]

_ANSWER_BLOCK = re.compile(r"<answer>.*?</answer>", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, a message dict, or a list of messages/parts."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        if "content" in completion:
            return completion_text(completion["content"])
        return str(completion.get("text") or "")
    if isinstance(completion, (list, tuple)):
        return "".join(completion_text(part) for part in completion)
    raise TypeError(f"completion of type {type(completion).__name__}: expected a string or "
                    "a list of chat messages.")


def _column(name: str, reward: str, kwargs: dict[str, Any], n: int) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        raise ValueError(f"reward {reward!r} needs the dataset column {name!r} (one value per "
                         "completion); add it to the training rows (Record.to_row() has it).")
    if len(values) != n:
        raise ValueError(f"reward {reward!r}: {len(values)} values in column {name!r} for {n} "
                         "completions; the columns must be aligned with the completions.")
    return list(values)


def _named(name: str, fn: RewardFn, doc: str) -> RewardFn:
    fn.__name__ = fn.__qualname__ = name  # TRL logs rewards/<__name__>/mean
    fn.__doc__ = doc
    return fn


def _per_text(name: str, judge: Callable[[str], bool], doc: str) -> RewardFn:
    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [1.0 if judge(completion_text(c)) else 0.0 for c in completions]

    return _named(name, reward, doc)


def _per_answer(name: str, judge: Callable[[str, str, list[str] | None], bool], doc: str,
                needs_choices: bool) -> RewardFn:
    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        n = len(completions)
        answers = _column("answer", name, kwargs, n)
        choices = _column("choices", name, kwargs, n) if needs_choices else [None] * n
        return [1.0 if judge(completion_text(c), a, ch) else 0.0
                for c, a, ch in zip(completions, answers, choices, strict=True)]

    return _named(name, reward, doc)


def _accuracy_reference(text: str, answer: str, choices: list[str] | None) -> bool:
    return match_exact(extract_answer(text, "train"), answer)


def _accuracy_robust(text: str, answer: str, choices: list[str] | None) -> bool:
    blocks = extract_all_answers(text)
    preds = [b for b in blocks if b] if blocks else [reply_text(text).strip()]
    return bool(preds) and all(match_robust(p, answer, choices or []) for p in preds)


def _accuracy_mmau(text: str, answer: str, choices: list[str] | None) -> bool:
    return match_mmau(reply_text(text), answer, choices or [])


def _one_tag_pair(text: str, tag: str) -> str | None:
    """The content of the single ``<tag>...</tag>`` pair, or None if not exactly one, in order."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    if text.count(opening) != 1 or text.count(closing) != 1:
        return None
    start, end = text.index(opening) + len(opening), text.index(closing)
    return text[start:end] if start <= end else None


def _format_robust(text: str) -> bool:
    text = text.strip()
    inner = _one_tag_pair(text, "answer")
    return (inner is not None and bool(inner.strip()) and text.startswith("<answer>")
            and text.endswith("</answer>"))


def _nonempty_pair(tag: str) -> Callable[[str], bool]:
    def judge(text: str) -> bool:
        inner = _one_tag_pair(reply_text(text) if tag == "answer" else text, tag)
        return inner is not None and bool(inner.strip())

    return judge


REWARDS: dict[str, RewardFn] = {
    "accuracy": _per_answer(
        "accuracy", _accuracy_reference, needs_choices=False,
        doc="1.0 iff the first <answer> (no DOTALL), else the whole text, equals the option "
            "text exactly (reference recipe)."),
    "accuracy_robust": _per_answer(
        "accuracy_robust", _accuracy_robust, needs_choices=True,
        doc="1.0 iff every non-empty <answer> block (else the whole text) matches robustly."),
    "accuracy_mmau": _per_answer(
        "accuracy_mmau", _accuracy_mmau, needs_choices=True,
        doc="1.0 iff the whole completion is correct under the MMAU official token rule."),
    "format": _per_text(
        "format", lambda t: _ANSWER_BLOCK.fullmatch(t) is not None,
        doc="1.0 iff the whole completion fullmatches <answer>.*?</answer> (DOTALL, reference "
            "recipe)."),
    "format_robust": _per_text(
        "format_robust", _format_robust,
        doc="1.0 iff the stripped completion is exactly one non-empty <answer> block."),
    "format_answer": _per_text(
        "format_answer", lambda t: len(_ANSWER_BLOCK.findall(reply_text(t))) == 1,
        doc="1.0 iff there is exactly one <answer>.*?</answer> (DOTALL, reference recipe)."),
    "format_think": _per_text(
        "format_think", lambda t: len(_THINK_BLOCK.findall(t)) == 1,
        doc="1.0 iff there is exactly one <think>.*?</think> (DOTALL, reference recipe)."),
    "format_answer_robust": _per_text(
        "format_answer_robust", _nonempty_pair("answer"),
        doc="1.0 iff exactly one <answer> and one </answer>, in order, content non-empty."),
    "format_think_robust": _per_text(
        "format_think_robust", _nonempty_pair("think"),
        doc="1.0 iff exactly one <think> and one </think>, in order, content non-empty."),
}

_DEFAULTS: dict[str, tuple[list[str], list[float]]] = {
    "default": (["accuracy", "format"], [1.0, 1.0]),
    "think": (["accuracy", "format_answer", "format_think"], [0.8, 0.1, 0.1]),
    "new": (["accuracy_mmau"], [1.0]),
}


def default_rewards(template: str, robust: bool = False) -> tuple[list[str], list[float]]:
    """Reward names and weights the reference recipe uses for `template`; `robust` picks the
    `*_robust` variants.

    >>> default_rewards("think", robust=True)
    (['accuracy_robust', 'format_answer_robust', 'format_think_robust'], [0.8, 0.1, 0.1])
    """
    if template not in _DEFAULTS:
        raise ValueError(f"no default rewards for template {template!r}; choose one of "
                         f"{sorted(_DEFAULTS)}.")
    names, weights = _DEFAULTS[template]
    if robust:
        names = [f"{n}_robust" if f"{n}_robust" in REWARDS else n for n in names]
    return list(names), list(weights)


def resolve_reward_weights(
    template: str,
    *,
    robust: bool = False,
    reward_funcs: Sequence[str] | None = None,
    reward_weights: Sequence[float] | None = None,
) -> tuple[list[str], list[float]]:
    """The rewards a run uses and their weights: the one resolution train.py and the demo share.

    Names: `reward_funcs` if given, else the template's defaults (`robust` swaps in the
    `*_robust` variants). Weights: `reward_weights` if given (one per name); else each name keeps
    its template's default weight **by name** (a `*_robust` variant takes its plain name's), and
    a name the template does not weight gets 1.0.

    >>> resolve_reward_weights("think", reward_funcs=["format_think", "format_answer", "accuracy"])
    (['format_think', 'format_answer', 'accuracy'], [0.1, 0.1, 0.8])
    >>> resolve_reward_weights("default", reward_funcs=["accuracy", "format_think"])
    (['accuracy', 'format_think'], [1.0, 1.0])
    """
    names, weights = default_rewards(template, robust=robust)
    plain_names, plain_weights = default_rewards(template, robust=False)
    by_name = dict(zip(plain_names, plain_weights, strict=True))
    by_name.update({f"{n}_robust": w for n, w in zip(plain_names, plain_weights, strict=True)})
    if reward_funcs:
        names = list(reward_funcs)
        weights = [by_name.get(name, 1.0) for name in names]
    get_rewards(names)  # unknown names fail here, with the list of known ones
    if reward_weights is not None:
        if len(reward_weights) != len(names):
            raise ValueError(f"{len(reward_weights)} reward_weights for {len(names)} rewards "
                             f"{names}: give one weight per reward, in the same order.")
        weights = [float(w) for w in reward_weights]
    return names, [float(w) for w in weights]


def weight_table(names: Sequence[str], weights: Sequence[float]) -> str:
    """A one-line name -> weight table for the log.

    >>> weight_table(["accuracy", "format"], [1.0, 0.5])
    'accuracy=1, format=0.5'
    """
    return ", ".join(f"{n}={w:g}" for n, w in zip(names, weights, strict=True))


def get_rewards(names: Sequence[str]) -> list[RewardFn]:
    """The reward functions for `names`, with a clear error for an unknown name."""
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; available: {sorted(REWARDS)}.")
    return [REWARDS[n] for n in names]
