"""Qwen3-Omni-30B-A3B-Instruct/-Thinking: a mixture-of-experts thinker is the policy.

What differs from Qwen2.5-Omni (tests/data/model-configs/SOURCES.md says which facts have a
cited source and which are reported only):

- Tokenizer: Qwen3's added tokens. The audio placeholder is `<|audio_pad|>` (151675) between
  `<|audio_start|>` (151669) and `<|audio_end|>` (151670); vision markers are
  `<|vision_start|>`/`<|vision_end|>` with `<|image_pad|>`/`<|video_pad|>`. `<think>`/`</think>`
  are plain added tokens (not special), so decoding keeps them.
- Audio encoder: 128 mel bins as before, but three stride-2 convolutions over 100-frame chunks
  (`n_window` 50): 13 tokens per second, not 25, and `position_id_per_seconds` 13.
- Stop tokens: `<|im_end|>` and `<|endoftext|>`, as for the other families.
- The window is the feature extractor's 300 s, as for Qwen2.5-Omni; clips are padded only to
  the longest in the batch.
- LoRA (`--use_peft` without targets): the text layers' attention projections and the fused
  experts (`mlp.experts.gate_up_proj` / `down_proj`, 3-D tensors: PEFT `target_parameters`, a
  per-expert LoRA; `target_modules=["experts"]` is refused by PEFT, the experts module is no
  Linear); the audio encoder's `q/k/v_proj` share the leaf names and are excluded, as is the
  vision tower. Checked on CPU with peft 0.21.2 (merge, unmerge and merge_and_unload give the
  adapter's logits). The router (`mlp.gate`) is frozen unless `freeze_router: false`.
"""

from __future__ import annotations

from local.core.families.base import ModelFamily

PLACEHOLDER_TOKENS = ("<|audio_pad|>", "<|image_pad|>", "<|video_pad|>", "<|audio_start|>",
                      "<|audio_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")

FAMILY = ModelFamily(
    "qwen3_omni_moe", max_audio_seconds=300.0, pad_audio_to_window=False,
    model_class="Qwen3OmniMoeThinkerForConditionalGeneration",
    model_type="qwen3_omni_moe_thinker", full_model_type="qwen3_omni_moe",
    audio_token="<|audio_pad|>", placeholder_tokens=PLACEHOLDER_TOKENS, vision=True,
    hub_ids=("Qwen/Qwen3-Omni-30B-A3B-Instruct", "Qwen/Qwen3-Omni-30B-A3B-Thinking"),
    lora_target_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
    lora_exclude_modules=("audio_tower", "visual"), lora_targets_by_default=True,
    router="mlp.gate",
)
