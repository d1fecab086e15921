"""vLLM serves both families' tiny checkpoints with the audio sent per request (marked vllm).

They run in the vLLM environment and are skipped where vllm does not import (the default one):

    $ bash run.sh --stage test --vllm true --test_args "-m vllm"

One engine per family (head_dim 32, as vLLM's CPU attention needs; Omni exported from the
thinker-only checkpoint the trainer saves), in this process, float32, eager, 1 GiB of KV cache.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from local.core.collate import encode_batch, render_prompt
from local.core.models import LoadedModel, load_model_and_processor
from local.core.vllm_export import export_for_vllm, vllm_weights
from local.core.vllm_requests import audio_request, mm_limits
from tests.helpers import tiny_checkpoint, tone, user_turn

pytestmark = pytest.mark.vllm
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")        # GiB; else a share of host RAM
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
vllm = pytest.importorskip("vllm", reason="vLLM is not installed (run.sh --vllm true builds it)")

FAMILIES = ("qwen2_audio", "qwen2_5_omni")
QUESTION = "How many beeps?"
TOP = 5  # log-probs compared per request


def _clips() -> list[np.ndarray]:
    noise = np.random.default_rng(0).standard_normal(12_000).astype(np.float32) * 0.1
    return [tone(1.0), noise]


@dataclass
class Served:
    family: str
    hf: LoadedModel  # the same checkpoint in the recipe's HF path, float32
    llm: Any
    prompt: str


@pytest.fixture(scope="module", params=FAMILIES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    checkpoint = tiny_checkpoint(request.param, text_head_dim=32)
    folder = export_for_vllm(checkpoint, tmp_path_factory.mktemp("vllm") / request.param)
    hf = load_model_and_processor(str(checkpoint), dtype="float32")
    llm = vllm.LLM(model=str(folder), dtype="float32", enforce_eager=True, max_model_len=2048,
                   max_num_seqs=4, max_num_batched_tokens=2048, seed=0,
                   limit_mm_per_prompt=mm_limits(hf.family))
    yield Served(request.param, hf, llm, render_prompt(hf.processor, user_turn(QUESTION)))
    del llm
    gc.collect()


def _hf_ids_and_logprobs(served: Served, clip: np.ndarray) -> tuple[list[int], torch.Tensor]:
    inputs = encode_batch(served.hf.processor, served.hf.family, [served.prompt], [clip])
    with torch.no_grad():
        logits = served.hf.model(**inputs).logits[0, -1]
    return inputs["input_ids"][0].tolist(), torch.log_softmax(logits.float(), dim=-1)


def _generate(served: Served, prompts: list[Any], clips: list[np.ndarray], **sampling: Any
              ) -> list[Any]:
    requests = [audio_request(p, c, served.hf.processor, served.hf.family)
                for p, c in zip(prompts, clips, strict=True)]
    params = vllm.SamplingParams(temperature=0.0, **sampling)
    return served.llm.generate(requests, params, use_tqdm=False)


def test_prompt_ids_equal_the_hf_processors(served: Served) -> None:
    """vLLM expands the one placeholder from the clip exactly as the HF processor does, for a
    text prompt and for token ids."""
    clips = _clips()
    ids = served.hf.processor.tokenizer(served.prompt)["input_ids"]
    outputs = _generate(served, [served.prompt, served.prompt, ids, ids], clips * 2,
                        max_tokens=4)
    expected = [_hf_ids_and_logprobs(served, clip)[0] for clip in clips] * 2
    assert [list(out.prompt_token_ids) for out in outputs] == expected
    assert len(expected[0]) != len(expected[1])   # 1.0 s and 0.75 s: different audio runs
    assert all(len(out.outputs[0].token_ids) == 4 for out in outputs)


def test_first_token_logprobs_follow_the_audio(served: Served) -> None:
    """vLLM's first-token log-probs equal the HF model's (float32) for each clip, and differ
    between the clips: the audio reaches vLLM."""
    clips = _clips()
    outputs = _generate(served, [served.prompt] * 2, clips, max_tokens=1, logprobs=TOP)
    firsts = []
    for out, clip in zip(outputs, clips, strict=True):
        first = {token: lp.logprob for token, lp in out.outputs[0].logprobs[0].items()}
        _, reference = _hf_ids_and_logprobs(served, clip)
        assert out.outputs[0].token_ids[0] == int(reference.argmax())
        assert len(first) >= TOP
        for token, logprob in first.items():
            assert abs(logprob - float(reference[token])) < 1e-3
        firsts.append(first)
    a, b = firsts
    assert set(a) != set(b) or max(abs(a[t] - b[t]) for t in a) > 1e-3


def _sync(served: Served) -> None:
    """The policy's weights into vLLM under the names vLLM loads, then the caches cleared."""
    named = vllm_weights(served.family, served.hf.model.named_parameters())
    served.llm.collective_rpc("reload_weights", kwargs={
        "weights_iterator": ((name, p.detach()) for name, p in named),
        "is_checkpoint_format": True})
    served.llm.llm_engine.reset_encoder_cache()   # else stale encodings ("Encoder cache miss")
    served.llm.reset_prefix_cache()


def test_weights_synced_under_the_mapped_names_reach_vllm(served: Served) -> None:
    """Every parameter changed in the HF policy (audio encoder included) and synced by
    `vllm_weights` names: vLLM's first-token log-probs then equal the changed policy's."""
    clip = _clips()[0]
    model = served.hf.model
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    _, before = _hf_ids_and_logprobs(served, clip)
    try:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
        _, after = _hf_ids_and_logprobs(served, clip)
        _sync(served)
        out = _generate(served, [served.prompt], [clip], max_tokens=1, logprobs=TOP)[0]
        first = {token: lp.logprob for token, lp in out.outputs[0].logprobs[0].items()}
        assert out.outputs[0].token_ids[0] == int(after.argmax())
        assert all(abs(logprob - float(after[token])) < 1e-3 for token, logprob in first.items())
        assert max(abs(float(before[token]) - float(after[token])) for token in first) > 1e-2
    finally:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(original[name])
        _sync(served)
