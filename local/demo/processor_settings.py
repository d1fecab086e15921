"""Processor settings of the real checkpoints that the tiny kit copies (one definition each).

`local.demo.tiny` builds Qwen2-Audio's and Qwen2.5-Omni's processors with them and
`local.demo.tiny_qwen3_omni` Qwen3-Omni's; `tests/test_official_parity.py` checks them against
the official files.
"""

from __future__ import annotations

from typing import Any

# Official feature-extractor settings (preprocessor_config.json of each model).
OMNI_FEATURE_EXTRACTOR: dict[str, Any] = {
    "chunk_length": 300, "dither": 0.0, "feature_size": 128, "hop_length": 160, "n_fft": 400,
    "n_samples": 4_800_000, "nb_max_frames": 30_000, "padding_side": "right",
    "padding_value": 0.0, "return_attention_mask": True, "sampling_rate": 16_000,
}
QWEN2_AUDIO_FEATURE_EXTRACTOR: dict[str, Any] = {
    "chunk_length": 30, "feature_size": 128, "hop_length": 160, "n_fft": 400,
    "n_samples": 480_000, "nb_max_frames": 3_000, "padding_side": "right", "padding_value": 0.0,
    "return_attention_mask": True, "sampling_rate": 16_000,
}
OMNI_IMAGE_PROCESSOR: dict[str, Any] = {
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "min_pixels": 3136, "max_pixels": 12_845_056, "merge_size": 2, "patch_size": 14,
    "temporal_patch_size": 2,
}
