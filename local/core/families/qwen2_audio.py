"""Qwen2-Audio-7B-Instruct: one model (no thinker/talker split), a 30 s Whisper-style window.

The processor and tokenizer are Qwen2's with `<|AUDIO|>` (151646) as the audio placeholder; the
feature extractor pads every clip to 3000 frames and the encoder expects exactly that.
"""

from __future__ import annotations

from local.core.families.base import ModelFamily

# The Qwen2.5-Omni token set (the tiny kit gives both Qwen2 families the same tokenizer); the
# vision markers a real Qwen2-Audio tokenizer lacks are skipped where ids are looked up.
PLACEHOLDER_TOKENS = ("<|AUDIO|>", "<|IMAGE|>", "<|VIDEO|>", "<|audio_bos|>", "<|audio_eos|>",
                      "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>")

FAMILY = ModelFamily(
    "qwen2_audio", max_audio_seconds=30.0, pad_audio_to_window=True,
    model_class="Qwen2AudioForConditionalGeneration", model_type="qwen2_audio",
    audio_token="<|AUDIO|>", placeholder_tokens=PLACEHOLDER_TOKENS,
    hub_ids=("Qwen/Qwen2-Audio-7B-Instruct",),
)
