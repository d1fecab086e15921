"""AudioGRPOTrainer against the reference recipe (WeST's GRPO example): stop ids, KL gradient,
sampling settings.

- Rollouts stop at either stop token (`local.core.special_tokens.STOP_TOKENS`) even with the real
  Qwen2.5-Omni generation_config.json, which declares no eos id (the tiny fixtures list both).
- The loss gradient is the reference recipe's per-token ``-(A * ratio - beta * k3)``, averaged
  over each completion's tokens, then over completions: no importance weight on the KL term.
- Rollouts sample as the reference's GenerationConfig resolves in generate(): top-k 50.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from local.core.collate import AUDIO_KEYS
from local.core.models import load_model_and_processor
from local.core.special_tokens import STOP_TOKENS, token_ids
from local.train.trainer import AudioGRPOTrainer
from tests.helpers import OFFICIAL_DIR, REPO, tiny_checkpoint
from tests.helpers_train import make_trainer, small_config, synthetic_rows, vowel_reward

G = 4


def _rollout(trainer: AudioGRPOTrainer, prompts: int = 2) -> dict:
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); called directly here
    rows = [trainer.train_dataset[i // G] for i in range(prompts * G)]  # as the sampler yields
    return trainer._generate_and_score_completions(rows)


def test_rollouts_stop_at_endoftext_with_the_real_omni_generation_config(
        tmp_path: Path, model_configs: Path) -> None:
    family = "qwen2_5_omni"
    checkpoint = tmp_path / "tiny-omni-real-generation-config"
    shutil.copytree(tiny_checkpoint(family), checkpoint)
    shutil.copy(model_configs / OFFICIAL_DIR[family] / "generation_config.json", checkpoint)
    loaded = load_model_and_processor(str(checkpoint), dtype="float32")
    tokenizer = loaded.processor.tokenizer
    im_end, endoftext = token_ids(tokenizer, STOP_TOKENS)
    declared = loaded.model.generation_config.eos_token_id
    assert endoftext not in (declared if isinstance(declared, list) else [declared])  # the trap

    trainer = AudioGRPOTrainer(
        model=loaded.model, processing_class=loaded.processor, family=loaded.family,
        reward_funcs=[vowel_reward], args=small_config(tmp_path / "run", beta=0.0),
        train_dataset=synthetic_rows(2))
    assert {im_end, endoftext} <= set(trainer.eos_token_ids)
    # A policy that emits <|endoftext|> first: each completion is that one token, nothing after.
    trainer.model.lm_head.register_forward_hook(
        lambda module, args, logits: logits.index_fill(-1, torch.tensor([endoftext]), 1e4))
    out = _rollout(trainer)
    assert (out["completion_ids"][:, 0] == endoftext).all()
    assert out["completion_mask"].sum(dim=1).tolist() == [1] * 2 * G


def _logps(trainer: AudioGRPOTrainer, out: dict) -> torch.Tensor:
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with trainer._audio_for_logps({k: out[k] for k in AUDIO_KEYS}):
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, out["completion_ids"].shape[1])
    return logps


def _gradient(trainer: AudioGRPOTrainer, loss: torch.Tensor) -> torch.Tensor:
    trainer.model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])


@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni"])
def test_loss_gradient_is_the_reference_recipes_formula(tmp_path: Path, family: str) -> None:
    """Policy nudged off the reference: TRL's loss gradient with the recipe's defaults equals the
    gradient of -(A * ratio - beta * k3), k3 = exp(ref - logp) - (ref - logp) - 1, ratio =
    exp(logp - logp.detach()), token mean per completion then mean over completions."""
    beta = 0.04
    trainer = make_trainer(family, tmp_path, rows=2, beta=beta)
    torch.manual_seed(0)
    out = _rollout(trainer)
    with torch.no_grad():  # nudge the policy off the reference
        for parameter in trainer.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    out["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.3, -0.3, 0.0, 0.0])
    trl = _gradient(trainer, trainer._compute_loss(trainer.model, out))

    mask = out["completion_mask"].float()
    advantages, ref = out["advantages"].unsqueeze(1), out["ref_per_token_logps"]

    def formula(kl_weight_is_ratio: bool) -> torch.Tensor:
        logps = _logps(trainer, out)
        ratio = torch.exp(logps - logps.detach())
        k3 = torch.exp(ref - logps) - (ref - logps) - 1
        kl = k3 * ratio if kl_weight_is_ratio else k3
        per_token = -(advantages * ratio - beta * kl)
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean(), (k3 * mask).sum()

    loss, k3_sum = formula(kl_weight_is_ratio=False)
    assert k3_sum / mask.sum() > 0.005  # the policy is off the reference: the KL term matters
    reference = _gradient(trainer, loss)
    torch.testing.assert_close(trl, reference, rtol=1e-4, atol=1e-6)
    # Teeth: TRL's use_bias_correction_kl (its own default) gives a different gradient.
    corrected = _gradient(trainer, formula(kl_weight_is_ratio=True)[0])
    assert (corrected - reference).norm() > 1e-3 * reference.norm()


def test_trl_scores_completions_at_the_sampling_temperature(tmp_path: Path) -> None:
    """A documented difference from the reference recipe (README): TRL 1.16 computes every
    log-prob as log_softmax(logits / T), T the sampling temperature; R1-AQA used raw logits. If a
    TRL upgrade changes this, README's table must change with it."""
    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2, beta=0.04, temperature=0.7)
    out = _rollout(trainer)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    keep, tokens = out["completion_ids"].shape[1], out["completion_ids"][..., None]
    with torch.no_grad():
        logits = trainer.ref_model(input_ids=ids, attention_mask=mask,
                                   **{k: out[k] for k in AUDIO_KEYS}).logits[:, -keep - 1:-1]
    valid = out["completion_mask"].bool()
    at_t = torch.log_softmax(logits / 0.7, -1).gather(-1, tokens)[..., 0]
    raw = torch.log_softmax(logits, -1).gather(-1, tokens)[..., 0]
    torch.testing.assert_close(out["ref_per_token_logps"][valid], at_t[valid], rtol=0, atol=1e-4)
    assert (out["ref_per_token_logps"] - raw)[valid].abs().mean() > 1e-2


SAMPLING = ("do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty")


def test_rollouts_sample_with_the_reference_recipes_top_k(tmp_path: Path,
                                                          model_configs: Path) -> None:
    """WeST (west/trainer/grpo_trainer.py, GRPOTrainer.__init__; github.com/yuekaizhang/west
    65edd9d, "Support GRPO Training Recipe for Speech LLM") samples with
    GenerationConfig(max_new_tokens, do_sample=True, temperature, num_return_sequences,
    pad_token_id): generate() fills the rest, top-k 50 for Qwen2.5-Omni (its
    generation_config.json is empty). conf/grpo.yaml's rollouts resolve to the same settings."""
    from transformers import GenerationConfig

    from local.train.config import parse_args

    family = "qwen2_5_omni"
    checkpoint = tmp_path / "tiny-omni-real-generation-config"
    shutil.copytree(tiny_checkpoint(family), checkpoint)
    shutil.copy(model_configs / OFFICIAL_DIR[family] / "generation_config.json", checkpoint)
    loaded = load_model_and_processor(str(checkpoint), dtype="float32")
    west = GenerationConfig(max_new_tokens=1024, do_sample=True, temperature=0.7,
                            num_return_sequences=4,
                            pad_token_id=loaded.processor.tokenizer.pad_token_id)
    reference, _ = loaded.model._prepare_generation_config(west)
    assert reference.top_k == 50  # transformers' default, as in 4.52-4.57 (GenerationConfig())

    conf, _ = parse_args(["--config", str(REPO / "conf/grpo.yaml"),
                          "--output_dir", str(tmp_path / "run"), "--use_cpu", "true"])
    trainer = AudioGRPOTrainer(
        model=loaded.model, processing_class=loaded.processor, family=loaded.family,
        reward_funcs=[vowel_reward], train_dataset=synthetic_rows(2),
        args=small_config(tmp_path / "run", temperature=conf.temperature, top_k=conf.top_k,
                          top_p=conf.top_p, repetition_penalty=conf.repetition_penalty))
    ours, _ = loaded.model._prepare_generation_config(trainer.generation_config)
    assert {k: getattr(ours, k) for k in SAMPLING} == {k: getattr(reference, k) for k in SAMPLING}
    assert trainer.top_k == 50  # what TRL hands vLLM's SamplingParams too
