"""Qwen2.5-Omni-3B/7B: the thinker is the policy; a whole checkpoint is reduced to it.

Audio placeholder `<|AUDIO|>` (151646) between `<|audio_bos|>`/`<|audio_eos|>`; the encoder takes
any length up to the feature extractor's 300 s window (preprocessor_config.json, n_samples).
"""

from __future__ import annotations

from local.core.families.base import ModelFamily
from local.core.families.qwen2_audio import PLACEHOLDER_TOKENS

FAMILY = ModelFamily(
    "qwen2_5_omni", max_audio_seconds=300.0, pad_audio_to_window=False,
    model_class="Qwen2_5OmniThinkerForConditionalGeneration",
    model_type="qwen2_5_omni_thinker", full_model_type="qwen2_5_omni",
    audio_token="<|AUDIO|>", placeholder_tokens=PLACEHOLDER_TOKENS, vision=True,
    hub_ids=("Qwen/Qwen2.5-Omni-7B", "Qwen/Qwen2.5-Omni-3B"),
)
