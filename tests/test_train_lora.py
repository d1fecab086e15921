"""LoRA (`--use_peft`): trains with the audio, saves an adapter that the loader merges back."""

from __future__ import annotations

import logging

import pytest
import torch
from peft import LoraConfig
from trl import ModelConfig

import train
from local.core.models import load_model_and_processor
from local.train.audio_cache import find_audio_tower
from tests.helpers import tiny_checkpoint
from tests.helpers_train import make_trainer, small_config, synthetic_rows, vowel_reward


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



def test_frozen_encoder_stays_frozen_under_lora(tmp_path, caplog, monkeypatch) -> None:
    """freeze_audio_encoder with LoRA targets that also name encoder modules (q_proj, v_proj):
    the encoder gets no adapters and nothing in it trains, the text model's adapters do, and the
    frozen-encoder cache is on (and said so in the log)."""
    monkeypatch.setattr(train, "resolve_rewards", lambda config: [vowel_reward])  # has spread
    config = small_config(tmp_path / "run", beta=0.04, freeze_audio_encoder="true", max_steps=2)
    model_args = ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                             lora_target_modules=["q_proj", "v_proj"])
    loaded = load_model_and_processor(str(tiny_checkpoint("qwen2_5_omni")), dtype="float32")
    with caplog.at_level(logging.INFO, logger="local.train.trainer"):
        trainer = train.build_trainer(config, model_args, loaded, synthetic_rows(2))
    tower = find_audio_tower(trainer.model)
    assert not [n for n, p in tower.named_parameters() if p.requires_grad]
    assert trainer._audio_cache is not None and "frozen-encoder cache: on" in caplog.text
    encoder = {n: p.detach().clone() for n, p in tower.named_parameters()}
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
                if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    trainer.train()  # reference passes switch the adapters off and on again
    assert not [n for n, p in tower.named_parameters() if p.requires_grad]
    assert all(torch.equal(p, encoder[n]) for n, p in tower.named_parameters())
    assert any(not torch.equal(p, adapters[n]) for n, p in trainer.model.named_parameters()
               if n in adapters)  # the text model's adapters did train
