"""--backend vllm answers as the HF backend (marked vllm: run in the vLLM environment, skipped
where vllm does not import):

    $ bash run.sh --stage test --vllm true --test_args "-m vllm"

Both backends on each family's head_dim-32 tiny checkpoint (float32; Omni from the thinker-only
checkpoint the trainer saves, exported for vLLM), engines in this process except the end-to-end
run, which runs `python -m local.eval.steps` as run.sh does (vLLM's own engine process, one
engine per step).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from local.core.models import load_model_and_processor
from local.eval.benchmarks.mmau import MMAU
from local.eval.generation import Generator, Output
from local.eval.options import generation_settings, parse_args
from local.eval.steps import main as steps_main
from local.eval.vllm_backend import (
    VLLMGenerator,
    build_vllm_generator,
    vllm_installed,
)
from local.util.dist import DistContext
from tests.helpers import REPO, tiny_checkpoint
from tests.sources import mmau_argv, mmau_eval_set

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; else a share of host RAM
needs_vllm = pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed "
                                "(run.sh --vllm true builds its environment)")
FAMILIES = ("qwen2_audio", "qwen2_5_omni")
N_ITEMS = 32
SAME_SHARE = 0.95  # of greedy answers equal between the backends (the bar)
MAX_NEW_TOKENS = 16

# ---------------------------------------------------------------------------------------------
# With vLLM (marked vllm): both backends on the same checkpoint
# ---------------------------------------------------------------------------------------------

@dataclass
class Pair:
    family: str
    records: list
    hf: Generator
    vllm: VLLMGenerator


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    """The family's head_dim-32 checkpoint in both backends, clips cut at 1 s (some are longer),
    and 32 MMAU-format items; the vLLM engine runs in this process."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
    root = tmp_path_factory.mktemp(f"pair-{request.param}")
    checkpoint = tiny_checkpoint(request.param, text_head_dim=32)
    argv = ["--model", str(checkpoint), "--out_dir", str(root / "out"), "--dtype", "float32",
            "--max_new_tokens", str(MAX_NEW_TOKENS), "--max_audio_duration_in_seconds", "1.0",
            "--backend", "vllm", "--max_model_len", "2048",
            *mmau_argv(mmau_eval_set(root / "data", N_ITEMS))]
    args = parse_args(MMAU, argv)
    settings = generation_settings(args)
    hf = Generator(load_model_and_processor(str(checkpoint), dtype="float32"), settings,
                   max_audio_seconds=1.0)
    vllm = build_vllm_generator(args, settings, DistContext())
    yield Pair(request.param, MMAU.load(args).records, hf, vllm)
    vllm.close()


def _same_share(a: list[Output], b: list[Output]) -> float:
    return sum(x.response == y.response for x, y in zip(a, b, strict=True)) / len(a)


@pytest.mark.vllm
@needs_vllm
def test_vllm_answers_as_the_hf_backend(pair: Pair) -> None:
    """Greedy answers equal on >= 95% of 32 items (audio on, clips cut alike), and with the
    --no_audio ablation; the ids, errors and cut-clip flags are the same."""
    hf = [o for i in range(0, N_ITEMS, 8) for o in pair.hf.generate(pair.records[i:i + 8])]
    ours = pair.vllm.generate(pair.records)
    assert [(o.id, o.error, o.audio_truncated) for o in ours] == \
        [(o.id, o.error, o.audio_truncated) for o in hf]
    assert 0 < sum(o.audio_truncated for o in ours) < N_ITEMS
    assert pair.vllm.truncated == pair.hf.truncated
    assert len({o.response for o in hf}) > 1  # the answers differ, so equality says something
    assert _same_share(ours, hf) >= SAME_SHARE
    text_only = [VLLMGenerator(pair.vllm.llm, pair.vllm.processor, pair.vllm.family,
                               pair.vllm.settings, audio=False),
                 Generator(pair.hf.loaded, pair.hf.settings, audio=False)]
    ours, hf = (gen.generate(pair.records[:8]) for gen in text_only)
    assert _same_share(ours, hf) >= SAME_SHARE


@pytest.mark.vllm
@needs_vllm
def test_first_token_logprobs_equal_the_hf_models(pair: Pair) -> None:
    """vLLM's first-token log-probs (top 5 per item, raw) equal the HF model's within 1e-3 on
    the backend's own requests."""
    import vllm

    prompts = [pair.vllm.prompt(r, "default") for r in pair.records]
    clips = [pair.vllm.clip(r)[0] for r in pair.records]
    outputs = pair.vllm.llm.generate(pair.vllm.requests(prompts, clips),
                                     vllm.SamplingParams(max_tokens=1, temperature=0,
                                                         logprobs=5), use_tqdm=False)
    worst = 0.0
    for start in range(0, N_ITEMS, 8):
        inputs = pair.hf.model_inputs(prompts[start:start + 8], clips[start:start + 8])
        with torch.no_grad():
            reference = torch.log_softmax(pair.hf.model(**inputs).logits[:, -1].float(), dim=-1)
        for out, ref in zip(outputs[start:start + 8], reference, strict=True):
            first = out.outputs[0].logprobs[0]
            assert out.outputs[0].token_ids[0] == int(ref.argmax())
            worst = max(worst, *(abs(lp.logprob - float(ref[t])) for t, lp in first.items()))
    assert worst < 1e-3


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys all the way down, the kind of each leaf."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__


@pytest.mark.vllm
@needs_vllm
def test_eval_steps_with_vllm_write_the_hf_files(tmp_path: Path) -> None:
    """The run.sh mmau stage's call (`python -m local.eval.steps`) with --backend vllm on a
    thinker-only Omni run (step 0 and checkpoint-5): the HF backend's files, the same items
    and answers, and no export left behind."""
    model = tiny_checkpoint("qwen2_5_omni", text_head_dim=32)
    data = mmau_eval_set(tmp_path / "data", N_ITEMS)
    runs = {}
    for backend in ("hf", "vllm"):
        run_dir = tmp_path / backend
        shutil.copytree(model, run_dir / "checkpoint-5")
        (run_dir / "checkpoint-5" / "trainer_state.json").write_text("{}")  # a finished save
        argv = ["--bench", "mmau", "--model", str(model), "--run_dir", str(run_dir), "--",
                *mmau_argv(data, "--max_new_tokens", str(MAX_NEW_TOKENS), "--batch_size", "32",
                            "--dtype", "float32", "--backend", backend)]
        if backend == "hf":
            steps_main(argv)
        else:  # as run.sh runs it: a new process, vLLM's engine in its own process
            env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
            result = subprocess.run([sys.executable, "-m", "local.eval.steps", *argv,
                                     "--max_model_len", "2048"], cwd=REPO, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
        runs[backend] = run_dir / "eval" / "mmau"
    assert _tree(runs["vllm"]) == _tree(runs["hf"])
    for step in ("0", "5"):
        hf, ours = ({e["id"]: e for e in json.loads((runs[b] / step / "predictions.json")
                                                    .read_text())} for b in ("hf", "vllm"))
        assert list(ours) == list(hf) and len(hf) == N_ITEMS
        assert all(set(ours[i]) == set(hf[i]) for i in hf)
        assert sum(ours[i]["response"] == hf[i]["response"] for i in hf) >= SAME_SHARE * N_ITEMS
        results = {b: json.loads((runs[b] / step / "results.json").read_text()) for b in runs}
        assert _shape({**results["vllm"], "settings": None}) == \
            _shape({**results["hf"], "settings": None})
        settings = {b: results[b]["settings"] for b in runs}
        assert settings["hf"]["backend"] == "hf" and settings["vllm"]["backend"] == "vllm"
        assert Path(settings["hf"]["model"]).name == Path(settings["vllm"]["model"]).name
        same = {b: {k: v for k, v in settings[b].items() if k not in
                    ("model", "backend", "vllm_version", "max_model_len")} for b in runs}
        assert same["vllm"] == same["hf"]
