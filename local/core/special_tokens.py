"""Special tokens training and evaluation both rely on: the one definition of each list.

Stop tokens: a Qwen2-Audio / Qwen2.5-Omni completion ends at ``<|im_end|>`` (end of the assistant
turn) or ``<|endoftext|>``. Both are passed explicitly wherever the recipe generates (evaluation's
`local.eval.generation`, training's `local.train.trainer`), so nothing depends on a checkpoint's
generation_config: the real Qwen2.5-Omni one declares no eos id at all.

Placeholder tokens: the multimodal markers the processor expands into feature slots. A sampled
one makes the next forward pass expect features that do not exist (a crash), so every generation
suppresses them. Which ones a tokenizer has depends on the family (Qwen2.5-Omni has the vision
markers, Qwen2-Audio only the audio ones): `placeholder_token_ids` keeps the ones the tokenizer
knows and insists on the audio placeholder, which both families have.

Example:
    >>> from local.core.special_tokens import PLACEHOLDER_TOKENS, STOP_TOKENS
    >>> STOP_TOKENS
    ('<|im_end|>', '<|endoftext|>')
    >>> PLACEHOLDER_TOKENS[:3]
    ('<|AUDIO|>', '<|IMAGE|>', '<|VIDEO|>')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
AUDIO_TOKEN = "<|AUDIO|>"
PLACEHOLDER_TOKENS = (AUDIO_TOKEN, "<|IMAGE|>", "<|VIDEO|>", "<|audio_bos|>", "<|audio_eos|>",
                      "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>")


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


def placeholder_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the `PLACEHOLDER_TOKENS` this tokenizer knows, sorted: never to be generated.

    Tokens the tokenizer lacks cannot be sampled and are left out; a tokenizer without the audio
    placeholder is no audio model's, and gets the error of `token_ids`.
    """
    token_ids(tokenizer, [AUDIO_TOKEN])
    ids = tokenizer.convert_tokens_to_ids(list(PLACEHOLDER_TOKENS))
    unknown = tokenizer.unk_token_id
    return sorted({int(i) for i in ids if i is not None and i != unknown})
