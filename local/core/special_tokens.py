"""Special tokens training and evaluation both rely on: the one definition of each list.

Stop tokens: a completion of every family (Qwen2-Audio, Qwen2.5-Omni, Qwen3-Omni) ends at
``<|im_end|>`` (end of the assistant turn) or ``<|endoftext|>``. Both are passed explicitly
wherever the recipe generates (evaluation's `local.eval.generation`, training's
`local.train.trainer`), so nothing depends on a checkpoint's generation_config: the real
Qwen2.5-Omni one declares no eos id at all.

Placeholder tokens: the multimodal markers the processor expands into feature slots. A sampled
one makes the next forward pass expect features that do not exist (a crash), so every generation
suppresses them. They are the family's (`ModelFamily.placeholder_tokens`: Qwen2's `<|AUDIO|>`,
Qwen3-Omni's `<|audio_pad|>`, ...); `placeholder_token_ids` keeps the ones the tokenizer knows and
insists on the family's audio placeholder. Given no family, it asks every family (a tokenizer
knows one family's markers only) and insists on one family's audio placeholder.

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

from local.core.families import FAMILIES, ModelFamily

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# Every family's placeholders, in family order, each once.
PLACEHOLDER_TOKENS: tuple[str, ...] = tuple(dict.fromkeys(
    t for family in FAMILIES for t in family.placeholder_tokens))
AUDIO_TOKENS: tuple[str, ...] = tuple(dict.fromkeys(f.audio_token for f in FAMILIES))


def token_ids(tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    """Ids of special tokens, with an error naming any the tokenizer lacks."""
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    missing = [t for t, i in zip(tokens, ids, strict=True)
               if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"the tokenizer has no {missing}; is this a Qwen2-Audio/Qwen2.5-Omni/"
                         "Qwen3-Omni checkpoint with its own processor?")
    return [int(i) for i in ids]


def _known(tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    unknown = tokenizer.unk_token_id
    return [int(i) for i in ids if i is not None and i != unknown]


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids of `STOP_TOKENS` in this tokenizer, in that order."""
    return token_ids(tokenizer, STOP_TOKENS)


def audio_token(tokenizer: Any, family: ModelFamily | None = None) -> str:
    """The audio placeholder of `family`, or (none given) of the family whose placeholder this
    tokenizer knows; an error naming every family's when it knows none."""
    if family is not None:
        token_ids(tokenizer, [family.audio_token])
        return family.audio_token
    for token in AUDIO_TOKENS:
        if _known(tokenizer, [token]):
            return token
    raise ValueError(f"the tokenizer has no audio placeholder (none of {list(AUDIO_TOKENS)}); "
                     "is this a Qwen2-Audio/Qwen2.5-Omni/Qwen3-Omni checkpoint with its own "
                     "processor?")


def audio_token_id(tokenizer: Any, family: ModelFamily | None = None) -> int:
    """Id of `audio_token(tokenizer, family)`."""
    return token_ids(tokenizer, [audio_token(tokenizer, family)])[0]


def placeholder_token_ids(tokenizer: Any, family: ModelFamily | None = None) -> list[int]:
    """Ids of the family's placeholder tokens this tokenizer knows, sorted: never to be generated.

    Tokens the tokenizer lacks cannot be sampled and are left out; a tokenizer without the audio
    placeholder is no audio model's, and gets the error of `token_ids` (or `audio_token`).
    """
    audio_token(tokenizer, family)
    tokens = PLACEHOLDER_TOKENS if family is None else family.placeholder_tokens
    return sorted(set(_known(tokenizer, tokens)))
