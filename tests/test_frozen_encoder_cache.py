"""Frozen audio encoder: one encoder pass per distinct clip per step, and the same loss.

With `freeze_audio_encoder: true` AudioGRPOTrainer caches each clip's encoder output for all G
completions, generation and every log-prob pass (local/train/audio_cache.py). These tests count the
encoder's real forward calls (a hook on its first convolution, independent of the cache's own
counters) and compare the reference log-probs, the loss and its gradient with the uncached path
on the same rollout: equal within 1e-5 (float32; only batching order differs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from local.core.collate import AUDIO_KEYS
from local.core.models import load_model_and_processor
from local.train.audio_cache import AudioEncoderCache, find_audio_tower
from local.train.trainer import AudioGRPOTrainer
from tests.helpers import tiny_checkpoint
from tests.helpers_train import small_config, synthetic_rows, vowel_reward

FAMILIES = ["qwen2_audio", "qwen2_5_omni"]
G = 4
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def frozen_trainer(family: str, out: Path, *, freeze: bool = True,
                   cache: bool | None = None) -> AudioGRPOTrainer:
    loaded = load_model_and_processor(str(tiny_checkpoint(family)), dtype="float32")
    return AudioGRPOTrainer(
        model=loaded.model, processing_class=loaded.processor, family=loaded.family,
        reward_funcs=[vowel_reward], args=small_config(out, beta=0.04, num_generations=G),
        train_dataset=synthetic_rows(2), cache_audio_embeddings=cache,
        freeze_audio_encoder=freeze)


class ConvCounter:
    """Counts real encoder forwards: calls of the tower's first convolution and rows it saw."""

    def __init__(self, tower: torch.nn.Module):
        self.calls = self.rows = 0
        tower.conv1.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: tuple, output: Any) -> None:
        self.calls += 1
        self.rows += args[0].shape[0]


def _loss_and_grad(trainer: AudioGRPOTrainer, out: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """The GRPO loss of a rollout and its gradient over every trainable parameter (flattened).
    (With ratio 1 and group-centred advantages the loss value is ~0; its gradient is not.)"""
    trainer.model.zero_grad()
    loss = trainer._compute_loss(trainer.model, out)
    loss.backward()
    params = [p for p in trainer.model.parameters() if p.grad is not None]
    return loss.detach(), torch.cat([p.grad.flatten() for p in params])


def _ref_logps(trainer: AudioGRPOTrainer, out: dict[str, Any]) -> torch.Tensor:
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with torch.no_grad(), trainer._audio_for_logps({k: out[k] for k in AUDIO_KEYS}), \
            trainer._encoder_cache():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.ref_model, ids, mask, out["completion_ids"].shape[1])
    return logps


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_runs_once_per_clip_and_loss_is_unchanged(tmp_path, family: str) -> None:
    trainer = frozen_trainer(family, tmp_path)
    assert trainer._audio_cache is not None and trainer._audio_cache.shared  # policy + reference
    policy, ref = trainer.model, trainer.ref_model
    counters = [ConvCounter(find_audio_tower(m)) for m in (policy, ref)]
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); called directly here
    rows = [trainer.train_dataset[i // G] for i in range(2 * G)]  # 2 prompts x G, as sampled
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(rows)  # generation + reference pass
    cached = _loss_and_grad(trainer, out)               # policy pass
    # One encoder forward for the whole step, on the 2 distinct clips only.
    assert sum(c.calls for c in counters) == 1
    cached_rows = sum(c.rows for c in counters)
    stats = trainer.audio_cache_stats
    assert stats["encoded_clips"] == 2 and stats["encoder_calls"] == 1
    assert stats["reused_rows"] == stats["rows"] - 2 and stats["rows"] >= 3 * 2 * G

    # The same rollout without the cache: every row through the encoder, in every pass.
    cache, trainer._audio_cache = trainer._audio_cache, None
    uncached_ref = _ref_logps(trainer, out)
    uncached = _loss_and_grad(trainer, out)
    assert sum(c.rows for c in counters) - cached_rows == 2 * G * cached_rows  # 2 passes x G
    mask = out["completion_mask"].bool()
    torch.testing.assert_close(out["ref_per_token_logps"][mask], uncached_ref[mask], **TOLERANCE)
    for a, b in zip(cached, uncached, strict=True):  # loss and gradient
        torch.testing.assert_close(a, b, **TOLERANCE)
    assert cached[1].abs().max() > 1e-4  # a gradient worth comparing

    # The check has teeth: the loss does read the cached embeddings.
    trainer._audio_cache = cache
    store = cache._stores[id(find_audio_tower(policy))]
    for key in store:
        store[key] = store[key] * 0.5
    altered = _loss_and_grad(trainer, out)
    assert not torch.allclose(altered[1], cached[1], **TOLERANCE)


def test_trained_encoder_is_never_cached(tmp_path) -> None:
    trainer = frozen_trainer("qwen2_5_omni", tmp_path, freeze=False)
    assert trainer._audio_cache is None and trainer.audio_cache_stats == {}
    with pytest.raises(ValueError, match="frozen audio encoder"):
        frozen_trainer("qwen2_5_omni", tmp_path / "forced", freeze=False, cache=True)


def test_cache_can_be_turned_off_for_a_frozen_encoder(tmp_path) -> None:
    trainer = frozen_trainer("qwen2_audio", tmp_path, cache=False)
    assert trainer._audio_cache is None


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_loaded_after_construction_unshare_the_reference_store(tmp_path,
                                                                       family: str) -> None:
    """A resume loads the policy's weights after the trainer is built: if its encoder then
    differs from the reference's, the next rollout's reference log-probs use the reference's own
    encoder output (equal to the uncached path), not the policy's cached one."""
    trainer = frozen_trainer(family, tmp_path)
    assert trainer._audio_cache.shared
    tower = find_audio_tower(trainer.model)
    torch.manual_seed(0)
    loaded = {k: v + 0.1 * torch.randn_like(v) for k, v in tower.named_parameters()}
    tower.load_state_dict(loaded, strict=False)  # what a checkpoint load does: copy_ in place
    trainer.model.train()
    rows = [trainer.train_dataset[i // G] for i in range(2 * G)]
    out = trainer._generate_and_score_completions(rows)
    assert not trainer._audio_cache.shared
    trainer._audio_cache = None
    mask = out["completion_mask"].bool()
    torch.testing.assert_close(out["ref_per_token_logps"][mask], _ref_logps(trainer, out)[mask],
                               **TOLERANCE)


def test_sharing_is_rechecked_only_when_weights_change() -> None:
    towers = [torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)]
    towers[1].load_state_dict(towers[0].state_dict())
    cache = AudioEncoderCache(towers)
    assert cache.shared and not cache.refresh()  # nothing written: no weight comparison
    with torch.no_grad():
        towers[1].weight.add_(1.0)
    assert cache.refresh() and not cache.shared
    with torch.no_grad():
        towers[1].weight.copy_(towers[0].weight)
    cache.clear()  # each rollout
    assert cache.shared


def test_ranks_agree_on_sharing() -> None:
    """Every rank takes the same path (ZeRO-3 gathers in the encoder's forward need all ranks):
    a tower pair counts as shared only if it is equal on every rank."""
    import socket

    import torch.multiprocessing as mp

    from tests.cache_workers import agreement_worker

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(agreement_worker, args=(port,), nprocs=2, join=True)  # raises if a rank disagrees
