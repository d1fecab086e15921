"""Answer extraction and matching, shared by the rewards (training) and the evaluators.

Extraction: ``mode="train"`` is the reward parsing of the reference recipe (WeST's GRPO
example): first ``<answer>(.*?)</answer>`` without DOTALL, else the whole text, stripped;
``mode="eval"`` is its evaluators' (the same with DOTALL, so a tag spanning lines is found).

A completion that opens with a reasoning block (`<think>...</think>`, as Qwen3-Omni-Thinking
writes every reply, or as the `think` template asks) is judged on its reply, the text after the
last `</think>` (`reply_text`): the reasoning often quotes the instruction, tags included.

Matching, from strict to lenient:
  * `match_exact`: the reference recipe's rule, the prediction equals the option text exactly.
  * `match_robust`: case, spacing and punctuation normalised; an option letter ("B", "(B)",
    "B.", "B. text") accepted by its position in the choices.
  * `match_mmau`: the MMAU benchmark's official token-set rule.
  * `match_letter`: MMSU's official letter rule (`mmsu_official_letter` reads the letter from
    the raw response exactly as the official `mmsu_evaluation.py` does).

Example:
    >>> from local.core.answers import extract_answer, match_exact, match_mmau, match_robust
    >>> extract_answer("<think>hmm</think><answer> Woman </answer>")
    'Woman'
    >>> match_exact("woman", "Woman"), match_robust("(B)", "Woman", ["Man", "Woman"])
    (False, True)
    >>> match_mmau("It is a woman.", "Woman", ["Man", "Woman"])
    True
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Literal

_ANSWER_LINE = re.compile(r"<answer>(.*?)</answer>")
_ANSWER_DOTALL = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_WORD = re.compile(r"\b\w+\b")
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")
# "B", "(B)", "B.", "B)", "B:", "[B]" alone, or such a letter followed by option text.
_LETTER_ONLY = re.compile(r"^[(\[]?([A-Za-z])[)\].:]?$")
_LETTER_AND_TEXT = re.compile(r"^(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])[.:)])\s*(.+)$",
                              re.DOTALL)


def reply_text(text: str | None) -> str:
    """The reply of a completion that opens with a `<think>` block: the text after its last
    `</think>`, leading newlines dropped, or "" when the block never closes (cut off while
    reasoning: nothing was answered); any other text as it is.

    The split is the Qwen3 Thinking chat template's own for an assistant turn
    (`content.split('</think>')[-1].lstrip('\\n')`, tests/data/model-configs/
    Qwen3-Omni-30B-A3B-Thinking/chat_template.json); it applies only where the completion
    begins with its reasoning, so a block later in the text changes nothing.

    >>> reply_text("<think>\\nI must use <answer> </answer>.\\n</think>\\n\\n<answer>B</answer>")
    '<answer>B</answer>'
    """
    text = text or ""
    if not text.lstrip().startswith("<think>"):
        return text
    return text.split("</think>")[-1].lstrip("\n") if "</think>" in text else ""


def extract_answer(text: str, mode: Literal["train", "eval"] = "train") -> str:
    """The first ``<answer>`` content of the reply (modes: see the module doc), else the whole
    reply; stripped.

    >>> text = "<answer>\\nB\\n</answer>"
    >>> extract_answer(text), extract_answer(text, "eval")
    ('<answer>\\nB\\n</answer>', 'B')
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"extract_answer mode {mode!r}: use 'train' or 'eval'.")
    text = reply_text(text)
    match = (_ANSWER_LINE if mode == "train" else _ANSWER_DOTALL).search(text)
    return (match.group(1) if match else text).strip()


def extract_all_answers(text: str) -> list[str]:
    """Every ``<answer>`` block's content in the reply (DOTALL), stripped, in order; [] if there
    is none."""
    return [m.strip() for m in _ANSWER_DOTALL.findall(reply_text(text))]


def match_exact(pred: str | None, answer: str) -> bool:
    """The reference recipe's accuracy rule: the prediction is the option text, exactly
    (case-sensitive)."""
    return pred is not None and pred == answer


def normalize(text: str) -> str:
    """Case-folded, punctuation as spaces, whitespace collapsed: "  The Man. " -> "the man"."""
    return _SPACES.sub(" ", _NOT_WORD_OR_SPACE.sub(" ", text.casefold())).strip()


def _letter_index(letter: str) -> int:
    return string.ascii_uppercase.index(letter.upper())


def _parse_letter(pred: str, choices: Sequence[str]) -> tuple[int | None, str | None]:
    """(index, trailing text) for a letter-style prediction, (None, None) otherwise."""
    pred = pred.strip()
    only = _LETTER_ONLY.match(pred)
    if only:
        return _letter_index(only.group(1)), None
    both = _LETTER_AND_TEXT.match(pred)
    if both:
        letter = next(g for g in both.groups()[:3] if g)
        return _letter_index(letter), both.group(4)
    return None, None


def match_robust(pred: str | None, answer: str, choices: Sequence[str]) -> bool:
    """Robust match: normalised text equal to the answer's, or an option letter that points to it.

    A prediction that normalises to a choice's text is judged as text first (so a choice that is
    itself "A" is not read as a letter). With duplicate choices any copy of the answer counts.
    If normalisation makes the answer equal to a different wrong option, only an exact match
    counts (the prediction cannot tell them apart).

    >>> match_robust("the MAN!", "The man", ["The man", "A woman"])
    True
    >>> match_robust("B. The man", "The man", ["A woman", "The man"])
    True
    """
    if pred is None:
        return False
    if pred.strip() == answer:
        return True
    norm_pred, norm_answer = normalize(pred), normalize(answer)
    if not norm_pred:
        return False
    wrong = {normalize(c) for c in choices if c != answer}
    if norm_pred == norm_answer:
        return norm_answer not in wrong
    if norm_pred in wrong:
        return False
    index, text = _parse_letter(pred, choices)
    if index is None or index >= len(choices) or choices[index] != answer:
        return False
    return text is None or normalize(text) == norm_answer


MMSU_LETTERS = "ABCD"


def mmsu_official_letter(response: object) -> tuple[str | None, bool]:
    """(letter or None, counted) for a raw response, as MMSU's official scorer reads it.

    The rule of `mmsu_evaluation.py` (dingdongwang/MMSU, commit 217d1d3), reimplemented: the
    response is stripped and its newlines removed; its first character is the letter if it is
    one of A-D, else its second-to-last character if that is; the literal "None" and the empty
    string are counted without a letter (wrong). Everything else is left out of the official
    denominator (`counted` False): a non-string response (null, a number, a list: the script's
    `.strip()` fails) and a non-empty response with no letter in either place. Only capital
    letters count, so a word starting with A-D ("Both", "Answer: C") is read as that letter,
    as the official script does.

    >>> mmsu_official_letter("B"), mmsu_official_letter("The answer is C.")
    (('B', True), ('C', True))
    >>> mmsu_official_letter("Both"), mmsu_official_letter("none of them")
    (('B', True), (None, False))
    >>> mmsu_official_letter(None), mmsu_official_letter("None")
    ((None, False), (None, True))
    """
    if not isinstance(response, str):
        return None, False
    predict = response.strip().replace("\n", "")
    if predict == "None" or not predict:
        return None, True
    if predict[0] in MMSU_LETTERS:
        return predict[0], True
    if len(predict) > 1 and predict[-2] in MMSU_LETTERS:
        return predict[-2], True
    return None, False


def match_letter(pred: str | None, answer: str, choices: Sequence[str]) -> bool:
    """MMSU's official letter rule on the raw response: the letter `mmsu_official_letter`
    reads names a choice whose text is the answer (the official script compares texts, so a
    duplicate of the answer text counts too). Unreadable responses are wrong.

    >>> match_letter("C", "x", ["a", "b", "x", "d"]), match_letter("x", "x", ["a", "b", "x"])
    (True, False)
    """
    letter, _ = mmsu_official_letter(pred)
    if letter is None:
        return False
    index = MMSU_LETTERS.index(letter)
    return index < len(choices) and choices[index] == answer


def mmau_tokens(text: str) -> set[str]:
    """MMAU's tokenisation: the set of lower-cased word tokens (``\\b\\w+\\b``)."""
    return set(_WORD.findall(text.lower()))


def match_mmau(pred: str | None, answer: str, choices: Sequence[str]) -> bool:
    """The MMAU official rule on word-token sets.

    Correct iff the prediction has tokens, every answer token is among them, and none of them is
    a token of a wrong choice that is not also an answer token. A choice with exactly the
    answer's tokens (a duplicate) is not a wrong choice.

    >>> match_mmau("The answer is (B) Woman", "Woman", ["Man", "Woman"])
    True
    >>> match_mmau("Man or woman", "Woman", ["Man", "Woman"])
    False
    """
    if pred is None:
        return False
    pred_tokens, answer_tokens = mmau_tokens(pred), mmau_tokens(answer)
    if not pred_tokens:
        return False
    distractors: set[str] = set()
    for choice in choices:
        tokens = mmau_tokens(choice)
        if tokens != answer_tokens:
            distractors |= tokens - answer_tokens
    return answer_tokens <= pred_tokens and pred_tokens.isdisjoint(distractors)


MATCHERS = {
    "exact": lambda pred, answer, choices: match_exact(pred, answer),
    "robust": match_robust,
    "mmau": match_mmau,
    "letter": match_letter,
}
