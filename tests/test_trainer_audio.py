"""AudioGRPOTrainer: the audio reaches the loss, row-aligned, for both families.

Stock TRL 1.16 generates with the audio and computes every log-prob without it. These tests
train the tiny models and show (1) the audio encoder learns only when our subclass forwards the
audio, (2) every completion's log-probs in a 2-prompt x G batch equal those of its own prompt and
audio alone, and fail when rows are misaligned, (3) generation never samples placeholders.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from local.core.collate import AUDIO_KEYS, encode_batch, render_prompt
from local.core.prompts import clean_messages
from local.core.special_tokens import placeholder_token_ids
from tests.helpers_train import audio_encoder_state, make_trainer

FAMILIES = ["qwen2_audio", "qwen2_5_omni"]
# Qwen3-Omni (MoE thinker) joins the row-alignment and placeholder tests, not the whole matrix.
WITH_QWEN3 = [*FAMILIES, "qwen3_omni_moe"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("forward_audio", [True, False], ids=["ours", "stock-trl-behaviour"])
def test_audio_encoder_learns_only_when_audio_reaches_the_loss(tmp_path, family: str,
                                                              forward_audio: bool) -> None:
    trainer = make_trainer(family, tmp_path, forward_audio_in_loss=forward_audio, beta=0.04)
    model = trainer.accelerator.unwrap_model(trainer.model)
    before = audio_encoder_state(model)
    trainer.train()
    assert trainer.state.global_step == 3
    changed = {k for k, v in audio_encoder_state(model).items() if not torch.equal(v, before[k])}
    text_weights_moved = not torch.equal(
        model.get_input_embeddings().weight, trainer.ref_model.get_input_embeddings().weight)
    assert text_weights_moved  # the run did train (rewards had spread)
    # Every weight the encoder uses on audio (convolutions, transformer layers) moved. (Omni's
    # encoder also holds an `audio_bos_eos_token` embedding that its forward never reads.)
    used = {k for k in before if "conv" in k or ".layers." in k}
    if forward_audio:
        assert used and used <= changed, f"unchanged: {sorted(used - changed)[:5]}"
    else:
        assert changed == set(), "stock behaviour: no gradient ever reaches the encoder"


def _logps(trainer, audio, ids, mask, logits_to_keep, batch_size):
    with torch.no_grad(), trainer._audio_for_logps(audio):
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, logits_to_keep, batch_size=batch_size)
    return logps


@pytest.mark.parametrize("family", WITH_QWEN3)
def test_each_completion_is_scored_with_its_own_prompt_and_audio(tmp_path, family: str) -> None:
    """2 prompts x G=4 completions: batched log-probs (chunks of 3 rows, across the group
    boundary) equal each row computed alone with its own audio, within 1e-4 (float32)."""
    trainer = make_trainer(family, tmp_path, rows=2)
    trainer.model.train()
    rows = [trainer.train_dataset[i // 4] for i in range(8)]  # what the sampler yields
    out = trainer._generate_and_score_completions(rows)
    assert out["input_features"].shape[0] == 8
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    keep = out["completion_ids"].shape[1]
    audio = {k: out[k] for k in AUDIO_KEYS}
    batched = _logps(trainer, audio, ids, mask, keep, batch_size=3)

    processor = trainer.processing_class
    clips = trainer._decode_rows(rows)
    for i, row in enumerate(rows):
        text = render_prompt(processor, clean_messages(row["prompt"]))
        alone = encode_batch(processor, trainer.family, [text], [clips[i]])
        completion = out["completion_ids"][i:i + 1]
        own_ids = torch.cat([alone["input_ids"], completion], dim=1)
        own_mask = torch.cat([alone["attention_mask"], out["completion_mask"][i:i + 1]], dim=1)
        own = _logps(trainer, {k: alone[k] for k in AUDIO_KEYS}, own_ids, own_mask, keep, 1)
        valid = out["completion_mask"][i].bool()
        torch.testing.assert_close(batched[i][valid], own[0][valid], rtol=1e-4, atol=1e-4)

    # The check has teeth: rows fed other audio (here: the second prompt's clip made silent,
    # shapes and masks unchanged) score differently.
    features = audio["input_features"].clone()
    features[4:] = features[4:].min()
    wrong = _logps(trainer, {**audio, "input_features": features}, ids, mask, keep, 3)
    completion_mask = out["completion_mask"].bool()
    assert (wrong - batched)[4:][completion_mask[4:]].abs().max() > 1e-3
    torch.testing.assert_close(wrong[:4], batched[:4])


@pytest.mark.parametrize("family", WITH_QWEN3)
def test_generation_never_samples_placeholder_tokens(tmp_path, family: str) -> None:
    trainer = make_trainer(family, tmp_path, rows=2)
    banned = placeholder_token_ids(trainer.processing_class.tokenizer, trainer.family)
    audio = trainer.family.audio_token  # <|AUDIO|>, or Qwen3-Omni's <|audio_pad|>
    assert trainer.processing_class.tokenizer.convert_tokens_to_ids(audio) in banned
    assert set(banned) <= set(trainer.generation_config.suppress_tokens)
    trainer.model.train()
    rows = [trainer.train_dataset[i // 4] for i in range(8)]
    out = trainer._generate_and_score_completions(rows)
    assert not torch.isin(out["completion_ids"], torch.tensor(banned)).any()


def test_rows_without_audio_stop_with_the_item_named(tmp_path) -> None:
    from local.core.audio import AudioError

    trainer = make_trainer("qwen2_5_omni", tmp_path, rows=2)
    row = dict(trainer.train_dataset[0], audio_bytes=None, audio_path=None, audio_array=None)
    with pytest.raises(AudioError, match="syn-0"):
        trainer._decode_rows([row])


@pytest.mark.parametrize("family", FAMILIES)
def test_rollout_prefill_computes_last_position_logits_only(
        tmp_path, family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF rollouts: the LM head sees one position per row at the prefill (generate reads no
    other); without local.core.last_logits it sees the whole prompt. (The log-prob passes use
    TRL's fused head, checked row by row above.)"""
    trainer = make_trainer(family, tmp_path, rows=2)
    head = trainer.accelerator.unwrap_model(trainer.model).get_output_embeddings()
    rows = [trainer.train_dataset[i // 4] for i in range(8)]

    def head_positions() -> tuple[list[int], int]:
        lengths: list[int] = []
        hook = head.register_forward_hook(lambda _m, args, _o: lengths.append(args[0].shape[1]))
        try:
            out = trainer._generate_and_score_completions(rows)
        finally:
            hook.remove()
        return lengths, out["prompt_ids"].shape[1]

    lengths, prompt = head_positions()
    assert lengths[0] == 1 and prompt > 1      # prefill of the prompt batch: last position only
    monkeypatch.setattr("local.train.trainer.last_position_logits",
                        lambda _model: contextlib.nullcontext())
    lengths, prompt = head_positions()
    assert lengths[0] == prompt                # the stock prefill: every prompt position
