"""Prompt templates (worded exactly as the reference recipe, WeST's GRPO example) and the one
chat-message builder.

Training and evaluation both call `build_messages(build_prompt(...))`, so the model sees the same
text in both. `{choices}` renders as a Python list repr (``['3', 'One', '4', '2']``) as the
reference recipe does; its published numbers depend on it.

Example:
    >>> from local.core.prompts import build_messages, build_prompt
    >>> text = build_prompt("Who speaks?", ["Man", "Woman"], "new")
    >>> text
    "Who speaks?Select one option from the provided choices.['Man', 'Woman']"
    >>> build_messages(text)[0]["content"][0]
    {'type': 'audio', 'audio': 'audio'}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TEMPLATES: dict[str, str] = {
    "default": (
        "{question} Please choose the answer from the following options: {choices}. "
        "Output the final answer in <answer> </answer>."
    ),
    "think": (
        "{question} Please choose the answer from the following options: {choices}. "
        "Output the thinking process in <think> </think> and final answer in <answer> </answer>."
    ),
    "new": "{question}Select one option from the provided choices.{choices}",
}

# MMSU's official letter protocol: the prompt of its `mmsu_inference.py` (dingdongwang/MMSU),
# the instruction, the question, then exactly four options A-D (two-choice items keep their
# padding options, so letters never shift).
MMSU_LETTER_INSTRUCTION = ("Choose the most suitable answer from options A, B, C, and D. "
                           "You must respond with only A, B, C, or D.")
LETTER_TEMPLATE = "{instruction}\n\nQuestion: {question}\n\n{options}"

AUDIO_PLACEHOLDER = "audio"  # the audio part's reference; the waveform travels separately


def build_prompt(question: str, choices: Sequence[str], template: str = "default") -> str:
    """The user text for one question: `TEMPLATES[template]` with `{choices}` as a list repr."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of "
                         f"{sorted(TEMPLATES)} (option --template).")
    if isinstance(choices, str):
        raise TypeError("choices must be a list of option strings, not one string.")
    return TEMPLATES[template].format(question=question, choices=str([str(c) for c in choices]))


def build_letter_prompt(question: str, choices: Sequence[str]) -> str:
    """MMSU's official letter prompt: options A-D by position (missing ones blank, as the
    official script writes `item.get("choice_c", "")`).

    >>> text = build_letter_prompt("Is it rising?", ["Yes", "No", "None", "None"])
    >>> text.startswith(MMSU_LETTER_INSTRUCTION)
    True
    >>> print(text[len(MMSU_LETTER_INSTRUCTION) + 2:])
    Question: Is it rising?
    <BLANKLINE>
    A. Yes
    B. No
    C. None
    D. None
    """
    if len(choices) > 4:
        raise ValueError(f"the MMSU letter prompt has options A-D; got {len(choices)} choices.")
    padded = [*choices, *[""] * (4 - len(choices))]
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", padded,
                                                                         strict=True))
    return LETTER_TEMPLATE.format(instruction=MMSU_LETTER_INSTRUCTION, question=question,
                                  options=options)


def build_messages(prompt_text: str, audio: Any = AUDIO_PLACEHOLDER) -> list[dict[str, Any]]:
    """One user turn: the audio part, then the text. No system message (the template's applies).

    Dicts are built fresh with no None-valued keys: Qwen chat templates test ``'audio' in
    content``, and rows coming back from `datasets` carry every key (``audio: None`` on the text
    part), which would count the audio twice.
    """
    if audio is None:
        raise ValueError("audio reference is None; pass a placeholder string (the waveform is "
                         "given to the processor separately).")
    return [{
        "role": "user",
        "content": [
            {"type": "audio", "audio": audio},
            {"type": "text", "text": str(prompt_text)},
        ],
    }]


def record_messages(record: Any, template: str = "default") -> list[dict[str, Any]]:
    """`build_messages(build_prompt(...))` for a `local.core.records.Record` (audio ref: its
    id)."""
    return build_messages(build_prompt(record.question, record.choices, template), record.id)


def clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages rebuilt fresh without None-valued keys.

    A `datasets` column of messages gives every content part every key (``{"type": "text",
    "text": ..., "audio": None}``), which Qwen chat templates would count as a second audio.
    """
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(messages)
