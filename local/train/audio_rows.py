"""Audio rows for AudioGRPOTrainer's log-prob passes, and the processor check it starts with.

TRL's log-prob loop forwards the rows of one batch in chunks ([0, b), [b, 2b), ...) and knows
nothing of audio; `AudioRowFeeder` stands in for the model and hands each chunk the features of
exactly its rows, then checks that every row was fed once.

Before each chunk runs, `PlaceholderCheck` compares, row by row, the audio placeholders in the
row's input_ids with the audio tokens its features make (the audio tower's own
`_get_feat_extract_output_lengths`, a few integer operations). transformers 5.24 does not: the
Omni thinker scatters the chunk's features into its placeholders with `masked_scatter`, which
takes the first N feature rows whatever N is, and Qwen2-Audio compares only the chunk's totals
(modeling_qwen2_5_omni.py, Qwen2_5OmniThinkerModel.forward; modeling_qwen2_audio.py,
"Audio features and audio tokens do not match"). A row fed features of another length, or whose
placeholders were cut, stops with `AudioPlaceholderError` naming it. Rows swapped with rows of
equal length pass here: the row-alignment tests (tests/test_trainer_audio.py) cover those.

Example:
    >>> feeder = AudioRowFeeder(model, {"input_features": f, "feature_attention_mask": m},
    ...                         torch.float32, check=PlaceholderCheck(audio_id, tower_lengths),
    ...                         names=["syn-0", "syn-0", "syn-1"])     # doctest: +SKIP
    >>> logits = feeder(input_ids=ids[:3], attention_mask=mask[:3])     # doctest: +SKIP
    >>> feeder.check_consumed()                                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


class AudioPlaceholderError(RuntimeError):
    """A row whose audio placeholder count differs from the audio tokens of its features."""


@dataclass(frozen=True)
class PlaceholderCheck:
    """Per-row check of audio placeholders against the features fed with them.

    `output_lengths` is the audio tower's `_get_feat_extract_output_lengths` (frames -> (after
    the convolutions, audio tokens)), the formula the families' forwards use
    (`local.train.audio_cache.audio_output_lengths` finds it, Qwen3-Omni's included).
    """

    audio_token_id: int
    output_lengths: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

    def __call__(self, input_ids: torch.Tensor, feature_attention_mask: torch.Tensor,
                 first_row: int = 0, names: Sequence[str] | None = None) -> None:
        """Raise AudioPlaceholderError for the first row of the chunk that does not match."""
        placeholders = (input_ids == self.audio_token_id).sum(-1)
        frames = feature_attention_mask.sum(-1).to(placeholders.device)
        tokens = self.output_lengths(frames)[1].to(placeholders.dtype)
        if torch.equal(placeholders, tokens):
            return
        i = int((placeholders != tokens).nonzero()[0, 0])
        row = first_row + i
        name = f"{names[row]} (row {row} of the batch)" if names else f"row {row} of the batch"
        raise AudioPlaceholderError(
            f"{name}: {int(placeholders[i])} audio placeholder tokens in its input_ids, but its "
            f"features ({int(frames[i])} frames) make {int(tokens[i])} audio tokens. The row "
            "was fed another row's features, or its prompt lost placeholders; the model would "
            "put other audio in its place.")


def check_audio_processor(processor: Any) -> None:
    """A clear error for a processing class that cannot turn clips into audio features."""
    missing = [a for a in ("tokenizer", "feature_extractor", "audio_token")
               if not hasattr(processor, a)]
    if missing:
        raise TypeError(
            "AudioGRPOTrainer needs the model's audio processor (AutoProcessor.from_pretrained "
            "of a Qwen2-Audio / Qwen2.5-Omni / Qwen3-Omni checkpoint: tokenizer, "
            "feature_extractor and "
            f"audio_token); got {type(processor).__name__}, which has no {', '.join(missing)}. "
            "A tokenizer alone cannot turn the training clips into audio features.")


class AudioRowFeeder:
    """Calls `model` with the audio rows that belong to each chunk TRL forwards, in order.

    TRL's log-prob loop forwards rows [0, b), [b, 2b), ... of one batch; the feeder hands each call
    the features of exactly those rows and, at the end, checks that every row was used once.
    """

    def __init__(self, model: Any, audio: dict[str, torch.Tensor], dtype: torch.dtype | None,
                 check: PlaceholderCheck | None = None, names: Sequence[str] | None = None):
        self.model, self.audio, self.dtype, self.cursor = model, audio, dtype, 0
        self.check, self.names = check, names

    def __call__(self, **kwargs: Any) -> Any:
        rows = kwargs["input_ids"].shape[0]
        chunk = {k: v[self.cursor:self.cursor + rows] for k, v in self.audio.items()}
        if chunk["input_features"].shape[0] != rows:
            raise RuntimeError(f"audio rows {self.cursor}:{self.cursor + rows} requested but the "
                               f"batch has {self.audio['input_features'].shape[0]}")
        if self.check is not None:
            self.check(kwargs["input_ids"], chunk["feature_attention_mask"], self.cursor,
                       self.names)
        if self.dtype is not None:
            chunk["input_features"] = chunk["input_features"].to(self.dtype)
        self.cursor += rows
        return self.model(**kwargs, **chunk)

    def check_consumed(self) -> None:
        total = self.audio["input_features"].shape[0]
        if self.cursor != total:
            raise RuntimeError(f"log-prob pass fed {self.cursor} audio rows for a batch of {total}")
