"""The tiny checkpoints mirror the official files in ../shared/data/model-configs (skip if absent).

Token ids, chat format, feature-extractor settings and rope settings must match, or tests on tiny
models would prove nothing about the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest

from local.core.models import load_model_and_processor
from local.demo.tiny import (
    OMNI_CHAT_TEMPLATE,
    OMNI_FEATURE_EXTRACTOR,
    QWEN2_AUDIO_FEATURE_EXTRACTOR,
)
from tests.helpers import OFFICIAL_DIR, tiny_checkpoint, user_turn

OMNI_DIRS = ["Qwen2.5-Omni-7B", "Qwen2.5-Omni-3B"]
TEXT = "What is the sound? Please choose the answer from the following options: ['a', 'b']."


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


@pytest.mark.parametrize(
    ("model_dir", "ours"),
    [("Qwen2.5-Omni-7B", OMNI_FEATURE_EXTRACTOR), ("Qwen2.5-Omni-3B", OMNI_FEATURE_EXTRACTOR),
     ("Qwen2-Audio-7B-Instruct", QWEN2_AUDIO_FEATURE_EXTRACTOR)],
)
def test_feature_extractor_settings_are_official(model_configs: Path, model_dir: str,
                                                 ours: dict) -> None:
    official = _json(model_configs / model_dir, "preprocessor_config.json")
    for key, value in ours.items():
        assert official[key] == value, f"{model_dir}: {key}"


@pytest.mark.parametrize("model_dir", OMNI_DIRS)
def test_omni_chat_template_is_official(model_configs: Path, model_dir: str) -> None:
    assert _json(model_configs / model_dir, "chat_template.json")["chat_template"] == \
        OMNI_CHAT_TEMPLATE


@pytest.fixture(scope="module")
def real_omni() -> Path:
    return tiny_checkpoint("qwen2_5_omni", vocab="real")


@pytest.fixture(scope="module")
def real_qwen2_audio() -> Path:
    return tiny_checkpoint("qwen2_audio", vocab="real")


@pytest.mark.slow
@pytest.mark.parametrize("model_dir", OMNI_DIRS)
def test_real_vocab_special_token_ids_are_official(model_configs: Path, real_omni: Path,
                                                   model_dir: str) -> None:
    official = _json(model_configs / model_dir, "tokenizer_config.json")["added_tokens_decoder"]
    tokenizer = load_model_and_processor(str(real_omni)).processor.tokenizer
    for token_id, token in official.items():
        assert tokenizer.convert_tokens_to_ids(token["content"]) == int(token_id)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.slow
def test_real_vocab_omni_renders_a_user_turn_as_the_official_template(
        model_configs: Path, real_omni: Path) -> None:
    official_template = _json(model_configs / "Qwen2.5-Omni-7B", "chat_template.json")
    official_text = jinja2.Environment().from_string(official_template["chat_template"]).render(
        messages=user_turn(TEXT), add_generation_prompt=True)
    processor = load_model_and_processor(str(real_omni)).processor
    ours = processor.apply_chat_template(user_turn(TEXT), tokenize=False,
                                         add_generation_prompt=True)
    assert ours == official_text
    assert "<|audio_bos|><|AUDIO|><|audio_eos|>" + TEXT in ours
    ids = processor.tokenizer(ours)["input_ids"]
    assert ids[:3] == [151644, 8948, 198]  # <|im_start|> system \n, the real Qwen2 ids
    assert ids[ids.index(151647):ids.index(151647) + 3] == [151647, 151646, 151648]


@pytest.mark.slow
def test_real_vocab_qwen2_audio_renders_the_documented_user_turn(real_qwen2_audio: Path) -> None:
    processor = load_model_and_processor(str(real_qwen2_audio)).processor
    ours = processor.apply_chat_template(user_turn(TEXT), tokenize=False,
                                         add_generation_prompt=True)
    assert ours == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
                    f"{TEXT}<|im_end|>\n<|im_start|>assistant\n")
    assert processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>") == 151646


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_omni", "qwen2_audio"])
def test_real_vocab_config_token_ids_and_rope_are_official(model_configs: Path,
                                                          family: str) -> None:
    official = _json(model_configs / OFFICIAL_DIR[family], "config.json")
    ours = _json(tiny_checkpoint(family, vocab="real"), "config.json")
    if family == "qwen2_audio":
        assert ours["audio_token_index"] == official["audio_token_index"]
        assert ours["text_config"]["vocab_size"] == official["vocab_size"]
        assert ours["audio_config"]["num_mel_bins"] == official["audio_config"]["num_mel_bins"]
        return
    official_thinker = official["thinker_config"]
    for key in ("audio_token_index", "image_token_index", "video_token_index",
                "audio_start_token_id", "audio_end_token_id", "vision_start_token_id",
                "vision_end_token_id", "user_token_id", "position_id_per_seconds",
                "seconds_per_chunk", "bos_token_id", "eos_token_id", "pad_token_id"):
        assert ours[key] == official_thinker[key], key
    rope, official_rope = ours["text_config"]["rope_parameters"], \
        official_thinker["text_config"]["rope_scaling"]
    assert rope["rope_theta"] == official_thinker["text_config"]["rope_theta"]
    # Same temporal/height/width split of the rotary dimensions, scaled to the tiny head.
    scale = sum(official_rope["mrope_section"]) / sum(rope["mrope_section"])
    assert [s * scale for s in rope["mrope_section"]] == official_rope["mrope_section"]
    assert ours["audio_config"]["num_mel_bins"] == \
        official_thinker["audio_config"]["num_mel_bins"]
