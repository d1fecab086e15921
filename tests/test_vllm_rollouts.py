"""GRPO rollouts with vLLM carry each row's audio and the policy's current weights (marked vllm).

They run in the vLLM environment and are skipped where vllm does not import (the default one):

    $ bash run.sh --stage test --vllm true --test_args "-m vllm"

The measure is TRL's own: with `vllm_importance_sampling_correction` the trainer recomputes the
log-probs of vLLM's sampled tokens with the HF policy (each row with its own audio, through the
recipe's log-prob passes) and logs `sampling/sampling_logp_difference/mean`. In float32 it is
~7e-4 when vLLM heard the same clip with the same weights, and several times that when vLLM got
another row's clip or silence (measured: Qwen2-Audio 30x and 54x, Qwen2.5-Omni 9x and 7x; these
random models barely listen), or stale weights (the controls below show each).
One colocated engine per family (tiny checkpoints, text head_dim 32 as vLLM's CPU attention
needs), in this process, 1 GiB of KV cache. The real vocabulary, because vLLM samples with the
placeholder tokens suppressed (logit_bias) and TRL's HF pass does not suppress: each vLLM
log-prob is higher by -log(1 - p(placeholders)), ~8/512 = 0.016 with the tiny vocabulary's
near-uniform start, ~5e-5 with the real one (measured: 0.0152 with the tiny vocabulary).

LoRA in bf16 (issue 20): TRL merges the adapters into the base and unmerges them at each sync,
in place, which drifts the frozen base (the KL reference); the recipe merges out of place
(`local.train.lora_merge`), checked here over 50 syncs on both families through the engine.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import trl.generation.vllm_generation as trl_vllm
import trl.trainer.grpo_trainer as trl_grpo
from peft import LoraConfig
from peft.tuners.lora.layer import Linear as LoraLinear
from trl.generation.vllm_generation import VLLMGeneration

from local.core.models import load_model_and_processor
from local.core.vllm_export import vllm_weight_name
from local.train.trainer import AudioGRPOTrainer
from tests.helpers import REPO, tiny_checkpoint
from tests.helpers_train import IdRecorder, demo_data_small, small_config, synthetic_rows

pytestmark = pytest.mark.vllm
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; else a share of host RAM
vllm = pytest.importorskip("vllm", reason="vLLM is not installed (run.sh --vllm true builds it)")

DIFF = "sampling/sampling_logp_difference/mean"
SAME = 0.002    # vLLM and HF agree: same clip, same weights (measured 0.0006-0.0008, float32)
APART = 4.0     # each control is at least this many times the agreeing rollout's difference


@pytest.fixture(scope="module", params=[("qwen2_audio", False), ("qwen2_5_omni", True)],
                ids=["qwen2_audio", "qwen2_5_omni-lora"])
def trainer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[AudioGRPOTrainer]:
    """A trainer with colocated vLLM rollouts; Omni trains LoRA adapters (TRL merges them into
    the weights it syncs, which then go through the recipe's name map)."""
    family, lora = request.param
    checkpoint = tiny_checkpoint(family, vocab="real", text_head_dim=32)
    loaded = load_model_and_processor(str(checkpoint), dtype="float32")
    out = tmp_path_factory.mktemp(f"vllm-rollouts-{family}")
    # top_k 0: vLLM returns log-probs of the top-k-renormalised distribution and the policy pass
    # scores the whole vocabulary, so at top-k 50 (the recipe's default) a random tiny model's
    # near-uniform 152k-way distribution alone puts ~log(152k / 50) = 8 nats between them; the
    # measured gap must be the audio's and the weights' (README, differences table: top-k).
    config = small_config(out, use_vllm="true", vllm_mode="colocate", max_steps=2,
                          max_completion_length=8, seed=0, top_k=0,
                          learning_rate=1e-2 if lora else 1e-3)
    peft = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                      lora_dropout=0.0) if lora else None
    trainer = AudioGRPOTrainer(model=loaded.model, processing_class=loaded.processor,
                               family=loaded.family, reward_funcs=[IdRecorder()], args=config,
                               train_dataset=synthetic_rows(4), peft_config=peft)
    # TRL's own classes are back once the trainer is built (the swap lasts the construction).
    assert trl_grpo.VLLMGeneration is VLLMGeneration and trl_vllm.LLM is vllm.LLM
    yield trainer
    del trainer
    gc.collect()


def _rows(trainer: AudioGRPOTrainer) -> list[dict[str, Any]]:
    """2 prompts x G=4, as TRL's sampler yields them."""
    return [trainer.train_dataset[i // 4] for i in range(8)]


def _difference(trainer: AudioGRPOTrainer) -> float:
    """The last rollout's mean |log p_HF - log p_vLLM| over the sampled tokens."""
    return float(trainer._metrics["train"][DIFF][-1])


def _rollout(trainer: AudioGRPOTrainer, clips_for_vllm: Any = None) -> float:
    """One rollout of `_rows`; `clips_for_vllm(clips)` changes only what vLLM is sent."""
    generation = trainer.vllm_generation
    if clips_for_vllm is None:
        trainer._generate_and_score_completions(_rows(trainer))
        return _difference(trainer)
    stock = generation.generate

    def generate(prompts: Any, *args: Any, **kwargs: Any) -> Any:
        generation.clips = clips_for_vllm(list(generation.clips))
        return stock(prompts, *args, **kwargs)

    generation.generate = generate
    try:
        trainer._generate_and_score_completions(_rows(trainer))
    finally:
        del generation.generate
    return _difference(trainer)


def test_rollouts_hear_each_rows_own_audio(trainer: AudioGRPOTrainer) -> None:
    """vLLM's rollout log-probs equal the HF policy's with each row's own clip; swapping the
    two prompts' clips, or sending silence, changes them (so the audio reaches vLLM, row by
    row), and the check fails."""
    trainer.model.train()
    own = _rollout(trainer)
    swapped = _rollout(trainer, lambda clips: clips[4:] + clips[:4])
    silent = _rollout(trainer, lambda clips: [np.zeros_like(c) for c in clips])
    assert own < SAME and min(swapped, silent) > APART * own, (own, swapped, silent)
    assert trainer.vllm_generation.syncs == 1  # weights pushed once, before the first rollout


def test_weights_are_synced_after_each_optimizer_step(trainer: AudioGRPOTrainer) -> None:
    """Two optimizer steps: each rollout's vLLM log-probs equal the updated policy's. Then the
    policy has moved once more since the last sync: a rollout without the sync disagrees, one
    with it agrees again."""
    recorder = trainer.reward_funcs[0]
    recorder.seen.clear()
    trainer._metrics["train"].clear()  # the controls' rollouts above are not this run's
    trainer.train()
    logged = [entry[DIFF] for entry in trainer.state.log_history if DIFF in entry]
    assert len(logged) == 2 and max(logged) < SAME, logged
    assert trainer.vllm_generation.syncs == trainer.state.global_step == 2  # at steps 0 and 1
    # TRL's repeated prompts reach the reward row-aligned: each id G times in a row.
    for ids in recorder.seen:
        assert ids == [ids[i - i % 4] for i in range(len(ids))] and len(set(ids)) == len(ids) // 4

    trainer._last_loaded_step = trainer.state.global_step  # as if synced: vLLM keeps step-1 weights
    stale = _rollout(trainer)
    trainer._last_loaded_step = -1                          # the trainer's own path: sync first
    fresh = _rollout(trainer)
    assert fresh < SAME and stale > APART * fresh, (stale, fresh)


def _tee_reloads(generation: Any) -> list[dict[str, torch.Tensor]]:
    """What each sync hands vLLM's `reload_weights`: {vLLM name: a copy of the tensor}, the
    first sync's and the latest one's kept."""
    syncs: list[dict[str, torch.Tensor]] = []
    rpc = generation.llm.collective_rpc

    def collective_rpc(method: str, *args: Any, kwargs: dict | None = None, **rest: Any) -> Any:
        if method == "reload_weights":
            got: dict[str, torch.Tensor] = {}
            syncs[min(len(syncs), 1):] = [got]  # [first] + [latest]

            def tee(weights: Any) -> Iterator[tuple[str, torch.Tensor]]:
                for name, tensor in weights:
                    got[name] = tensor.detach().clone()
                    yield name, tensor

            kwargs = {**(kwargs or {}), "weights_iterator": tee(kwargs["weights_iterator"])}
        return rpc(method, *args, kwargs=kwargs, **rest)

    generation.llm.collective_rpc = collective_rpc
    return syncs


@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni"])
def test_lora_syncs_leave_the_bf16_base_bit_identical(family: str, tmp_path: Path) -> None:
    """A bf16 policy with LoRA (q/v, encoder included; B random, as if trained) synced 50
    times through the trainer's `sync_weights`: every parameter is bit-identical to before
    (TRL's in-place merge/unmerge would move the base), and each sync hands vLLM, for every
    adapted Linear, (W.float() + s * B@A).to(bf16): the fp32 merge rounded once."""
    checkpoint = tiny_checkpoint(family, vocab="real", text_head_dim=32)
    loaded = load_model_and_processor(str(checkpoint), dtype="bfloat16")
    config = small_config(tmp_path, use_vllm="true", vllm_mode="colocate", max_steps=1,
                          model_dtype="bfloat16", seed=0)
    peft = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = AudioGRPOTrainer(model=loaded.model, processing_class=loaded.processor,
                               family=loaded.family, reward_funcs=[IdRecorder()], args=config,
                               train_dataset=synthetic_rows(2), peft_config=peft)
    try:
        model, generation = trainer.model, trainer.vllm_generation
        layers = {vllm_weight_name(family, f"{n.removeprefix('base_model.model.')}.weight"): m
                  for n, m in model.named_modules() if isinstance(m, LoraLinear)}
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for layer in layers.values():
                weight = layer.lora_B["default"].weight
                weight.copy_(0.05 * torch.randn(weight.shape, generator=generator))
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        assert layers and {m.get_base_layer().weight.dtype for m in layers.values()} \
            == {torch.bfloat16}
        received = _tee_reloads(generation)
        for _ in range(50):
            generation.sync_weights()
        moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
        assert not moved, f"{len(moved)} parameters moved, e.g. {moved[:3]}"
        first, last = received
        assert first.keys() == last.keys() and layers.keys() <= last.keys()
        assert all(torch.equal(first[n], last[n]) for n in last)  # every sync sends the same
        worst = 0.0
        for name, layer in layers.items():  # what was received, against the fp32 merge
            w, a, b = (m.weight.detach() for m in
                       (layer.get_base_layer(), layer.lora_A["default"], layer.lora_B["default"]))
            exact = w.float() + layer.scaling["default"] * (b.float() @ a.float())
            sent = last[name]
            assert sent.dtype == torch.bfloat16 and torch.equal(sent, exact.to(torch.bfloat16))
            error = (sent.float() - exact).abs()
            assert bool((error <= exact.abs() * 2.0 ** -8 + 1e-38).all()), name  # half an ulp
            assert not torch.equal(sent, w), name  # the adapters are in it
            worst = max(worst, float(error.max()))
        print(f"{family}: {len(layers)} merged weights, 50 syncs, base unchanged; "
              f"max |sent - fp32 merge| {worst:.3g}")
    finally:
        del trainer
        gc.collect()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_py_runs_with_vllm_rollouts(tmp_path: Path) -> None:
    """train.py with `use_vllm: true` (Qwen2-Audio; the demo's configuration, 2 steps): it
    completes, saves, and every step's vLLM rollouts agree with the HF policy's log-probs."""
    import subprocess
    import sys

    out = tmp_path / "run"
    argv = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "conf/demo.yaml"),
            "--model_name_or_path",
            str(tiny_checkpoint("qwen2_audio", vocab="real", text_head_dim=32)),
            "--train_data", str(demo_data_small() / "avqa"), "--output_dir", str(out),
            "--max_steps", "2", "--save_steps", "2", "--max_completion_length", "8",
            "--num_generations", "4", "--per_device_train_batch_size", "8",
            "--use_vllm", "true", "--report_to", "none"]
    # Not this process's rendezvous (its colocated engines hold MASTER_PORT): train.py's own.
    rendezvous = {"MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in rendezvous}
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=840,
                            env={**env, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [entry[DIFF] for entry in state["log_history"] if DIFF in entry]
    assert len(logged) == 2 and max(logged) < SAME, logged
