"""Random-weight models for the benchmarks: tiny, scaled (Omni-7B's encoder/LM ratio), real sizes.

Configs are built the way `local/demo/tiny.py` builds its tiny ones (official token ids, rope and
feature-extractor settings), with other widths and depths. The real shapes of Qwen2.5-Omni-3B/7B
(thinker: text, audio and vision towers) are embedded here, so no config is downloaded: the
Qwen2.5-Omni-7B thinker has 8.93B parameters, the Qwen2.5-Omni-3B thinker 4.70B.

`scaled` keeps Qwen2.5-Omni-7B's ratio of audio-encoder parameters to language-model *body*
parameters (decoder layers; token embedding and LM head excluded: they are lookups or run on
completion tokens only, so they do not scale the per-token work the ratio is meant to keep).

Example:
    $ .venv/bin/python -m bench.models        # parameter counts of every kind (meta device)
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import (
    PretrainedConfig,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioForConditionalGeneration,
)

from local.core.models import QWEN2_5_OMNI, QWEN2_AUDIO, ModelFamily
from local.demo.tiny import qwen2_audio_config, thinker_config

# Official thinker shapes (config.json of Qwen/Qwen2.5-Omni-7B and -3B, thinker_config).
_AUDIO = {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
          "encoder_ffn_dim": 5120}
_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
           "fullatt_block_indexes": [7, 15, 23, 31]}
REAL_SHAPES: dict[str, dict[str, Any]] = {
    "qwen2_5_omni_7b": {
        "text": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                 "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064},
        "audio": _AUDIO, "vision": _VISION, "mrope_section": [16, 24, 24]},
    "qwen2_5_omni_3b": {
        "text": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                 "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936},
        "audio": _AUDIO, "vision": _VISION, "mrope_section": [16, 24, 24]},
}
# The scaled model: text body 1/14 of 7B's width (head_dim 64), encoder depth fitted to the ratio.
SCALED_TEXT = {"hidden_size": 256, "intermediate_size": 1344, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 1}
SCALED_AUDIO_WIDTH = {"d_model": 128, "encoder_attention_heads": 4, "encoder_ffn_dim": 512}
SCALED_VISION = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                 "fullatt_block_indexes": [0]}
KINDS = ("tiny_qwen2_audio", "tiny_omni", "scaled_omni7b", *REAL_SHAPES)


def omni_config(tokenizer: Any, text: dict[str, Any], audio: dict[str, Any],
                vision: dict[str, Any], mrope_section: list[int]) -> Qwen2_5OmniThinkerConfig:
    """`local.demo.tiny.thinker_config` with the given text / audio / vision sizes."""
    base = thinker_config(tokenizer).to_dict()
    base["text_config"].update(text)
    base["text_config"].pop("layer_types", None)  # re-derived from num_hidden_layers
    base["text_config"]["max_window_layers"] = text.get("num_hidden_layers", 2)
    base["text_config"]["rope_parameters"]["mrope_section"] = list(mrope_section)
    base["audio_config"].update(audio, output_dim=base["text_config"]["hidden_size"])
    base["vision_config"].update(vision, out_hidden_size=base["text_config"]["hidden_size"])
    return Qwen2_5OmniThinkerConfig(**base)


def _count(config: PretrainedConfig) -> dict[str, int]:
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    counts = {"audio": 0, "text_body": 0, "embeddings": 0, "vision": 0}
    for name, p in model.named_parameters():
        part = ("audio" if "audio_tower." in name else "vision" if "visual." in name
                else "embeddings" if "embed_tokens" in name or "lm_head" in name else "text_body")
        counts[part] += p.numel()
    return counts


def audio_to_body_ratio(config: PretrainedConfig) -> float:
    counts = _count(config)
    return counts["audio"] / counts["text_body"]


def real_config(kind: str, tokenizer: Any) -> Qwen2_5OmniThinkerConfig:
    """The real-size thinker config of `kind` (qwen2_5_omni_3b | qwen2_5_omni_7b)."""
    shape = REAL_SHAPES[kind]
    return omni_config(tokenizer, shape["text"], shape["audio"], shape["vision"],
                       shape["mrope_section"])


def scaled_config(tokenizer: Any) -> Qwen2_5OmniThinkerConfig:
    """A small Omni thinker whose audio-encoder / LM-body parameter ratio is Omni-7B's."""
    target = audio_to_body_ratio(real_config("qwen2_5_omni_7b", tokenizer))
    best: tuple[float, Qwen2_5OmniThinkerConfig] | None = None
    for layers in range(1, 33):
        audio = {**SCALED_AUDIO_WIDTH, "encoder_layers": layers}
        config = omni_config(tokenizer, SCALED_TEXT, audio, SCALED_VISION, [8, 12, 12])
        gap = abs(audio_to_body_ratio(config) - target)
        if best is None or gap < best[0]:
            best = (gap, config)
    assert best is not None
    return best[1]


def build_config(kind: str, tokenizer: Any) -> tuple[PretrainedConfig, ModelFamily]:
    if kind == "tiny_qwen2_audio":
        return qwen2_audio_config(tokenizer), QWEN2_AUDIO
    if kind == "tiny_omni":
        return thinker_config(tokenizer), QWEN2_5_OMNI
    if kind == "scaled_omni7b":
        return scaled_config(tokenizer), QWEN2_5_OMNI
    return real_config(kind, tokenizer), QWEN2_5_OMNI


def build_model(config: PretrainedConfig, *, dtype: torch.dtype = torch.float32,
                device: str = "cpu", seed: int = 0) -> Any:
    """Random weights (no download) on `device`."""
    cls = (Qwen2AudioForConditionalGeneration if config.model_type == "qwen2_audio"
           else Qwen2_5OmniThinkerForConditionalGeneration)
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls._from_config(copy.deepcopy(config), dtype=dtype)
    return model


def describe(config: PretrainedConfig) -> str:
    if config.model_type == "qwen2_audio":
        return "Qwen2-Audio (tiny)"
    c = _count(config)
    total = sum(c.values())
    return (f"{total / 1e6:,.1f}M params: audio {c['audio'] / 1e6:,.2f}M, LM body "
            f"{c['text_body'] / 1e6:,.2f}M, embeddings+head {c['embeddings'] / 1e6:,.1f}M, vision "
            f"{c['vision'] / 1e6:,.2f}M; audio/LM-body {c['audio'] / c['text_body']:.3f}, "
            f"audio/LM-all {c['audio'] / (c['text_body'] + c['embeddings']):.3f}")


if __name__ == "__main__":
    from local.demo.tokenizers import build_tokenizer

    tok = build_tokenizer("real")
    for kind in KINDS:
        print(f"{kind:18s} {describe(build_config(kind, tok)[0])}")
