"""AudioGRPOTrainer's guards against silent paths (issue 20, item 6).

- A row whose audio placeholder count does not match the audio tokens its features make stops
  the log-prob pass with an error naming the row (transformers' Omni forward never checks it:
  `masked_scatter` takes the first N feature rows; Qwen2-Audio checks only the chunk's total).
- A batch without `input_features` stops the loss instead of running a text-only pass.
- Qwen2.5-Omni's vision tower (never run on audio) is frozen: no gradient, no optimizer state.
- Gradient checkpointing (on in the default config, off in the other training tests): the
  audio encoder still gets its gradient.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from local.core.collate import AUDIO_KEYS
from local.train.audio_rows import AudioPlaceholderError
from local.train.guards import MissingAudioError
from tests.helpers_train import length_reward, make_trainer

FAMILIES = ["qwen2_audio", "qwen2_5_omni"]
G = 4


def _rollout(trainer, prompts: int = 2) -> dict:
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); called directly here
    rows = [trainer.train_dataset[i // G] for i in range(prompts * G)]  # as the sampler yields
    return trainer._generate_and_score_completions(rows)


def _audio_id(trainer) -> int:
    return trainer.processing_class.tokenizer.convert_tokens_to_ids("<|AUDIO|>")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_row_with_one_placeholder_too_few_stops_the_loss_naming_it(tmp_path, family) -> None:
    trainer = make_trainer(family, tmp_path, rows=2)
    out = _rollout(trainer)
    assert out["audio_row_names"] == ["syn-0"] * G + ["syn-1"] * G
    row = 5  # the second prompt's second completion (TRL shuffles rows before the loss)
    ids = out["prompt_ids"][row]
    placeholders = int((ids == _audio_id(trainer)).sum())
    ids[(ids == _audio_id(trainer)).nonzero()[0]] = trainer.processing_class.tokenizer.pad_token_id
    with pytest.raises(AudioPlaceholderError,
                       match=rf"syn-1 .*{placeholders - 1} audio placeholder.* {placeholders} "):
        trainer._compute_loss(trainer.model, out)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_row_fed_features_of_another_length_stops_naming_it(tmp_path, family) -> None:
    """Features shorter than the row's placeholders: stopped, naming the row, before the model
    runs (Omni's forward would fail with a bare masked_scatter error, or with features to spare
    in the chunk, take other rows' features without a word)."""
    trainer = make_trainer(family, tmp_path, rows=2)
    out = _rollout(trainer)
    mask = out["feature_attention_mask"]
    frames = int(mask[2].sum())
    mask[2, frames - 40:] = 0  # 0.4 s fewer frames: fewer audio tokens than placeholders
    with pytest.raises(AudioPlaceholderError, match=r"syn-0 \(row 2 of"):
        trainer._compute_loss(trainer.model, out)


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_are_named_by_index_without_dataset_ids(tmp_path, family) -> None:
    trainer = make_trainer(family, tmp_path, rows=2)
    out = _rollout(trainer)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    ids[6][(ids[6] == _audio_id(trainer)).nonzero()[0]] = 0
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with torch.no_grad(), trainer._audio_for_logps({k: out[k] for k in AUDIO_KEYS}), \
            pytest.raises(AudioPlaceholderError, match=r"^row 6 of the batch"):
        trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, out["completion_ids"].shape[1], batch_size=3)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_loss_batch_without_audio_features_stops(tmp_path, family) -> None:
    trainer = make_trainer(family, tmp_path, rows=2)
    out = _rollout(trainer)
    for key in AUDIO_KEYS:
        del out[key]
    with pytest.raises(MissingAudioError, match="input_features"):
        trainer._compute_loss(trainer.model, out)


def test_a_log_prob_pass_outside_an_audio_context_stops(tmp_path) -> None:
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2)
    out = _rollout(trainer)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with torch.no_grad(), pytest.raises(MissingAudioError):
        trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, out["completion_ids"].shape[1])


def test_stock_trl_behaviour_stays_available_for_the_comparison_tests(tmp_path) -> None:
    """forward_audio_in_loss=False (tests only) is the one text-only path, on purpose."""
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2, forward_audio_in_loss=False)
    out = _rollout(trainer)
    assert torch.isfinite(trainer._compute_loss(trainer.model, out))


# -- Qwen2.5-Omni's vision tower -------------------------------------------------------------

def test_omni_vision_tower_is_frozen_and_gets_no_optimizer_state(tmp_path) -> None:
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2)
    model = trainer.accelerator.unwrap_model(trainer.model)
    visual = dict(model.model.visual.named_parameters())
    assert visual and not any(p.requires_grad for p in visual.values())
    others = [p for n, p in model.named_parameters() if ".visual." not in f".{n}"]
    assert all(p.requires_grad for p in others)  # nothing else frozen (freeze_audio_encoder off)
    optimizer = trainer.create_optimizer()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in visual.values()}
    assert {id(p) for p in others} <= in_optimizer


def test_omni_lora_adapters_stay_out_of_the_vision_tower(tmp_path) -> None:
    from peft import LoraConfig

    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2,
                           peft_config=LoraConfig(r=4, target_modules="all-linear"))
    names = [n for n, _ in trainer.model.named_parameters() if "lora_" in n]
    assert names and not [n for n in names if ".visual." in n]


def test_real_omni_vision_tower_size(model_configs: Path) -> None:
    """The parameters the freeze takes out of gradients and optimizer states (meta device)."""
    from transformers import AutoConfig, Qwen2_5OmniThinkerForConditionalGeneration

    from local.train.guards import freeze_vision_tower

    config = AutoConfig.from_pretrained(model_configs / "Qwen2.5-Omni-7B")
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config.thinker_config)
    assert freeze_vision_tower(model) == 676_550_144


# -- gradient checkpointing --------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_audio_encoder_gets_its_gradient_with_gradient_checkpointing(tmp_path, family) -> None:
    trainer = make_trainer(family, tmp_path, reward=length_reward, beta=0.04, max_steps=1,
                           gradient_checkpointing=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    grads: dict[str, float] = {}
    hooks = [p.register_post_accumulate_grad_hook(
        lambda p, name=name: grads.__setitem__(name, float(p.grad.abs().sum())))
        for name, p in model.named_parameters() if "audio_tower." in name]
    try:
        trainer.train()
    finally:
        for hook in hooks:
            hook.remove()
    assert model.is_activation_checkpointing  # gradient_checkpointing: its 5.x name
    tower = model.get_submodule("model.audio_tower")
    assert all(layer.gradient_checkpointing for layer in tower.layers)  # the encoder recomputes
    assert trainer.state.global_step == 1
    # Every weight the encoder uses on audio (convolutions, transformer layers) got a gradient.
    used = {n for n, _ in model.named_parameters()
            if "audio_tower." in n and ("conv" in n or ".layers." in n)}
    assert used and not [n for n in used if grads.get(n, 0.0) == 0.0]
