"""vLLM rollout settings that need no engine: what is refused and what SamplingParams gets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from local.core.models import load_model_and_processor
from local.core.special_tokens import placeholder_token_ids, stop_token_ids
from local.core.vllm_export import vllm_weight_name
from local.core.vllm_requests import SUPPRESS_BIAS
from local.train.trainer import AudioGRPOTrainer
from local.train.vllm_rollouts import (
    AudioVLLMGeneration,
    check_every_weight_sent,
    check_vllm_settings,
    served_model,
    vllm_generation_kwargs,
)
from tests.helpers import tiny_checkpoint
from tests.helpers_train import small_config, synthetic_rows, vowel_reward


@pytest.mark.parametrize(("mode", "tp", "message"), [
    ("server", 1, "server mode sends image features only"),
    ("colocate", 2, "gathers the prompts of a tensor-parallel group but not their clips"),
])
def test_settings_whose_rollouts_would_lose_the_audio_are_refused(mode: str, tp: int,
                                                                  message: str) -> None:
    args = SimpleNamespace(vllm_mode=mode, vllm_tensor_parallel_size=tp)
    with pytest.raises(ValueError, match=message):
        check_vllm_settings(args)


def test_colocate_on_one_gpu_per_engine_is_accepted() -> None:
    check_vllm_settings(SimpleNamespace(vllm_mode="colocate", vllm_tensor_parallel_size=1))


def test_hf_generation_settings_become_sampling_params() -> None:
    """The trainer's suppress_tokens (HF-only: SamplingParams rejects it) become a logit_bias,
    and the evaluation's stop ids are added; other keys pass through."""
    tokenizer = load_model_and_processor(str(tiny_checkpoint("qwen2_audio")),
                                         dtype="float32").processor.tokenizer
    banned = placeholder_token_ids(tokenizer)
    got = vllm_generation_kwargs({"suppress_tokens": banned, "seed": 3}, tokenizer)
    assert "suppress_tokens" not in got
    assert got["logit_bias"] == dict.fromkeys(banned, SUPPRESS_BIAS)
    assert got["stop_token_ids"] == sorted(stop_token_ids(tokenizer))
    assert got["seed"] == 3


@pytest.mark.parametrize(("family", "exported"), [("qwen2_audio", False), ("qwen2_5_omni", True)])
def test_the_engine_loads_a_folder_vllm_serves(tmp_path, family: str, exported: bool) -> None:
    """Qwen2-Audio (saved by transformers 5.24) is served as it is; the thinker-only Omni
    checkpoint the trainer saves is exported under the run folder; a hub id passes through."""
    checkpoint = tiny_checkpoint(family)
    model = SimpleNamespace(name_or_path=str(checkpoint))
    folder = served_model(model, tmp_path)
    assert folder == (str(tmp_path / "vllm_model") if exported else str(checkpoint))
    assert served_model(SimpleNamespace(name_or_path="Qwen/Qwen2-Audio-7B-Instruct"),
                        tmp_path) == "Qwen/Qwen2-Audio-7B-Instruct"


@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni"])
def test_the_name_map_sends_every_weight_of_the_served_checkpoint(tmp_path, family: str) -> None:
    """The policy's parameters, renamed as sync_weights renames them, cover every tensor of the
    folder vLLM serves; one missing name stops the first sync (vLLM itself only warns)."""
    checkpoint = tiny_checkpoint(family)
    loaded = load_model_and_processor(str(checkpoint), dtype="float32")
    served = served_model(SimpleNamespace(name_or_path=str(checkpoint)), tmp_path)
    sent = [vllm_weight_name(family, name) for name, _ in loaded.model.named_parameters()]
    check_every_weight_sent(sent, served)
    with pytest.raises(RuntimeError, match="not 1 of .*stale weights"):
        check_every_weight_sent(sent[1:], served)
    check_every_weight_sent([], "Qwen/Qwen2-Audio-7B-Instruct")  # a hub id: not checked here


def test_a_rollout_without_one_clip_per_prompt_stops() -> None:
    """The clips must be handed over for each rollout, one per prompt row."""
    generation = AudioVLLMGeneration.__new__(AudioVLLMGeneration)  # no engine needed
    generation.audio_token_id, generation.clips = 7, None
    with pytest.raises(RuntimeError, match="no clips were handed over"):
        generation.generate([[1, 7, 2]], None, 1)
    generation.clips = [np.zeros(1600, dtype=np.float32)]
    with pytest.raises(RuntimeError, match="2 prompts but 1 clips"):
        generation.generate([[1, 7, 2], [1, 7, 3]], None, 1)


def test_a_rollout_func_is_refused_with_vllm(tmp_path) -> None:
    """TRL's rollout_func would generate without the clips."""
    loaded = load_model_and_processor(str(tiny_checkpoint("qwen2_audio")), dtype="float32")
    with pytest.raises(ValueError, match="rollout_func"):
        AudioGRPOTrainer(model=loaded.model, processing_class=loaded.processor,
                         family=loaded.family, reward_funcs=[vowel_reward],
                         args=small_config(tmp_path, use_vllm="true"),
                         train_dataset=synthetic_rows(2), rollout_func=lambda *a, **k: {})


@pytest.mark.parametrize(("family", "window", "length"), [
    ("qwen2_audio", 30.0, 750 + 2 + 512 + 1024),
    ("qwen2_5_omni", 300.0, 7500 + 2 + 512 + 1024),
])
def test_vllm_context_is_the_prompt_and_completion_budget(family: str, window: float,
                                                           length: int) -> None:
    """vLLM's max_model_len (unset: TRL would take the model's 32k context) covers the family's
    whole audio window at the processors' own rate, the prompt text and the completion."""
    from local.train.vllm_rollouts import AUDIO_TOKENS_PER_SECOND, default_max_model_length
    from tests.helpers import processor_inputs

    loaded = load_model_and_processor(str(tiny_checkpoint(family)), dtype="float32")
    assert loaded.family.max_audio_seconds == window
    seconds = 30  # the processors' own count of audio tokens for 30 s of audio
    inputs = processor_inputs(loaded.processor, [np.zeros(16_000 * seconds, np.float32)])
    audio_id = loaded.processor.tokenizer.convert_tokens_to_ids(loaded.family.audio_token)
    assert int((inputs["input_ids"] == audio_id).sum()) == seconds * AUDIO_TOKENS_PER_SECOND
    assert default_max_model_length(loaded.family.max_audio_seconds, 1024) == length
