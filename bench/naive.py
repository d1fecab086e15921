"""The naive configuration the benchmarks compare against (benchmark-only; never used to train).

What older audio-GRPO recipes do, expressed as a subclass of our trainer so that everything else
(TRL, the model, the rewards) is identical:

- each completion's row decodes its clip again (G decodes per prompt);
- the processor's default padding (Omni: every clip to 300 s, 30,000 mel frames);
- features tiled to every completion, and the audio encoder run again for every row in every pass
  (generation, reference, policy), even when it is frozen (no embedding cache).

Example:
    >>> trainer = NaiveAudioGRPOTrainer(model=model, processing_class=processor,
    ...     family=family, reward_funcs=rewards, args=config, train_dataset=rows)   # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import Any
from unittest import mock

import numpy as np

import local.train.trainer as trainer_module
from local.train.trainer import AudioGRPOTrainer


class NaiveAudioGRPOTrainer(AudioGRPOTrainer):
    """Per-row decoding, processor-default padding, no encoder-output reuse."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["cache_audio_embeddings"] = False
        super().__init__(*args, **kwargs)

    def _decode_rows(self, inputs: list[dict[str, Any]]) -> list[np.ndarray]:
        return [super(NaiveAudioGRPOTrainer, self)._decode_rows([row])[0] for row in inputs]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        current = trainer_module.encode_batch  # possibly a benchmark timer around it
        default_padding = functools.partial(current, pad_to_longest=False)
        with mock.patch.object(trainer_module, "encode_batch", default_padding):
            return super()._generate_and_score_completions(inputs)
