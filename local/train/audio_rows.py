"""Audio rows for AudioGRPOTrainer's log-prob passes, and the processor check it starts with.

TRL's log-prob loop forwards the rows of one batch in chunks ([0, b), [b, 2b), ...) and knows
nothing of audio; `AudioRowFeeder` stands in for the model and hands each chunk the features of
exactly its rows, then checks that every row was fed once.

Example:
    >>> feeder = AudioRowFeeder(model, {"input_features": f, "feature_attention_mask": m},
    ...                         torch.float32)                            # doctest: +SKIP
    >>> logits = feeder(input_ids=ids[:3], attention_mask=mask[:3])     # doctest: +SKIP
    >>> feeder.check_consumed()                                         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch


def check_audio_processor(processor: Any) -> None:
    """A clear error for a processing class that cannot turn clips into audio features."""
    missing = [a for a in ("tokenizer", "feature_extractor", "audio_token")
               if not hasattr(processor, a)]
    if missing:
        raise TypeError(
            "AudioGRPOTrainer needs the model's audio processor (AutoProcessor.from_pretrained "
            "of a Qwen2-Audio / Qwen2.5-Omni checkpoint: tokenizer, feature_extractor and "
            f"audio_token); got {type(processor).__name__}, which has no {', '.join(missing)}. "
            "A tokenizer alone cannot turn the training clips into audio features.")


class AudioRowFeeder:
    """Calls `model` with the audio rows that belong to each chunk TRL forwards, in order.

    TRL's log-prob loop forwards rows [0, b), [b, 2b), ... of one batch; the feeder hands each call
    the features of exactly those rows and, at the end, checks that every row was used once.
    """

    def __init__(self, model: Any, audio: dict[str, torch.Tensor], dtype: torch.dtype | None):
        self.model, self.audio, self.dtype, self.cursor = model, audio, dtype, 0

    def __call__(self, **kwargs: Any) -> Any:
        rows = kwargs["input_ids"].shape[0]
        chunk = {k: v[self.cursor:self.cursor + rows] for k, v in self.audio.items()}
        if chunk["input_features"].shape[0] != rows:
            raise RuntimeError(f"audio rows {self.cursor}:{self.cursor + rows} requested but the "
                               f"batch has {self.audio['input_features'].shape[0]}")
        if self.dtype is not None:
            chunk["input_features"] = chunk["input_features"].to(self.dtype)
        self.cursor += rows
        return self.model(**kwargs, **chunk)

    def check_consumed(self) -> None:
        total = self.audio["input_features"].shape[0]
        if self.cursor != total:
            raise RuntimeError(f"log-prob pass fed {self.cursor} audio rows for a batch of {total}")
