"""Tiny random-weight Qwen2-Audio / Qwen2.5-Omni / Qwen3-Omni checkpoints, built offline.

Each checkpoint has the real model and processor classes, the official token ids, chat format,
rope settings and feature-extractor settings (Omni's 300 s window, Qwen2-Audio's 30 s), and only
the widths and depths shrunk, so `local.core.models.load_model_and_processor` loads it exactly
like a
hub checkpoint. Tests, the demo and the benchmarks are built on these. The Qwen3-Omni (MoE)
thinker's config and processor are in `local.demo.tiny_qwen3_omni`.

Example:
    $ python -m local.tiny --family qwen2_5_omni --out .cache/tiny-omni
    $ HF_HUB_OFFLINE=1 python -c "from transformers import AutoProcessor; \\
        print(type(AutoProcessor.from_pretrained('.cache/tiny-omni')).__name__)"
    Qwen2_5OmniProcessor
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    GenerationConfig,
    Qwen2_5OmniConfig,
    Qwen2_5OmniForConditionalGeneration,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3OmniMoeThinkerForConditionalGeneration,
    WhisperFeatureExtractor,
)

from local.demo import tiny_qwen3_omni
from local.demo.processor_settings import (
    OMNI_FEATURE_EXTRACTOR,
    OMNI_IMAGE_PROCESSOR,
    QWEN2_AUDIO_FEATURE_EXTRACTOR,
)
from local.demo.tokenizers import SPECIAL_TOKENS, VocabTier, build_tokenizer

Family = Literal["qwen2_audio", "qwen2_5_omni", "qwen3_omni_moe"]
FAMILIES: tuple[str, ...] = ("qwen2_audio", "qwen2_5_omni", "qwen3_omni_moe")

# Official Qwen2.5-Omni chat template (chat_template.json of Qwen/Qwen2.5-Omni-7B and -3B).
OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_bos|><|VIDEO|><|vision_eos|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Tiny widths. Text head_dim = 64 / 4 = 16; Omni's mrope_section [16, 24, 24] (sum = head_dim/2 =
# 64) scales to [2, 3, 3] (sum 8 = 16/2), keeping the temporal/height/width proportions.
TEXT_SIZE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2}
# Other text head_dims keep hidden 64 (heads = 64 / head_dim, KV heads half of them, at least 1)
# and scale the official mrope_section the same way. vLLM's CPU attention runs only head_dim 32
# and up (vllm/v1/attention/backends/cpu_attn.py: 32, 64, 80, ...): vLLM tests build 32.
TEXT_HEAD_DIMS = (16, 32, 64)
DEFAULT_TEXT_HEAD_DIM = 16


def text_size(head_dim: int = DEFAULT_TEXT_HEAD_DIM) -> dict[str, int]:
    """TEXT_SIZE with the attention heads regrouped for a text head_dim of `head_dim`."""
    if head_dim not in TEXT_HEAD_DIMS:
        raise ValueError(f"text head_dim {head_dim} not in {TEXT_HEAD_DIMS}")
    heads = TEXT_SIZE["hidden_size"] // head_dim
    return {**TEXT_SIZE, "num_attention_heads": heads, "num_key_value_heads": max(1, heads // 2)}


def mrope_section(head_dim: int = DEFAULT_TEXT_HEAD_DIM) -> list[int]:
    """Omni's official mrope_section [16, 24, 24] (head_dim 128) scaled to `head_dim`."""
    return [part * head_dim // 128 for part in (16, 24, 24)]


AUDIO_SIZE = {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 4,
              "encoder_ffn_dim": 128, "num_mel_bins": 128, "max_source_positions": 1500}


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)),
                   strict=True))
    ids["user"] = tokenizer.convert_tokens_to_ids("user")
    return ids


# Embedding rows of the official checkpoints (more than the tokenizer's 151,665 tokens).
REAL_VOCAB_ROWS = {"qwen2_audio": 156_032, "qwen2_5_omni": 151_936}


def _vocab_rows(family: str, tokenizer: Any) -> int:
    return REAL_VOCAB_ROWS[family] if len(tokenizer) > 100_000 else len(tokenizer)


def _text_config(ids: dict[str, int], vocab_size: int,
                 head_dim: int = DEFAULT_TEXT_HEAD_DIM) -> dict[str, Any]:
    return {
        **text_size(head_dim), "vocab_size": vocab_size, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def thinker_config(tokenizer: Any,
                   text_head_dim: int = DEFAULT_TEXT_HEAD_DIM) -> Qwen2_5OmniThinkerConfig:
    """A tiny Qwen2.5-Omni thinker config with the official token ids and rope settings."""
    ids = _token_ids(tokenizer)
    text = _text_config(ids, _vocab_rows("qwen2_5_omni", tokenizer), text_head_dim)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1_000_000.0,
                               "mrope_section": mrope_section(text_head_dim)}
    text["model_type"] = "qwen2_5_omni_text"
    audio = {**AUDIO_SIZE, "output_dim": TEXT_SIZE["hidden_size"], "n_window": 100,
             "model_type": "qwen2_5_omni_audio_encoder"}
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
              "out_hidden_size": TEXT_SIZE["hidden_size"], "fullatt_block_indexes": [0],
              "model_type": "qwen2_5_omni_vision_encoder"}
    return Qwen2_5OmniThinkerConfig(
        audio_config=audio, vision_config=vision, text_config=text,
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"], audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"], user_token_id=ids["user"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
        vision_token_id=ids["<|vision_pad|>"], bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        position_id_per_seconds=25, seconds_per_chunk=2,
    )


def qwen2_audio_config(tokenizer: Any,
                       text_head_dim: int = DEFAULT_TEXT_HEAD_DIM) -> Qwen2AudioConfig:
    """A tiny Qwen2-Audio config with the official token ids."""
    ids = _token_ids(tokenizer)
    text = {**_text_config(ids, _vocab_rows("qwen2_audio", tokenizer), text_head_dim),
            "model_type": "qwen2",
            "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0}}
    audio = {**AUDIO_SIZE, "model_type": "qwen2_audio_encoder"}
    return Qwen2AudioConfig(audio_config=audio, text_config=text,
                            audio_token_index=ids["<|AUDIO|>"])


def full_omni_config(thinker: Qwen2_5OmniThinkerConfig, tokenizer: Any) -> Qwen2_5OmniConfig:
    """A full (thinker + talker + token2wav) Omni config, as the hub's Qwen/Qwen2.5-Omni-* ship."""
    ids = _token_ids(tokenizer)
    talker = {
        "model_type": "qwen2_5_omni_talker", "vocab_size": 64, "embedding_size": 64,
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                            "mrope_section": [2, 3, 3]},
        "audio_token_index": ids["<|AUDIO|>"], "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"], "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"], "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "tts_codec_start_token_id": 60, "tts_codec_end_token_id": 61,
        "tts_codec_pad_token_id": 62, "tts_codec_mask_token_id": 63,
        "tts_text_start_token_id": ids["<|endoftext|>"],
        "tts_text_end_token_id": ids["<|endoftext|>"],
        "tts_text_pad_token_id": ids["<|endoftext|>"],
    }
    token2wav = {
        "dit_config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "head_dim": 16, "emb_dim": 16, "num_embeds": 64, "enc_emb_dim": 16,
                       "enc_dim": 16, "enc_channels": [16, 16, 16, 16, 48],
                       "enc_attention_channels": 8, "enc_se_channels": 8,
                       "look_ahead_layers": [0], "look_backward_layers": [0]},
        "bigvgan_config": {"upsample_initial_channel": 32},
    }
    return Qwen2_5OmniConfig(thinker_config=thinker.to_dict(), talker_config=talker,
                             token2wav_config=token2wav, enable_audio_output=True)


def build_processor(family: Family, tokenizer: Any) -> Any:
    """The real processor class of `family` with the official settings and chat format."""
    if family == "qwen3_omni_moe":
        return tiny_qwen3_omni.build_processor(tokenizer)
    if family == "qwen2_5_omni":
        return Qwen2_5OmniProcessor(
            image_processor=Qwen2VLImageProcessor(**OMNI_IMAGE_PROCESSOR),
            video_processor=Qwen2VLVideoProcessor(**OMNI_IMAGE_PROCESSOR),
            feature_extractor=WhisperFeatureExtractor(**OMNI_FEATURE_EXTRACTOR),
            tokenizer=tokenizer,
            chat_template=OMNI_CHAT_TEMPLATE,
        )
    # No chat template given: transformers' built-in Qwen2-Audio template, as the hub repo uses.
    return Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(**QWEN2_AUDIO_FEATURE_EXTRACTOR),
        tokenizer=tokenizer,
    )


def _generation_config(tokenizer: Any) -> GenerationConfig:
    ids = _token_ids(tokenizer)
    return GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                            pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"])


def build_tiny_checkpoint(
    family: Family,
    out_dir: str | Path,
    *,
    vocab: VocabTier = "tiny",
    full_omni: bool = False,
    seed: int = 0,
    text_head_dim: int | None = None,
) -> Path:
    """Write a tiny random checkpoint of `family` (model, processor, generation config) to out_dir.

    `full_omni=True` writes a whole Qwen2.5-Omni model (thinker + talker + token2wav), the shape
    the hub ships, which the loader must reduce to its thinker. `text_head_dim=32` regroups the
    text attention heads (same widths) into the smallest head_dim vLLM's CPU backend runs; None is
    the family's default (16; Qwen3-Omni's 32).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    qwen3 = family == "qwen3_omni_moe"
    if qwen3 and full_omni:
        raise ValueError("full_omni: the tiny kit builds the Qwen3-Omni thinker only")
    default_head = tiny_qwen3_omni.TEXT_HEAD_DIM if qwen3 else DEFAULT_TEXT_HEAD_DIM
    text_head_dim = default_head if text_head_dim is None else text_head_dim
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab, family)
    torch.manual_seed(seed)
    if qwen3:
        model: Any = Qwen3OmniMoeThinkerForConditionalGeneration(
            tiny_qwen3_omni.thinker_config(tokenizer, text_head_dim))
        tiny_qwen3_omni.audible_audio_tower(model)
    elif family == "qwen2_audio":
        model = Qwen2AudioForConditionalGeneration(
            qwen2_audio_config(tokenizer, text_head_dim))
    elif full_omni:
        config = full_omni_config(thinker_config(tokenizer, text_head_dim), tokenizer)
        model = Qwen2_5OmniForConditionalGeneration(config)
        model.thinker.generation_config = _generation_config(tokenizer)
    else:
        model = Qwen2_5OmniThinkerForConditionalGeneration(
            thinker_config(tokenizer, text_head_dim))
    model.generation_config = (tiny_qwen3_omni.generation_config(tokenizer) if qwen3
                               else _generation_config(tokenizer))
    model.save_pretrained(out)
    build_processor(family, tokenizer).save_pretrained(out)
    # Record how it was made (provenance for tests and reports).
    (out / "tiny_checkpoint.json").write_text(json.dumps(
        {"family": family, "vocab": vocab, "full_omni": full_omni, "seed": seed,
         **({} if text_head_dim == DEFAULT_TEXT_HEAD_DIM else {"text_head_dim": text_head_dim})},
        indent=2))
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--out", required=True, help="output checkpoint folder")
    parser.add_argument("--vocab", default="tiny", choices=["tiny", "real"],
                        help="tiny: ~512-token BPE (fast); real: the Qwen2 vocabulary and ids")
    parser.add_argument("--full_omni", action="store_true",
                        help="write a whole Omni model (thinker+talker+token2wav), like the hub's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text_head_dim", type=int, default=None, choices=TEXT_HEAD_DIMS,
                        help="text attention head size (32+ for vLLM's CPU backend; default 16, "
                             "Qwen3-Omni's 32)")
    args = parser.parse_args(argv)
    out = build_tiny_checkpoint(args.family, args.out, vocab=args.vocab,
                                full_omni=args.full_omni, seed=args.seed,
                                text_head_dim=args.text_head_dim)
    print(f"tiny {args.family} checkpoint ({args.vocab} vocabulary) written to {out}")
    return out


if __name__ == "__main__":
    main()


__all__ = ["build_tiny_checkpoint", "build_processor", "thinker_config", "qwen2_audio_config",
           "full_omni_config", "OMNI_FEATURE_EXTRACTOR", "QWEN2_AUDIO_FEATURE_EXTRACTOR",
           "OMNI_CHAT_TEMPLATE"]
