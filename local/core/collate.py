"""Audio collation: chat messages + waveforms -> model inputs, shared by training and evaluation.

The one place that calls the processor on audio. Omni batches are padded to their longest clip
(the processor's default pads every clip to 300 s: ~25x the work for a 10 s clip and identical
outputs, since the Omni encoder drops padding via `feature_attention_mask`); Qwen2-Audio keeps its
full 30 s window, which its encoder requires.

Example:
    >>> from local.core.collate import encode_batch, render_prompt                 # doctest: +SKIP
    >>> text = render_prompt(processor, build_messages("How many beeps?"))    # doctest: +SKIP
    >>> batch = encode_batch(processor, family, [text], [waveform])           # doctest: +SKIP
    >>> sorted(batch)                                                         # doctest: +SKIP
    ['attention_mask', 'feature_attention_mask', 'input_features', 'input_ids']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import BatchFeature

from local.core.audio import TARGET_SAMPLING_RATE, AudioSource, DecodedAudio, decode_audio
from local.core.models import ModelFamily

AUDIO_KEYS = ("input_features", "feature_attention_mask")


def render_prompt(processor: Any, messages: list[dict[str, Any]]) -> str:
    """The chat-template text of one conversation, ending with the assistant turn's header."""
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def load_clip(source: AudioSource, *, family: ModelFamily, sampling_rate: int | None = None,
              max_duration_s: float | None = None, name: str | None = None) -> DecodedAudio:
    """Decode one clip for `family`, cut to the smaller of `max_duration_s` and its window."""
    limit = family.max_audio_seconds if max_duration_s is None else min(
        max_duration_s, family.max_audio_seconds)
    return decode_audio(source, sampling_rate=sampling_rate, max_duration_s=limit, name=name)


def feature_samples(processor: Any, family: ModelFamily, audios: Sequence[np.ndarray],
                    pad_to_longest: bool = True) -> int:
    """How many samples every clip of the batch is padded to before feature extraction."""
    extractor = processor.feature_extractor
    if family.pad_audio_to_window or not pad_to_longest:
        return int(extractor.n_samples)
    # n_fft samples of zeros after the longest clip: its last frames then see zero padding, as
    # in the processor's full window, so valid frames come out identical to the default's.
    longest = max(len(a) for a in audios) + int(extractor.n_fft)
    hop = int(extractor.hop_length)
    return min(int(extractor.n_samples), math.ceil(longest / hop) * hop)


def encode_batch(
    processor: Any,
    family: ModelFamily,
    texts: Sequence[str],
    audios: Sequence[np.ndarray],
    *,
    pad_to_longest: bool = True,
    padding_side: str = "left",
) -> BatchFeature:
    """Tokenize `texts` (one audio placeholder each) and extract features of `audios`, row-aligned.

    Returns input_ids / attention_mask (left-padded for generation by default) and
    input_features / feature_attention_mask. `pad_to_longest=False` keeps the processor's
    default window (what naive recipes do; the benchmarks compare both).
    """
    if len(texts) != len(audios):
        raise ValueError(f"{len(texts)} prompts but {len(audios)} audio clips: each prompt "
                         "needs exactly one clip.")
    placeholder = processor.audio_token
    for i, text in enumerate(texts):
        if text.count(placeholder) != 1:
            raise ValueError(f"prompt {i} has {text.count(placeholder)} audio placeholders; "
                             "build it with local.core.prompts.build_messages (one audio part).")
    max_length = feature_samples(processor, family, audios, pad_to_longest)
    return processor(
        text=list(texts),
        audio=[np.asarray(a, dtype=np.float32) for a in audios],
        sampling_rate=TARGET_SAMPLING_RATE,
        audio_kwargs={"max_length": max_length},
        padding=True,
        padding_side=padding_side,
        return_tensors="pt",
    )
