"""Qwen3-Omni-30B-A3B (family qwen3_omni_moe): the family's facts, the tiny MoE thinker, the
audio reaching it in the loader's and evaluation's passes.

Facts asserted against the official files where tests/data/model-configs holds a byte-exact
copy (SOURCES.md there says which; a test skips where a file is absent), else against the ids
and settings the family module states (local/core/families/qwen3_omni_moe.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jinja2.sandbox
import pytest
import torch
from safetensors.torch import load_file, save_file

import evaluate_mmau
from local.core.collate import AUDIO_KEYS
from local.core.families import family_for_model_type, family_named
from local.core.models import family_of, load_model_and_processor
from local.core.prompts import build_messages
from local.core.records import Record
from local.core.special_tokens import audio_token, placeholder_token_ids, token_ids
from local.demo.tiny_qwen3_omni import CHAT_TEMPLATE, FEATURE_EXTRACTOR, thinker_config
from local.demo.tokenizers import build_tokenizer
from local.eval.generation import GenerationSettings, Generator, has_audio
from local.train.checkpoints import policy_source
from local.train.plan_model import model_shape
from tests.helpers import (
    REPO,
    logits_differ,
    processor_inputs,
    spy_generate,
    tiny_checkpoint,
    tone,
)
from tests.sources import mmau_eval_set

QWEN3 = family_named("qwen3_omni_moe")
OFFICIAL = REPO / "tests" / "data" / "model-configs"
VARIANTS = ["Qwen3-Omni-30B-A3B-Instruct", "Qwen3-Omni-30B-A3B-Thinking"]
# Token ids of the official tokenizer (the printed config and vLLM's/transformers' code agree;
# see SOURCES.md): the family's audio placeholder and its markers, the stop tokens, <think>.
OFFICIAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655,
                "<|video_pad|>": 151656, "<think>": 151667, "</think>": 151668,
                "<|audio_start|>": 151669, "<|audio_end|>": 151670, "<|audio_pad|>": 151675}


def _official(variant: str, name: str) -> dict:
    path = OFFICIAL / variant / name
    if not path.is_file():
        pytest.skip(f"no copy of {variant}/{name} with a cited source (tests/data/model-configs)")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def loaded(tiny_qwen3_omni: Path):
    return load_model_and_processor(str(tiny_qwen3_omni), dtype="float32")


def test_the_family_is_found_by_model_type_thinker_and_whole() -> None:
    for model_type in ("qwen3_omni_moe_thinker", "qwen3_omni_moe"):
        assert family_of(SimpleNamespace(model_type=model_type)) is QWEN3
    assert family_for_model_type("qwen2_5_omni_thinker").audio_token == "<|AUDIO|>"
    assert QWEN3.audio_token == "<|audio_pad|>" and QWEN3.full_model_type == "qwen3_omni_moe"
    assert QWEN3.model_class == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert not QWEN3.pad_audio_to_window and QWEN3.max_audio_seconds == 300.0


def test_real_vocab_tokenizer_has_the_official_ids_and_keeps_think_on_decode() -> None:
    tokenizer = build_tokenizer("real", "qwen3_omni_moe")
    assert token_ids(tokenizer, list(OFFICIAL_IDS)) == list(OFFICIAL_IDS.values())
    assert audio_token(tokenizer) == "<|audio_pad|>"  # found without being told the family
    assert tokenizer.audio_token_id == 151675 and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer("<think>beeps</think><|audio_pad|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>beeps</think>"
    suppressed = placeholder_token_ids(tokenizer, QWEN3)
    assert 151675 in suppressed and 151669 in suppressed and 151667 not in suppressed
    config = thinker_config(tokenizer)
    assert (config.audio_token_id, config.audio_start_token_id, config.audio_end_token_id,
            config.position_id_per_seconds) == (151675, 151669, 151670, 13)
    assert config.text_config.vocab_size == 152_064


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_config_and_tokenizer_match_the_official_files(variant: str) -> None:
    official = _official(variant, "config.json")["thinker_config"]
    ours = thinker_config(build_tokenizer("real", "qwen3_omni_moe")).to_dict()
    for key in ("audio_token_id", "image_token_id", "video_token_id", "audio_start_token_id",
                "audio_end_token_id", "vision_start_token_id", "vision_end_token_id",
                "user_token_id", "position_id_per_seconds"):
        assert ours[key] == official[key], key
    for key in ("num_mel_bins", "n_window", "n_window_infer"):
        assert ours["audio_config"][key] == official["audio_config"][key], key
    added = _official(variant, "tokenizer_config.json")["added_tokens_decoder"]
    tokenizer = build_tokenizer("real", "qwen3_omni_moe")
    for token_id, token in added.items():
        assert tokenizer.convert_tokens_to_ids(token["content"]) == int(token_id)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_recipe_s_user_turn_renders_as_the_official_template(variant: str) -> None:
    """The tiny kit's (simplified) template and the official one give the same prompt for the
    recipe's one user turn; the Thinking template opens no <think> block by itself."""
    official = _official(variant, "chat_template.json")["chat_template"]
    messages = build_messages("How many beeps? Output the final answer in <answer> </answer>.")
    render = jinja2.sandbox.ImmutableSandboxedEnvironment()
    theirs = render.from_string(official).render(messages=messages, add_generation_prompt=True)
    ours = render.from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)
    assert ours == theirs
    assert theirs.startswith("<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>")
    assert theirs.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("variant", VARIANTS)
def test_feature_extractor_settings_match_the_official_file(variant: str) -> None:
    official = _official(variant, "preprocessor_config.json")
    for key, value in FEATURE_EXTRACTOR.items():
        if key in official:
            assert official[key] == value, key


def test_tiny_checkpoint_loads_with_the_real_classes(tiny_qwen3_omni: Path, loaded) -> None:
    config = json.loads((tiny_qwen3_omni / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe_thinker"
    assert config["text_config"]["num_experts"] == 4
    assert config["text_config"]["num_experts_per_tok"] == 2
    assert config["text_config"]["head_dim"] == 32
    assert loaded.family is QWEN3
    assert type(loaded.model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert type(loaded.processor).__name__ == "Qwen3OmniMoeProcessor"
    assert loaded.processor.audio_token == QWEN3.audio_token


def test_a_whole_checkpoint_is_reduced_to_its_thinker(tiny_qwen3_omni: Path, loaded,
                                                     tmp_path: Path) -> None:
    """The hub layout (model_type qwen3_omni_moe, weights under "thinker.", per-expert 2-D
    tensors, talker weights beside them) loads as the thinker with the very same weights."""
    thinker = json.loads((tiny_qwen3_omni / "config.json").read_text())
    thinker.pop("architectures")
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"], "model_type": "qwen3_omni_moe",
        "thinker_config": thinker, "enable_audio_output": False}))
    stored = load_file(str(tiny_qwen3_omni / "model.safetensors"))
    assert any(".mlp.experts.0.down_proj." in k for k in stored)  # per-expert on disk
    whole = {f"thinker.{k}": v for k, v in stored.items()}
    whole["talker.model.norm.weight"] = torch.ones(4)
    save_file(whole, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    for item in tiny_qwen3_omni.iterdir():
        if item.name not in ("config.json", "model.safetensors"):
            shutil.copy(item, tmp_path / item.name)
    reduced = load_model_and_processor(str(tmp_path), dtype="float32")
    assert reduced.family is QWEN3
    assert type(reduced.model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    ours, theirs = dict(loaded.model.named_parameters()), dict(reduced.model.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # train.py reduces it once into the run folder, and the planner sizes its thinker.
    source = Path(policy_source(str(tmp_path), tmp_path / "run" / "init_thinker"))
    assert json.loads((source / "config.json").read_text())["model_type"] == \
        "qwen3_omni_moe_thinker"
    assert model_shape(str(tmp_path)).total == model_shape(str(tiny_qwen3_omni)).total


@pytest.mark.parametrize("seconds", [1.0, 2.0, 2.5])
def test_placeholder_count_is_13_per_second(loaded, seconds: float) -> None:
    inputs = processor_inputs(loaded.processor, [tone(seconds)])
    frames = int(seconds * 100)
    # A module function here (Qwen2's encoders have it as a method): 100-frame chunks, each
    # three stride-2 convolutions -> 13 tokens.
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        _get_feat_extract_output_lengths,
    )

    expected = int(_get_feat_extract_output_lengths(torch.tensor([frames]))[0])
    audio_id = token_ids(loaded.processor.tokenizer, [QWEN3.audio_token])[0]
    assert int((inputs["input_ids"] == audio_id).sum()) == expected
    assert expected == {1.0: 13, 2.0: 26, 2.5: 33}[seconds]


def test_audio_reaches_the_thinker_and_the_check_can_fail(loaded) -> None:
    low = processor_inputs(loaded.processor, [tone(2.0, freq=220)])
    high = processor_inputs(loaded.processor, [tone(2.0, freq=3000)])
    assert torch.equal(low["input_ids"], high["input_ids"])
    assert logits_differ(lambda x: loaded.model(**x).logits, low, high)

    def without_audio(inputs):
        kept = {k: v for k, v in inputs.items()
                if k not in ("input_features", "feature_attention_mask")}
        return loaded.model(**kept).logits

    assert not logits_differ(without_audio, low, high)


def _record(rid: str, freq: float) -> Record:
    return Record(id=rid, audio=tone(1.5, freq), sampling_rate=16_000,
                  question="Which tone is it?", choices=["low", "high"], answer="low")


def test_evaluation_feeds_the_audio(loaded) -> None:
    generator = Generator(loaded, GenerationSettings(max_new_tokens=4))
    seen = spy_generate(generator)
    outputs = generator.generate([_record("low", 220.0), _record("high", 3000.0)])
    assert [o.error for o in outputs] == [None, None]
    inputs = seen[0]
    assert has_audio(inputs, generator.tokenizer)
    assert inputs["feature_attention_mask"].sum(-1).tolist() == [150, 150]
    one = {k: v[:1] for k, v in inputs.items() if torch.is_tensor(v)}
    two = {k: v[1:] for k, v in inputs.items() if torch.is_tensor(v)}
    assert torch.equal(one["input_ids"], two["input_ids"])
    keys = ("input_ids", "attention_mask", *AUDIO_KEYS)
    assert logits_differ(lambda x: loaded.model(**{k: x[k] for k in keys if k in x}).logits,
                         one, two)


def test_evaluate_mmau_runs_on_the_tiny_thinker(tiny_qwen3_omni: Path, tmp_path: Path) -> None:
    json_path, audio_dir = mmau_eval_set(tmp_path / "mmau", n=4)
    result = evaluate_mmau.main(["--model", str(tiny_qwen3_omni), "--mmau_json", str(json_path),
                                 "--mmau_audio_dir", str(audio_dir), "--out_dir",
                                 str(tmp_path / "out"), "--limit", "4", "--max_new_tokens", "4",
                                 "--dtype", "float32"])
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions) == 4 and result is not None


@pytest.mark.slow
def test_cli_builds_it_offline_and_auto_classes_load_it(tmp_path: Path) -> None:
    out = tmp_path / "q3"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "local.tiny", "--family", "qwen3_omni_moe", "--out",
                    str(out)], check=True, cwd=REPO, env=env, capture_output=True)
    check = ("from transformers import AutoConfig, AutoProcessor; "
             f"print(AutoConfig.from_pretrained({str(out)!r}).model_type, "
             f"type(AutoProcessor.from_pretrained({str(out)!r})).__name__)")
    result = subprocess.run([sys.executable, "-c", check], check=True, cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.stdout.split() == ["qwen3_omni_moe_thinker", "Qwen3OmniMoeProcessor"]


@pytest.mark.slow
def test_train_py_two_steps_change_the_audio_encoder(tmp_path: Path, monkeypatch) -> None:
    """conf/demo.yaml on the tiny thinker (CPU), a reward with spread: the saved checkpoint
    loads as the family and its audio encoder (and experts) moved."""
    import train
    from local.core.rewards import REWARDS
    from tests.helpers_train import length_reward, train_argv

    monkeypatch.setitem(REWARDS, "length", length_reward)
    run = tmp_path / "run"
    train.main(train_argv("qwen3_omni_moe", run, max_steps=2))
    base = load_model_and_processor(str(tiny_checkpoint("qwen3_omni_moe")), dtype="float32")
    trained = load_model_and_processor(str(run / "checkpoint-2"), dtype="float32")
    assert trained.family is QWEN3
    before, after = dict(base.model.named_parameters()), dict(trained.model.named_parameters())
    assert before.keys() == after.keys()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("audio_tower." in k for k in moved)
    assert any("mlp.experts." in k for k in moved)
    json_path, audio_dir = mmau_eval_set(tmp_path / "mmau", n=4)
    evaluate_mmau.main(["--model", str(run / "checkpoint-2"), "--mmau_json", str(json_path),
                        "--mmau_audio_dir", str(audio_dir), "--out_dir", str(tmp_path / "eval"),
                        "--max_new_tokens", "4", "--dtype", "float32"])
    assert len(json.loads((tmp_path / "eval" / "predictions.json").read_text())) == 4
