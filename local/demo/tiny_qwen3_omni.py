"""A tiny random-weight Qwen3-Omni-30B-A3B thinker (mixture of experts), built offline.

The real classes (`Qwen3OmniMoeThinkerForConditionalGeneration`, `Qwen3OmniMoeProcessor`), the
official token ids and audio-encoder settings (128 mel bins, `n_window` 50: 13 audio tokens per
second, `position_id_per_seconds` 13), and only the widths and depths shrunk: 2 text layers, 4
experts with 2 per token, text head_dim 32 (the smallest vLLM's CPU attention runs). Built by
`local.demo.tiny.build_tiny_checkpoint(family="qwen3_omni_moe")`.

Example:
    $ python -m local.tiny --family qwen3_omni_moe --out .cache/tiny-qwen3-omni
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3OmniMoeProcessor,
    Qwen3OmniMoeThinkerConfig,
    WhisperFeatureExtractor,
)

from local.demo.processor_settings import OMNI_FEATURE_EXTRACTOR, OMNI_IMAGE_PROCESSOR
from local.demo.tokenizers import QWEN3_OMNI_SPECIAL_TOKENS

# The Whisper settings are Qwen2.5-Omni's (128 mel bins, 300 s window); reported equal for
# Qwen3-Omni, with no byte-exact preprocessor_config.json found (tests/data/model-configs).
FEATURE_EXTRACTOR: dict[str, Any] = OMNI_FEATURE_EXTRACTOR
# Qwen2.5-Omni's image settings with Qwen3-Omni's 16-pixel patches (its vision patch_size).
IMAGE_PROCESSOR: dict[str, Any] = {**OMNI_IMAGE_PROCESSOR, "patch_size": 16}
# A simplified chat template, NOT the official one (no byte-exact copy of Qwen3-Omni's
# chat_template.json was found): ChatML turns, no default system prompt, and each media part
# as start marker + one placeholder + end marker (the processor expands the placeholder).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT_HEAD_DIM = 32
HIDDEN = 64
# Embedding rows of the official checkpoint (thinker text_config.vocab_size).
REAL_VOCAB_ROWS = 152_064


def token_ids(tokenizer: Any) -> dict[str, int]:
    """Ids of the Qwen3-Omni added tokens and of "user" in `tokenizer`."""
    tokens = list(QWEN3_OMNI_SPECIAL_TOKENS)
    ids = dict(zip(tokens, tokenizer.convert_tokens_to_ids(tokens), strict=True))
    ids["user"] = tokenizer.convert_tokens_to_ids("user")
    return ids


def thinker_config(tokenizer: Any, text_head_dim: int = TEXT_HEAD_DIM) -> Qwen3OmniMoeThinkerConfig:
    """A tiny Qwen3-Omni thinker config with the official token ids and rope settings."""
    ids = token_ids(tokenizer)
    heads = HIDDEN // text_head_dim
    vocab = REAL_VOCAB_ROWS if len(tokenizer) > 100_000 else len(tokenizer)
    text = {
        "hidden_size": HIDDEN, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": heads, "num_key_value_heads": max(1, heads // 2),
        # head_dim is no declared field of the text config; the attention reads it if present.
        "head_dim": text_head_dim, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "vocab_size": vocab, "tie_word_embeddings": False,
        "max_position_embeddings": 65536, "rms_norm_eps": 1e-6,
        # The official mrope_section [24, 20, 20] (head_dim 128) scaled to the tiny head.
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                            "mrope_section": [p * text_head_dim // 128 for p in (24, 20, 20)],
                            "interleaved": True, "mrope_interleaved": True},
    }
    audio = {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 4,
             "encoder_ffn_dim": 128, "num_mel_bins": 128, "output_dim": HIDDEN,
             "n_window": 50, "n_window_infer": 800, "conv_chunksize": 500,
             "downsample_hidden_size": 32, "max_source_positions": 1500}
    # image_size and apply_vit_abs_pos_embed: read by vLLM, ignored by transformers.
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
              "out_hidden_size": HIDDEN, "patch_size": 16, "spatial_merge_size": 2,
              "temporal_patch_size": 2, "num_position_embeddings": 2304,
              "deepstack_visual_indexes": [0], "image_size": 768,
              "apply_vit_abs_pos_embed": True}
    return Qwen3OmniMoeThinkerConfig(
        text_config=text, audio_config=audio, vision_config=vision,
        audio_token_id=ids["<|audio_pad|>"], image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], audio_start_token_id=ids["<|audio_start|>"],
        user_token_id=ids["user"], position_id_per_seconds=13, seconds_per_chunk=2,
        # Not declared by the config class but present in the official config.json:
        # get_rope_index reads vision_start_token_id, vLLM's processor audio_end_token_id.
        audio_end_token_id=ids["<|audio_end|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def audible_audio_tower(model: Any) -> None:
    """Re-draw the audio tower's convolution weights (conv2d1-3, conv_out) with std
    1/sqrt(fan_in), in place, from torch's generator.

    At transformers' random init (std 0.02) the three 2-D convolutions shrink the mel features
    about a thousandfold, and the sinusoidal positions added after them swamp what is left: a
    silent clip and a tone gave the same audio embeddings to 2e-5 and log-probs to 5e-5 (the
    Qwen2.5-Omni tiny kit: 1e-2), too little for tests that show the audio reaching a pass.
    Variance-preserving weights carry the features through, as trained ones do."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "audio_tower.conv" in name and name.endswith(".weight"):
                parameter.normal_(0.0, 1.0 / math.sqrt(parameter[0].numel()))


def build_processor(tokenizer: Any) -> Qwen3OmniMoeProcessor:
    """The real Qwen3-Omni processor class with the settings above."""
    return Qwen3OmniMoeProcessor(
        image_processor=Qwen2VLImageProcessor(**IMAGE_PROCESSOR),
        video_processor=Qwen2VLVideoProcessor(**IMAGE_PROCESSOR),
        feature_extractor=WhisperFeatureExtractor(**FEATURE_EXTRACTOR),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )


def generation_config(tokenizer: Any) -> GenerationConfig:
    """Stops at `<|im_end|>` and `<|endoftext|>`, pads with `<|endoftext|>`."""
    ids = token_ids(tokenizer)
    return GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                            pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"])
