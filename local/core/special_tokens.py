"""Special tokens both training and evaluation rely on: the one definition of the stop tokens.

A Qwen2-Audio / Qwen2.5-Omni completion ends at ``<|im_end|>`` (end of the assistant turn) or
``<|endoftext|>``. Both are passed explicitly wherever the recipe generates (evaluation's
`local.eval.generation`, training's `local.train.trainer`), so nothing depends on a checkpoint's
generation_config: the real Qwen2.5-Omni one declares no eos id at all.

Example:
    >>> from local.core.special_tokens import STOP_TOKENS
    >>> STOP_TOKENS
    ('<|im_end|>', '<|endoftext|>')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def token_ids(tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    """Ids of special tokens, with an error naming any the tokenizer lacks."""
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    missing = [t for t, i in zip(tokens, ids, strict=True)
               if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"the tokenizer has no {missing}; is this a Qwen2-Audio/Qwen2.5-Omni "
                         "checkpoint with its own processor?")
    return [int(i) for i in ids]


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids of `STOP_TOKENS` in this tokenizer, in that order."""
    return token_ids(tokenizer, STOP_TOKENS)
