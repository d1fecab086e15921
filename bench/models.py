"""Random-weight models for the benchmarks: tiny, scaled (Omni-7B's encoder/LM ratio), real sizes.

Configs are built the way `local/demo/tiny.py` builds its tiny ones (official token ids, rope and
feature-extractor settings), with other widths and depths. The real shapes of Qwen2.5-Omni-3B/7B
(thinker: text, audio and vision towers) are embedded here, so no config is downloaded: the
Qwen2.5-Omni-7B thinker has 8.93B parameters, the Qwen2.5-Omni-3B thinker 4.70B. The
Qwen3-Omni-30B-A3B thinker (`qwen3_omni_moe`, a mixture of experts) is embedded from a reported
extract of its config.json, NOT a byte-exact copy (`QWEN3_OMNI_30B_A3B` says where each size comes
from); `qwen3_omni_config(tokenizer, layers=4)` builds it with fewer text layers for the GPU kit's
step (bench/grpo_moe.py).

`scaled` keeps Qwen2.5-Omni-7B's ratio of audio-encoder parameters to language-model *body*
parameters (decoder layers; token embedding and LM head excluded: they are lookups or run on
completion tokens only, so they do not scale the per-token work the ratio is meant to keep).

Example:
    $ .venv/bin/python -m bench.models        # parameter counts of every kind (meta device)
    $ .venv/bin/python -m bench.models --save_config qwen3_omni_moe .cache/qwen3-omni-config
    $ .venv/bin/python -m local.train.plan --model .cache/qwen3-omni-config \\
        --config conf/qwen3_omni_lora.yaml --nproc 8 --gpu_memory_gb 80
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
    Qwen3OmniMoeThinkerConfig,
    Qwen3OmniMoeThinkerForConditionalGeneration,
)

from local.core.models import QWEN2_5_OMNI, QWEN2_AUDIO, QWEN3_OMNI_MOE, ModelFamily
from local.demo import tiny_qwen3_omni
from local.demo.tiny import qwen2_audio_config, thinker_config
from local.demo.tokenizers import build_tokenizer

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

# Qwen3-Omni-30B-A3B thinker: REPORTED, NOT BYTE-EXACT. No byte-exact config.json of
# Qwen/Qwen3-Omni-30B-A3B-* is in this repository (tests/data/model-configs/SOURCES.md). Every
# size below is quoted from the extract dishierweidu/qwen3-test
# tests/fixtures/qwen3_omni/config_contract.json (commit 087dfd32bed176f9d64619ac44813fec327d9556),
# which names its source as config.json of Qwen/Qwen3-Omni-30B-A3B-Instruct at hub revision
# 26291f793822fb6be9555850f06dfe95f2d7e695 (sha256 eab5093d47807aaf…) read with transformers
# 5.2.0; that repository's tests/oracle/test_qwen3_omni_config_oracle.py pins the same values.
# Exceptions, each marked: head_dim (not in the extract) and the window settings, from
# SOURCES.md's reported facts. The text model has no dense MLP layer (mlp_only_layers empty,
# decoder_sparse_step 1: transformers' defaults, not in the extract), so intermediate_size is
# unused and left at its default.
QWEN3_OMNI_30B_A3B: dict[str, Any] = {
    "text": {  # contract "thinker" + "vocabulary.embedding_vocab_size"
        "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 32,
        "num_key_value_heads": 4, "num_experts": 128, "num_experts_per_tok": 8,
        "moe_intermediate_size": 768, "vocab_size": 152_064,
        # head_dim: SOURCES.md (reported, 128); consistent with mrope_section [24, 20, 20],
        # whose sum is head_dim / 2, and with 32 heads x 128 != hidden 2048 (so it is explicit)
        "head_dim": 128,
    },
    "audio": {  # contract "audio_encoder": hidden 1280, 32 layers, 20 heads, ffn 5120, conv 480,
        # projector [1280, 1280, 2048] (output_dim 2048); n_window(s): SOURCES.md (reported)
        "d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
        "encoder_ffn_dim": 5120, "downsample_hidden_size": 480, "output_dim": 2048,
        "num_mel_bins": 128, "n_window": 50, "n_window_infer": 800,
    },
    "vision": {  # contract "vision_encoder": 27 layers, 16 heads, hidden 1152, ffn 4304, patch
        # kernel [2, 16, 16], merge 2, deepstack [8, 16, 24], merger [4608, 4608, 2048]
        "depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
        "out_hidden_size": 2048, "patch_size": 16, "temporal_patch_size": 2,
        "spatial_merge_size": 2, "deepstack_visual_indexes": [8, 16, 24],
    },
    "mrope_section": [24, 20, 20],  # contract "tm_rope" (interleaved, rope_theta 1e6)
}
# What public material reports for the thinker: keras-team/keras-hub
# keras_hub/src/models/qwen3_omni/qwen3_omni_presets.py (a commented-out preset): "Qwen3-Omni
# Thinker ... 30.5 billion total parameters and 3.3 billion activated", params 30532122624.
REPORTED_TOTAL_B, REPORTED_ACTIVE_B = 30.5, 3.3
KINDS = ("tiny_qwen2_audio", "tiny_omni", "scaled_omni7b", *REAL_SHAPES, "qwen3_omni_moe")


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


def thinker_class(config: PretrainedConfig) -> type:
    """The transformers class of a thinker (or Qwen2-Audio) config."""
    if config.model_type == "qwen2_audio":
        return Qwen2AudioForConditionalGeneration
    if config.model_type == "qwen3_omni_moe_thinker":
        return Qwen3OmniMoeThinkerForConditionalGeneration
    return Qwen2_5OmniThinkerForConditionalGeneration


def qwen3_omni_config(tokenizer: Any, layers: int | None = None,
                      shape: dict[str, Any] | None = None) -> Qwen3OmniMoeThinkerConfig:
    """The Qwen3-Omni-30B-A3B thinker (`QWEN3_OMNI_30B_A3B`: reported, not byte-exact) built the
    way the tiny kit builds its own (`local.demo.tiny_qwen3_omni.thinker_config`: token ids,
    rope and audio-window settings), with `layers` text layers instead of 48 where given."""
    shape = shape or QWEN3_OMNI_30B_A3B
    if "<|audio_pad|>" not in tokenizer.get_vocab():
        raise ValueError("qwen3_omni_config needs Qwen3-Omni's added tokens: "
                         "build_tokenizer(tier, family='qwen3_omni_moe')")
    base = tiny_qwen3_omni.thinker_config(tokenizer, shape["text"]["head_dim"]).to_dict()
    text = {**shape["text"], "num_hidden_layers": layers or shape["text"]["num_hidden_layers"]}
    if len(tokenizer) <= 100_000:  # a tiny tokenizer (CPU smoke): its own vocabulary
        text["vocab_size"] = len(tokenizer)
    base["text_config"].update(text)
    base["text_config"].pop("layer_types", None)
    base["text_config"]["rope_parameters"]["mrope_section"] = list(shape["mrope_section"])
    base["audio_config"].update(shape["audio"])
    base["vision_config"].update(shape["vision"])
    return Qwen3OmniMoeThinkerConfig(**base)


def _count(config: PretrainedConfig) -> dict[str, int]:
    """Parameters per part on the meta device (nothing allocated); for a mixture of experts also
    `experts` (the routed experts' share of `text_body`)."""
    with torch.device("meta"):
        model = thinker_class(config)(config)
    counts = {"audio": 0, "text_body": 0, "embeddings": 0, "vision": 0}
    if config.model_type == "qwen3_omni_moe_thinker":
        counts["experts"] = 0
    for name, p in model.named_parameters():
        part = ("audio" if "audio_tower." in name else "vision" if "visual." in name
                else "embeddings" if "embed_tokens" in name or "lm_head" in name else "text_body")
        counts[part] += p.numel()
        if ".mlp.experts." in name and part == "text_body":
            counts["experts"] += p.numel()
    return counts


def moe_counts(config: PretrainedConfig) -> dict[str, float]:
    """Total and active parameters of a Qwen3-Omni thinker: active = total less the routed
    experts a token does not use (1 - experts_per_tok / num_experts of them), towers included;
    also the text model alone (embeddings, head and layers), which is what `A3B` names."""
    c = _count(config)
    text = config.text_config
    idle = c["experts"] * (1 - text.num_experts_per_tok / text.num_experts)
    total = sum(v for k, v in c.items() if k != "experts")
    lm = c["text_body"] + c["embeddings"]
    return {"total": total, "active": total - idle, "text_total": lm, "text_active": lm - idle,
            "audio": c["audio"], "vision": c["vision"], "experts": c["experts"]}


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
    if kind == "qwen3_omni_moe":
        return qwen3_omni_config(tokenizer), QWEN3_OMNI_MOE
    return real_config(kind, tokenizer), QWEN2_5_OMNI


def build_model(config: PretrainedConfig, *, dtype: torch.dtype = torch.float32,
                device: str = "cpu", seed: int = 0) -> Any:
    """Random weights (no download) on `device`."""
    cls = thinker_class(config)
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls._from_config(copy.deepcopy(config), dtype=dtype)
    return model


def describe(config: PretrainedConfig) -> str:
    if config.model_type == "qwen2_audio":
        return "Qwen2-Audio (tiny)"
    if config.model_type == "qwen3_omni_moe_thinker":
        m = moe_counts(config)
        return (f"{m['total'] / 1e9:,.2f}B params ({m['active'] / 1e9:,.2f}B active), text "
                f"{m['text_total'] / 1e9:,.2f}B ({m['text_active'] / 1e9:,.2f}B active), audio "
                f"{m['audio'] / 1e9:,.2f}B, vision {m['vision'] / 1e9:,.2f}B; reported: "
                f"{REPORTED_TOTAL_B}B total, {REPORTED_ACTIVE_B}B active (config reported, not "
                f"byte-exact)")
    c = _count(config)
    total = sum(c.values())
    return (f"{total / 1e6:,.1f}M params: audio {c['audio'] / 1e6:,.2f}M, LM body "
            f"{c['text_body'] / 1e6:,.2f}M, embeddings+head {c['embeddings'] / 1e6:,.1f}M, vision "
            f"{c['vision'] / 1e6:,.2f}M; audio/LM-body {c['audio'] / c['text_body']:.3f}, "
            f"audio/LM-all {c['audio'] / (c['text_body'] + c['embeddings']):.3f}")


def save_config(kind: str, out: str) -> str:
    """Write `kind`'s config (and its tokenizer) to the folder `out`, no weights: what
    `local.train.plan --model` reads, e.g. for Qwen3-Omni-30B-A3B where no config is at hand."""
    tokenizer = build_tokenizer("real", family="qwen3_omni_moe" if kind == "qwen3_omni_moe"
                                else "qwen2_5_omni")
    config = build_config(kind, tokenizer)[0]
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save_config", nargs=2, metavar=("KIND", "DIR"),
                        help=f"write KIND's config (no weights) to DIR; KIND: {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    if args.save_config:
        kind, out = args.save_config
        if kind not in KINDS:
            parser.error(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        print(f"{kind} config written to {save_config(kind, out)}")
        return
    tok = build_tokenizer("real")
    tok3 = build_tokenizer("real", family="qwen3_omni_moe")
    for kind in KINDS:
        config = build_config(kind, tok3 if kind == "qwen3_omni_moe" else tok)[0]
        print(f"{kind:18s} {describe(config)}")


if __name__ == "__main__":
    main()
