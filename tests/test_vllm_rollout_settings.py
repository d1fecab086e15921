"""vLLM rollout settings that need no engine: what is refused and what SamplingParams gets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from local.core.models import load_model_and_processor
from local.core.special_tokens import placeholder_token_ids, stop_token_ids
from local.core.vllm_requests import SUPPRESS_BIAS
from local.train.vllm_rollouts import check_vllm_settings, served_model, vllm_generation_kwargs
from tests.helpers import tiny_checkpoint


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
    assert (folder == str(tmp_path / "vllm_model")) is exported
    assert folder == str(checkpoint) or exported
    assert served_model(SimpleNamespace(name_or_path="Qwen/Qwen2-Audio-7B-Instruct"),
                        tmp_path) == "Qwen/Qwen2-Audio-7B-Instruct"
