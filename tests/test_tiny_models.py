"""Tiny checkpoints of both families load like real ones, and their audio reaches the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from local.core.models import ModelLoadError, load_model_and_processor
from tests.helpers import REPO, logits_differ, processor_inputs, tiny_checkpoint, tone


def _forward(model):
    return lambda inputs: model(**inputs).logits


def test_forward_and_generate_on_a_chat_with_audio(tiny_family_checkpoint) -> None:
    family, path = tiny_family_checkpoint
    loaded = load_model_and_processor(str(path), dtype="float32")
    assert loaded.family.name == family
    inputs = processor_inputs(loaded.processor, [tone(2.0)])
    logits = loaded.model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
    out = loaded.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.parametrize("seconds", [1.0, 2.0, 4.4, 10.0])
def test_placeholder_count_matches_audio_length(tiny_family_checkpoint, seconds: float) -> None:
    """~25 audio tokens per second (two stride-2 stages after 100 mel frames/s)."""
    _, path = tiny_family_checkpoint
    processor = load_model_and_processor(str(path), dtype="float32").processor
    inputs = processor_inputs(processor, [tone(seconds)])
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    frames = int(seconds * 100)
    expected = ((frames - 1) // 2 + 1 - 2) // 2 + 1
    assert int((inputs["input_ids"] == audio_id).sum()) == expected
    assert int(inputs["feature_attention_mask"].sum()) == frames


def test_changing_the_audio_changes_the_logits(tiny_family_checkpoint) -> None:
    _, path = tiny_family_checkpoint
    loaded = load_model_and_processor(str(path), dtype="float32")
    low = processor_inputs(loaded.processor, [tone(2.0, freq=220)])
    high = processor_inputs(loaded.processor, [tone(2.0, freq=3000)])
    assert torch.equal(low["input_ids"], high["input_ids"])  # same text: only the audio differs
    assert logits_differ(_forward(loaded.model), low, high)


def test_the_audio_check_fails_when_features_are_dropped(tiny_family_checkpoint) -> None:
    """The check above is not vacuous: a forward that drops the audio features (the silent bug
    of stock TRL's loss pass) gives identical logits for different audio, and it says so."""
    _, path = tiny_family_checkpoint
    loaded = load_model_and_processor(str(path), dtype="float32")
    low = processor_inputs(loaded.processor, [tone(2.0, freq=220)])
    high = processor_inputs(loaded.processor, [tone(2.0, freq=3000)])

    def forward_without_audio(inputs):
        kept = {k: v for k, v in inputs.items()
                if k not in ("input_features", "feature_attention_mask")}
        return loaded.model(**kept).logits

    assert not logits_differ(forward_without_audio, low, high)


def test_full_omni_checkpoint_loads_as_its_thinker(tmp_path: Path) -> None:
    path = tiny_checkpoint("qwen2_5_omni", full_omni=True)
    assert json.loads((path / "config.json").read_text())["model_type"] == "qwen2_5_omni"
    loaded = load_model_and_processor(str(path), dtype="float32")
    assert type(loaded.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    stored = load_file(str(path / "model.safetensors"))
    assert any(k.startswith("talker.") for k in stored)  # the file really holds a whole model
    # Saved again, the thinker's weights (in the checkpoint's own naming) are exactly the file's
    # "thinker." weights: every one was loaded, none left at random init.
    loaded.model.save_pretrained(tmp_path)
    resaved = {k.removeprefix("thinker."): v
               for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
    thinker = {k.removeprefix("thinker."): v for k, v in stored.items() if k.startswith("thinker.")}
    assert thinker and resaved.keys() == thinker.keys()
    for key, value in thinker.items():
        torch.testing.assert_close(resaved[key], value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"model_type": "bert"}, "not supported", id="unsupported-model-type"),
        pytest.param(None, "cannot read a model config", id="no-config-json"),
    ],
)
def test_unusable_checkpoints_get_a_clear_error(tmp_path: Path, config, message: str) -> None:
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        load_model_and_processor(str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni"])
def test_cli_checkpoint_loads_offline_with_auto_classes(tmp_path: Path, family: str) -> None:
    """`python -m local.tiny`, then the project's loader and AutoProcessor, with HF_HUB_OFFLINE."""
    out = tmp_path / family
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "local.demo.tiny", "--family", family, "--out", str(out)],
                   check=True, cwd=REPO, env=env, capture_output=True)
    check = (
        "import sys; from transformers import AutoProcessor; "
        "from local.core.models import load_model_and_processor; "
        f"p = AutoProcessor.from_pretrained({str(out)!r}); "
        f"m = load_model_and_processor({str(out)!r}); "
        "print(type(p).__name__, type(m.model).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", check], check=True, cwd=REPO, env=env,
                            capture_output=True, text=True)
    expected = {"qwen2_audio": "Qwen2AudioProcessor Qwen2AudioForConditionalGeneration",
                "qwen2_5_omni": "Qwen2_5OmniProcessor Qwen2_5OmniThinkerForConditionalGeneration"}
    assert result.stdout.strip() == expected[family]
