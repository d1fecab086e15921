"""LoRA (`--use_peft`): trains with the audio, saves an adapter that the loader merges back."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from local.models import load_model_and_processor
from tests.helpers import tiny_checkpoint
from tests.helpers_train import make_trainer


@pytest.mark.parametrize("family", ["qwen2_5_omni", "qwen2_audio"])
def test_lora_checkpoint_trains_saves_and_loads_merged(tmp_path, family: str) -> None:
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = make_trainer(family, tmp_path / "run", peft_config=lora, beta=0.04)
    assert trainer.ref_model is None  # PEFT: the reference is the base with adapters disabled
    trainer.train()
    trainer.save_model(str(tmp_path / "checkpoint"))
    assert (tmp_path / "checkpoint" / "adapter_config.json").exists()

    merged = load_model_and_processor(str(tmp_path / "checkpoint"), dtype="float32")
    base = load_model_and_processor(str(tiny_checkpoint(family)), dtype="float32")
    assert merged.family == base.family
    assert type(merged.model) is type(base.model)
    merged_state, base_state = merged.model.state_dict(), base.model.state_dict()
    assert merged_state.keys() == base_state.keys()  # no LoRA leftovers: a plain checkpoint
    moved = [k for k in base_state if not torch.equal(merged_state[k], base_state[k])]
    assert moved and all(("q_proj" in k or "v_proj" in k) for k in moved)
    assert any("audio_tower" in k for k in moved)  # the encoder's adapters learned too
