"""Qwen3-Omni (MoE thinker) LoRA: the family's targets, the router, the load-balancing loss.

- `--use_peft` without targets takes the family's (`ModelFamily.lora_target_modules` /
  `lora_target_parameters` / `lora_exclude_modules`): LoRA on the text layers' attention and on
  the fused experts (PEFT ParamWrapper), none in the audio or vision tower; the other families
  keep PEFT's own rule (it refuses: no default targets for their model types).
- The router (`mlp.gate`) is frozen by default (`freeze_router`); TRL 1.16 adds the router's
  load-balancing loss to GRPO's loss only while the router trains (the recipe turns it off with
  the router frozen, unless `router_aux_loss_coef` is given).
- A LoRA run through train.py saves an adapter whose merge (the loader's, and
  `local.train.lora_merge.merged_state`) gives the adapter's logits.
- Slow: 2 CPU processes (gloo) under DeepSpeed ZeRO-1 and ZeRO-3, LoRA and full fine-tuning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from trl import ModelConfig

import train
from local.core.families import family_named
from local.core.models import load_model_and_processor
from local.core.rewards import REWARDS
from local.train.config import parse_args
from local.train.lora_merge import merged_state
from local.train.plan import plan_from_args
from local.train.plan_model import AUDIO, LANGUAGE, VISION, adapter_counts, model_shape
from tests.helpers import REPO, tiny_checkpoint
from tests.helpers_train import (
    length_reward,
    small_config,
    synthetic_rows,
    train_argv,
    vowel_reward,
)

FAMILY = "qwen3_omni_moe"
LORA = dict(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
# LoRA parameter names PEFT gives the family's targets (peft 0.21.2: the nested ParamWrappers
# of the fused experts are `experts.base_layer.lora_*` and `experts.lora_*`)
ADAPTED = re.compile(r"model\.language_model\.layers\.[01]\.(self_attn\.[qkvo]_proj|"
                     r"mlp\.experts(\.base_layer)?)\.lora_[AB]\.default\.weight")


def _trainer(tmp_path: Path, model_args: ModelConfig, **overrides: object):
    config = small_config(tmp_path / "run", **{"beta": 0.04, "max_steps": 1, **overrides})
    loaded = load_model_and_processor(str(tiny_checkpoint(FAMILY)), dtype="float32")
    return train.build_trainer(config, model_args, loaded, synthetic_rows(2))


def _trainable(model: torch.nn.Module) -> list[str]:
    return [n.removeprefix("base_model.model.") for n, p in model.named_parameters()
            if p.requires_grad]


def test_family_targets_adapt_text_attention_and_experts_only(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO):
        trainer = _trainer(tmp_path, ModelConfig(**LORA))
    trainable = _trainable(trainer.model)
    assert trainable and all(ADAPTED.fullmatch(n) for n in trainable), trainable
    # 2 layers x (4 attention projections + 2 expert tensors) x (A, B)
    assert len(trainable) == 2 * 6 * 2
    names = [n for n, _ in trainer.model.named_parameters()]
    assert not [n for n in names if "lora_" in n and ("audio_tower" in n or "visual" in n)]
    assert not [n for n, p in trainer.model.named_parameters() if ".mlp.gate." in n
                and p.requires_grad]
    assert "LoRA targets of qwen3_omni_moe" in caplog.text
    assert trainer.router_aux_loss_coef == 0.0 and not trainer.aux_loss_enabled  # router frozen


def test_family_lora_trains_the_same_with_gradient_checkpointing(tmp_path, monkeypatch) -> None:
    """Every adapter tensor (experts' ParamWrapper included) moves, and gradient checkpointing
    (conf/grpo.yaml's setting) gives the same gradients."""
    monkeypatch.setattr(train, "resolve_rewards", lambda config: [vowel_reward])  # has spread
    norms = []
    for checkpointing in ("true", "false"):
        trainer = _trainer(tmp_path / checkpointing, ModelConfig(**LORA), max_steps=2,
                           gradient_checkpointing=checkpointing)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
                  if p.requires_grad}
        trainer.train()
        assert all(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters()
                   if n in before)
        norms.append([e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e])
    assert norms[0] == pytest.approx(norms[1])


def test_explicit_targets_win_over_the_family_targets(tmp_path) -> None:
    trainer = _trainer(tmp_path, ModelConfig(**LORA, lora_target_modules=["q_proj", "v_proj"]))
    trainable = _trainable(trainer.model)
    assert trainable and all(re.search(r"\.(q|v)_proj\.lora_", n) for n in trainable)
    assert any("audio_tower" in n for n in trainable)  # as given: PEFT's name match, encoder too


def test_family_targets_with_dropout_stop_before_loading(tmp_path, monkeypatch) -> None:
    """TRL's default lora_dropout (0.05) cannot go with the experts' LoRA: one line naming the
    key, before the weights load."""
    monkeypatch.setitem(REWARDS, "length", length_reward)
    monkeypatch.setattr(train, "load_model_and_processor", None)  # never reached
    with pytest.raises(SystemExit) as stop:
        train.main([*train_argv(FAMILY, tmp_path / "run", 1), "--use_peft", "true"])
    message = str(stop.value)
    assert message.startswith("train.py: use_peft: the LoRA targets of qwen3_omni_moe include")
    assert "(lora_dropout, " in message and "give --lora_dropout 0" in message
    assert "\n" not in message


@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni"])
def test_other_families_keep_peft_rule(family: str) -> None:
    """Their targets are stated (the planner's suggestion) but not applied: PEFT refuses a
    config without targets for their model types, as before."""
    model_args = ModelConfig(**LORA)
    assert train.family_lora_targets(model_args, family_named(family)) is None
    assert model_args.lora_target_modules is None and model_args.lora_target_parameters is None
    assert family_named(family).lora_target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")


def test_planner_counts_the_family_targets(tmp_path) -> None:
    """The memory plan's adapter count (local/train/plan_model.py) equals PEFT's, experts
    included, for --use_peft without targets."""
    shape = model_shape(str(tiny_checkpoint(FAMILY)))
    counts = adapter_counts(shape, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0))
    trainer = _trainer(tmp_path, ModelConfig(**LORA))
    real = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    assert counts == {AUDIO: 0, VISION: 0, LANGUAGE: real}
    experts = adapter_counts(shape, LoraConfig(r=4, target_parameters=["mlp.experts.down_proj"],
                                               lora_dropout=0.0))
    assert experts[LANGUAGE] == 2 * 4 * 4 * (64 + 32)  # layers x r x experts x (in + out)
    plan = plan_from_args(["--model", str(tiny_checkpoint(FAMILY)), "--config",
                           str(REPO / "conf/grpo.yaml"), "--deepspeed", "conf/ds_zero1.json",
                           "--nproc", "8", "--nnodes", "1", "--gpu_memory_gb", "80",
                           "--use_peft", "true", "--lora_r", "4", "--lora_dropout", "0"])
    assert plan.estimate.trained == {AUDIO: 0, VISION: 0, LANGUAGE: real}


def test_full_finetuning_freezes_the_router_by_default(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO):
        trainer = _trainer(tmp_path, ModelConfig())
    gates = {n: p for n, p in trainer.model.named_parameters() if n.endswith("mlp.gate.weight")}
    assert len(gates) == 2 and not any(p.requires_grad for p in gates.values())
    assert any(p.requires_grad for n, p in trainer.model.named_parameters() if "experts" in n)
    assert "router frozen" in caplog.text
    assert not trainer.aux_loss_enabled


def test_trainable_router_trains_with_the_load_balancing_loss(tmp_path) -> None:
    """freeze_router false: the router learns and TRL adds coef * aux_loss (the model config's
    coefficient, 0.001) to the loss, logged as `aux_loss`."""
    trainer = _trainer(tmp_path, ModelConfig(), freeze_router="false", max_steps=2,
                       learning_rate=1e-2)
    assert trainer.aux_loss_enabled and trainer.router_aux_loss_coef == pytest.approx(0.001)
    gates = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
             if n.endswith("mlp.gate.weight")}
    trainer.train()
    assert any(not torch.equal(p, gates[n]) for n, p in trainer.model.named_parameters()
               if n in gates)
    logged = [e for e in trainer.state.log_history if "aux_loss" in e]
    assert logged and all(e["aux_loss"] > 0 for e in logged)


def test_trainable_router_without_balance_loss_warns(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        trainer = _trainer(tmp_path, ModelConfig(), freeze_router="false",
                           router_aux_loss_coef=0.0)
    assert not trainer.aux_loss_enabled
    assert "router trains without its load-balancing loss" in caplog.text


def test_frozen_router_with_router_adapters_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="freeze_router"):
        _trainer(tmp_path, ModelConfig(**LORA, lora_target_modules=["q_proj", "gate"]))


def test_parameter_targets_in_a_frozen_encoder_are_refused(tmp_path) -> None:
    """PEFT's exclude_modules does not reach target_parameters (peft 0.21.2,
    BaseTuner._inject_parameters), so freeze_audio_encoder's exclusion cannot keep a parameter
    target out of the encoder; the encoder guard sees the ParamWrapper and refuses."""
    with pytest.raises(ValueError, match="audio encoder holds PEFT adapters"):
        _trainer(tmp_path, ModelConfig(**LORA, lora_target_modules=["q_proj", "o_proj"],
                                       lora_target_parameters=["fc1.weight"]),
                 freeze_audio_encoder="true")


def test_merged_state_of_expert_lora_in_bf16_is_peft_merge_without_writing() -> None:
    """bf16, as trained on a GPU: the experts' merged tensors equal peft's own merge (its delta
    rounded to bf16, one rounded sum), and the model's weights are not written."""
    model = load_model_and_processor(str(tiny_checkpoint(FAMILY)), dtype="bfloat16").model
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                        target_modules=list(family_named(FAMILY).lora_target_modules),
                        target_parameters=list(family_named(FAMILY).lora_target_parameters),
                        exclude_modules=r".*(audio_tower|visual).*")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    sent = dict(merged_state(peft_model))
    assert all(torch.equal(p, before[n]) for n, p in peft_model.named_parameters())
    merged = peft_model.merge_and_unload().state_dict()
    experts = [k for k in sent if ".mlp.experts." in k]
    assert len(experts) == 4 and all(sent[k].dtype == torch.bfloat16 for k in experts)
    assert all(torch.equal(sent[k], merged[k]) for k in experts)


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_lora_run_saves_an_adapter_that_merges_to_its_logits(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(REWARDS, "length", length_reward)
    out = tmp_path / "run"
    train.main([*train_argv(FAMILY, out, max_steps=2), "--use_peft", "true", "--lora_r", "4",
                "--lora_alpha", "8", "--lora_dropout", "0.0"])
    checkpoint = out / "checkpoint-2"
    adapter = json.loads((checkpoint / "adapter_config.json").read_text())
    assert sorted(adapter["target_parameters"]) == ["mlp.experts.down_proj",
                                                    "mlp.experts.gate_up_proj"]

    base = load_model_and_processor(str(tiny_checkpoint(FAMILY)), dtype="float32")
    peft_model = PeftModel.from_pretrained(base.model, str(checkpoint)).eval()
    experts_b = [p for n, p in peft_model.named_parameters() if "experts" in n and "lora_B" in n]
    assert len(experts_b) == 4 and all(p.abs().sum() > 0 for p in experts_b)  # trained (init 0)
    batch = {"input_ids": torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29]]),
             "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    adapted = _logits(peft_model, batch)
    with peft_model.disable_adapter():
        assert not torch.allclose(_logits(peft_model, batch), adapted)

    state = dict(merged_state(peft_model))  # the vLLM sync's merge: base names, no lora_
    fresh = load_model_and_processor(str(tiny_checkpoint(FAMILY)), dtype="float32").model
    assert state.keys() == dict(fresh.named_parameters()).keys()
    fresh.load_state_dict(state, strict=False)
    torch.testing.assert_close(_logits(fresh.eval(), batch), adapted, rtol=0, atol=1e-5)

    merged = load_model_and_processor(str(checkpoint), dtype="float32")  # the loader's merge
    assert type(merged.model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    torch.testing.assert_close(_logits(merged.model.eval(), batch), adapted, rtol=0, atol=1e-5)


# -- 2 processes, DeepSpeed ZeRO-1 / ZeRO-3 (slow) ------------------------------------------

def _tensor_names(folder: Path) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return set(weights.keys())


def _env() -> dict[str, str]:
    return {**os.environ, "VIRTUAL_ENV": sys.prefix, "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1"}


# ZeRO-3 full fine-tuning once saved `thinker.model.thinker.*` keys that the loader
# re-initialised: transformers 5.24's ZeRO-3 loader kept its whole weight-conversion table, and
# save_pretrained reversed every entry. local.core.models.keep_used_weight_conversions keeps the
# used ones, as the usual loader does; the zero3-full case below checks the saved names.


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("deepspeed,lora,port", [
    ("conf/ds_zero1.json", True, 29651), ("conf/ds_zero3.json", True, 29653),
    ("conf/ds_zero1.json", False, 29655),
    ("conf/ds_zero3.json", False, 29657)],
    ids=["zero1-lora", "zero3-lora", "zero1-full", "zero3-full"])
def test_two_process_deepspeed_run(tmp_path, deepspeed: str, lora: bool, port: int) -> None:
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(port), "tests/train_entry.py", *train_argv(FAMILY, out, 2),
            "--deepspeed", deepspeed, "--ddp_backend", "gloo"]
    if lora:
        argv += ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8",
                 "--lora_dropout", "0.0"]
    result = subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=540)
    assert result.returncode == 0, result.stderr[-4000:]
    final = out / "checkpoint-2"
    if lora:
        assert (final / "adapter_config.json").exists()
    else:
        # DeepSpeed's own states (fp32, gathered by its zero_to_fp32; ZeRO-1 keeps only the
        # trained parameters, ZeRO-3 the frozen ones too): the router and the vision tower
        # stayed as loaded, the rest trained
        states = get_fp32_state_dict_from_zero_checkpoint(str(final))
        start = load_model_and_processor(str(tiny_checkpoint(FAMILY)), dtype="float32")
        initial = start.model.state_dict()
        frozen = [k for k in initial if ".mlp.gate." in k or k.startswith("model.visual.")]
        assert all(torch.equal(states[k].float(), initial[k]) for k in frozen if k in states)
        assert any(not torch.equal(v.float(), initial[k]) for k, v in states.items())
        # the thinker's own layout, as the tiny checkpoint (and a one-process save) has it
        assert _tensor_names(final) == _tensor_names(tiny_checkpoint(FAMILY))
    loaded = load_model_and_processor(str(final), dtype="float32")
    initial = load_model_and_processor(str(tiny_checkpoint(FAMILY)), dtype="float32")
    saved, start = loaded.model.state_dict(), initial.model.state_dict()
    assert saved.keys() == start.keys()
    for key, value in saved.items():
        assert value.shape == start[key].shape and torch.isfinite(value).all(), key
    moved = [k for k in start if not torch.equal(saved[k], start[k])]
    frozen = [k for k in moved if ".mlp.gate." in k or "visual." in k]
    assert moved and not frozen, frozen  # the router and the vision tower stayed frozen


# -- the shipped recipe: conf/qwen3_omni_lora.yaml -----------------------------------------

def test_the_recipe_config_reads_as_a_lora_run_with_frozen_routers() -> None:
    grpo, model = parse_args(["--config", str(REPO / "conf/qwen3_omni_lora.yaml"),
                              "--output_dir", "unused", "--bf16", "false", "--use_cpu", "true"])
    assert model.model_name_or_path == "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    assert model.use_peft and model.lora_dropout == 0.0 and model.lora_r == 8
    assert not model.lora_target_modules and not model.lora_target_parameters  # the family's
    assert grpo.freeze_router and grpo.beta == 0.04 and grpo.num_generations == 4


@pytest.mark.slow
def test_the_recipe_config_trains_the_tiny_moe_thinker(tmp_path, monkeypatch) -> None:
    """conf/qwen3_omni_lora.yaml as shipped (only the model, data and size made tiny): one step,
    the family's adapters saved, the routers untouched."""
    monkeypatch.setitem(REWARDS, "length", length_reward)
    out = tmp_path / "run"
    argv = train_argv(FAMILY, out, max_steps=1)
    argv[argv.index("--config") + 1] = str(REPO / "conf/qwen3_omni_lora.yaml")
    train.main([*argv, "--bf16", "false", "--use_cpu", "true", "--model_dtype", "float32",
                "--gradient_accumulation_steps", "1"])
    adapter = json.loads((out / "checkpoint-1" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and sorted(adapter["target_parameters"]) == [
        "mlp.experts.down_proj", "mlp.experts.gate_up_proj"]
    assert not any(t == "gate" or t.endswith(".gate") for t in adapter["target_modules"])
