"""vLLM requests that carry the audio, for the evaluation backend and the rollouts alike.

vLLM expands the audio placeholder itself, from the clip sent with each request
(`multi_modal_data={"audio": (array, 16000)}`). A prompt must therefore hold exactly one
unexpanded `<|AUDIO|>`: ids the HF processor has already expanded (TRL's `prompt_ids`) are
accepted without an error and silently mis-expanded (vLLM replaces the first placeholder and
embeds the rest as text), so `collapse_audio_runs` turns them back and `audio_request` refuses any
other count. vLLM calls the HF processor with its defaults, which pad every Qwen2.5-Omni clip to
the 300 s window (4.8 M samples: ~0.6 s of feature extraction per 10 s clip, 5x the cost of
padding to the clip); each Omni request therefore carries the recipe's own padding length
(`local.core.collate.feature_samples`), so features match the HF path's. Qwen2-Audio's encoder
needs its full 30 s window and keeps the default.

Example:
    >>> from local.core.vllm_requests import collapse_audio_runs
    >>> collapse_audio_runs([1, 7, 7, 7, 2], audio_token_id=7)
    [1, 7, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from local.core.audio import TARGET_SAMPLING_RATE
from local.core.collate import feature_samples
from local.core.models import ModelFamily

# vLLM clamps logit_bias to [-100, 100] (vllm/sampling_params.py, SamplingParams.from_optional);
# -100 keeps a placeholder token out of any argmax or sample, as HF's `suppress_tokens` does.
# `SamplingParams` has no `suppress_tokens` (TypeError "Unexpected keyword argument"), so both the
# evaluation backend and the rollouts suppress through this bias.
SUPPRESS_BIAS = -100.0


def collapse_audio_runs(ids: Sequence[int], audio_token_id: int) -> list[int]:
    """`ids` with each run of consecutive audio placeholders written once."""
    out: list[int] = []
    for token in ids:
        if not (token == audio_token_id and out and out[-1] == audio_token_id):
            out.append(int(token))
    return out


def _placeholders(prompt: str | Sequence[int], processor: Any) -> int:
    if isinstance(prompt, str):
        return prompt.count(processor.audio_token)
    audio_id = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    return sum(1 for token in prompt if token == audio_id)


def audio_request(prompt: str | Sequence[int], clip: np.ndarray, processor: Any,
                  family: ModelFamily) -> dict[str, Any]:
    """One vLLM prompt (text, or token ids) with its clip (16 kHz mono) attached.

    The prompt must hold exactly one unexpanded audio placeholder (see the module docstring).
    """
    count = _placeholders(prompt, processor)
    if count != 1:
        raise ValueError(
            f"a vLLM prompt needs exactly one unexpanded {processor.audio_token} (vLLM expands it "
            f"from the clip); this one has {count}. Render the prompt with "
            "local.core.collate.render_prompt, or pass processor-expanded ids through "
            "collapse_audio_runs first.")
    audio = np.asarray(clip, dtype=np.float32)
    request: dict[str, Any] = {
        "prompt" if isinstance(prompt, str) else "prompt_token_ids":
            prompt if isinstance(prompt, str) else [int(token) for token in prompt],
        "multi_modal_data": {"audio": (audio, TARGET_SAMPLING_RATE)},
    }
    if not family.pad_audio_to_window:
        request["mm_processor_kwargs"] = {
            "audio_kwargs": {"max_length": feature_samples(processor, family, [audio])}}
    return request


def mm_limits(family: ModelFamily) -> dict[str, int]:
    """`limit_mm_per_prompt` for an engine: one clip per prompt, no images or video (Omni)."""
    return {"audio": 1, "image": 0, "video": 0} if family.vision else {"audio": 1}


def suppressing_bias(token_ids: Sequence[int]) -> dict[int, float]:
    """`SamplingParams(logit_bias=...)` that keeps `token_ids` from being generated.

    >>> suppressing_bias([5, 9])
    {5: -100.0, 9: -100.0}
    """
    return dict.fromkeys((int(t) for t in token_ids), SUPPRESS_BIAS)
