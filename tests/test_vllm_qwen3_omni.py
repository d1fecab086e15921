"""vLLM serves the tiny Qwen3-Omni MoE thinker and takes the policy's weights (marked vllm).

They run in the vLLM environment and are skipped where vllm does not import (the default one):

    $ bash run.sh --stage test --vllm true --test_args "-m vllm tests/test_vllm_qwen3_omni.py"

One engine (module-scoped), in this process, float32, eager, 1 GiB of KV cache, built as the
evaluation's vLLM backend builds it (`local.eval.vllm_backend.exported`, `engine_kwargs`) on the
thinker-only checkpoint the trainer saves, exported to the whole-model layout vLLM loads
(`local.core.vllm_export.export_for_vllm`). The evaluation's generator answers on it as the HF
backend does; the weights are synced through the rollouts' own path
(`local.train.vllm_rollouts.sync_engine_weights`), fused experts and audio tower included. The
export and name functions without vLLM: tests/test_vllm_models.py.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from local.core.collate import encode_batch, render_prompt
from local.core.models import LoadedModel, load_model_and_processor
from local.core.vllm_export import vllm_weights
from local.core.vllm_requests import audio_request
from local.eval.benchmarks.mmau import MMAU
from local.eval.generation import Generator
from local.eval.options import generation_settings, parse_args
from local.eval.vllm_backend import VLLMGenerator, engine_kwargs, exported
from local.train.vllm_rollouts import check_every_weight_sent, sync_engine_weights
from tests.helpers import tiny_checkpoint, tone, user_turn
from tests.sources import mmau_argv, mmau_eval_set

pytestmark = pytest.mark.vllm
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")        # GiB; else a share of host RAM
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
vllm = pytest.importorskip("vllm", reason="vLLM is not installed (run.sh --vllm true builds it)")

QUESTION = "How many beeps?"
TOP = 5          # log-probs compared per request
GREEDY = 5       # greedy tokens compared with HF generate
SAME = 1e-3      # float32 HF vs vLLM (measured 0.0)
MOVED = 1e-2     # a perturbation or a stale weight moves a log-prob at least this much
N_ITEMS = 8      # MMAU-format items answered by both evaluation backends


def _clips() -> list[np.ndarray]:
    noise = np.random.default_rng(0).standard_normal(12_000).astype(np.float32) * 0.1
    return [tone(1.0), noise]


@dataclass
class Served:
    hf: LoadedModel  # the same checkpoint in the recipe's HF path, float32
    llm: Any
    folder: Path     # what vLLM loaded (the export)
    prompt: str
    root: Path       # the module's temporary folder


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The tiny thinker's export served as the evaluation backend serves it (its export folder
    and engine keywords: one clip, no images or video, vLLM's generation defaults off)."""
    root = tmp_path_factory.mktemp("vllm-qwen3-omni")
    checkpoint = tiny_checkpoint("qwen3_omni_moe")
    hf = load_model_and_processor(str(checkpoint), dtype="float32")
    with exported(str(checkpoint), root / "export") as folder:
        assert folder != str(checkpoint)   # a thinker-only folder is exported
        kwargs = engine_kwargs(folder, hf.family, dtype="float32", max_model_len=2048,
                               tensor_parallel_size=1, on_gpu=False)
        assert kwargs["limit_mm_per_prompt"] == {"audio": 1, "image": 0, "video": 0}
        llm = vllm.LLM(**kwargs, max_num_seqs=4, max_num_batched_tokens=2048)
        yield Served(hf, llm, Path(folder), render_prompt(hf.processor, user_turn(QUESTION)),
                     root)
    del llm
    gc.collect()


def _hf_inputs(served: Served, clip: np.ndarray) -> dict[str, torch.Tensor]:
    return encode_batch(served.hf.processor, served.hf.family, [served.prompt], [clip])


def _hf_logprobs(served: Served, clip: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        logits = served.hf.model(**_hf_inputs(served, clip)).logits[0, -1]
    return torch.log_softmax(logits.float(), dim=-1)


def _generate(served: Served, prompts: list[Any], clips: list[np.ndarray], **sampling: Any
              ) -> list[Any]:
    requests = [audio_request(p, c, served.hf.processor, served.hf.family)
                for p, c in zip(prompts, clips, strict=True)]
    params = vllm.SamplingParams(temperature=0.0, **sampling)
    return served.llm.generate(requests, params, use_tqdm=False)


def _first_logprobs(served: Served, clip: np.ndarray) -> dict[int, float]:
    out = _generate(served, [served.prompt], [clip], max_tokens=1, logprobs=TOP)[0]
    return {token: lp.logprob for token, lp in out.outputs[0].logprobs[0].items()}


def _gap(first: dict[int, float], reference: torch.Tensor) -> float:
    return max(abs(logprob - float(reference[token])) for token, logprob in first.items())


def test_prompt_ids_equal_the_hf_processors(served: Served) -> None:
    """vLLM expands the one `<|audio_pad|>` from the clip exactly as the HF processor does (13
    tokens a second), for a text prompt and for token ids."""
    clips = _clips()
    ids = served.hf.processor.tokenizer(served.prompt)["input_ids"]
    outputs = _generate(served, [served.prompt, served.prompt, ids, ids], clips * 2,
                        max_tokens=2)
    expected = [_hf_inputs(served, clip)["input_ids"][0].tolist() for clip in clips] * 2
    assert [list(out.prompt_token_ids) for out in outputs] == expected
    audio_id = served.hf.processor.tokenizer.convert_tokens_to_ids(
        served.hf.family.audio_token)
    counts = [prompt.count(audio_id) for prompt in expected[:2]]
    assert counts == [13, 10]   # 1.0 s and 0.75 s


def test_greedy_tokens_and_first_token_logprobs_equal_hf(served: Served) -> None:
    """Greedy tokens equal HF generate's, first-token log-probs the HF model's (float32), and
    the two clips give different log-probs: the audio reaches the MoE thinker in vLLM."""
    clips = _clips()
    outputs = _generate(served, [served.prompt] * 2, clips, max_tokens=GREEDY, logprobs=TOP,
                        ignore_eos=True)
    firsts = []
    for out, clip in zip(outputs, clips, strict=True):
        inputs = _hf_inputs(served, clip)
        with torch.no_grad():
            greedy = served.hf.model.generate(**inputs, max_new_tokens=GREEDY,
                                              min_new_tokens=GREEDY, do_sample=False)
        assert list(out.outputs[0].token_ids) == greedy[0, inputs["input_ids"].shape[1]:].tolist()
        first = {token: lp.logprob for token, lp in out.outputs[0].logprobs[0].items()}
        assert len(first) >= TOP
        assert _gap(first, _hf_logprobs(served, clip)) < SAME
        firsts.append(first)
    a, b = firsts
    assert set(a) != set(b) or max(abs(a[t] - b[t]) for t in a) > SAME


def test_synced_weights_reach_vllm_fused_experts_and_audio_tower_included(served: Served
                                                                           ) -> None:
    """Every parameter of the HF policy perturbed (the fused 3-D experts, the router and the
    audio tower among them) and synced by `sync_engine_weights`: vLLM's log-probs differed from
    the perturbed policy's before the sync and equal them after; every weight of the served
    folder was sent (the fused experts cover its per-expert weights)."""
    clip = _clips()[0]
    model = served.hf.model
    names = [name for name, _ in model.named_parameters()]
    assert any(name.endswith("mlp.experts.gate_up_proj") for name in names)
    assert any(name.startswith("model.audio_tower.") for name in names)
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    before = _hf_logprobs(served, clip)
    try:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
        after = _hf_logprobs(served, clip)
        assert _gap(_first_logprobs(served, clip), after) > MOVED   # stale before the sync
        sent = sync_engine_weights(served.llm, served.hf.family,
                                   ((n, p.detach()) for n, p in model.named_parameters()))
        check_every_weight_sent(sent, str(served.folder))
        first = _first_logprobs(served, clip)
        assert _gap(first, after) < SAME
        assert max(abs(float(before[t]) - float(after[t])) for t in first) > MOVED
    finally:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(original[name])
        sync_engine_weights(served.llm, served.hf.family,
                            ((n, p.detach()) for n, p in model.named_parameters()))
    assert _gap(_first_logprobs(served, clip), before) < SAME   # restored


def test_cpu_reload_alone_leaves_the_moe_experts_unpacked(served: Served) -> None:
    """Why `sync_engine_weights` repacks CPU MoE layers (`repack_cpu_moe_experts`): vLLM's own
    `reload_weights` of the unchanged weights, with nothing after it, moves the log-probs
    (vLLM 0.32 skips the CPU experts' prepacking on a weight update). When this fails, vLLM
    repacks by itself and the repack is to be removed."""
    clip = _clips()[0]
    reference = _hf_logprobs(served, clip)
    named = vllm_weights("qwen3_omni_moe", ((n, p.detach())
                                            for n, p in served.hf.model.named_parameters()))
    served.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": named,
                                                        "is_checkpoint_format": True})
    served.llm.llm_engine.reset_encoder_cache()
    served.llm.reset_prefix_cache()
    try:
        assert _gap(_first_logprobs(served, clip), reference) > 1e-3
    finally:
        sync_engine_weights(served.llm, served.hf.family,
                            ((n, p.detach()) for n, p in served.hf.model.named_parameters()))
    assert _gap(_first_logprobs(served, clip), reference) < SAME


def test_evaluation_backend_answers_as_the_hf_backend(served: Served) -> None:
    """The evaluation's `VLLMGenerator` on this engine gives the HF backend's greedy answers
    (MMAU-format items, the same prompts, clips and settings)."""
    argv = ["--model", str(tiny_checkpoint("qwen3_omni_moe")), "--out_dir",
            str(served.root / "out"), "--dtype", "float32", "--max_new_tokens", "8",
            "--backend", "vllm", *mmau_argv(mmau_eval_set(served.root / "data", N_ITEMS))]
    args = parse_args(MMAU, argv)
    settings = generation_settings(args)
    records = MMAU.load(args).records
    ours = VLLMGenerator(served.llm, served.hf.processor, served.hf.family,
                         settings).generate(records)
    hf = Generator(served.hf, settings).generate(records)
    assert [(o.id, o.error) for o in ours] == [(o.id, o.error) for o in hf]
    assert len({o.response for o in hf}) > 1   # the answers differ, so equality says something
    assert [o.response for o in ours] == [o.response for o in hf]
