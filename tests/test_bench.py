"""The benchmark harnesses run end to end on a tiny setting. No timing is asserted (figures belong
in bench output and bench/RESULTS.md, never in tests)."""

from __future__ import annotations

import pytest

from bench import data, grpo_step
from bench.models import REAL_SHAPES, _count, build_config
from local.demo.tokenizers import build_tokenizer


@pytest.mark.slow  # ~30 s: three trainers, one step each
def test_grpo_step_harness_runs_every_configuration(capsys) -> None:
    out = grpo_step.main(["--models", "scaled_omni7b", "--G", "2", "--prompts", "1",
                          "--clip_s", "1", "--steps", "1", "--warmup", "0",
                          "--max_completion_length", "2"])
    results = out["results"]["scaled_omni7b/G=2"]
    assert set(results) == {"naive", "nocache", "ours"}
    for r in results.values():
        assert r["measured_steps"] == 1 and r["step"] > 0
    assert results["ours"]["cache"]["encoded_clips"] == 1  # 1 prompt, frozen encoder
    assert results["nocache"]["cache"] == {} and results["naive"]["cache"] == {}
    printed = capsys.readouterr().out
    assert "| audio_encoder |" in printed and "naive/ours: step time" in printed


def test_data_harness_runs_both_families(capsys) -> None:
    out = data.main(["--clips", "2", "--clip_s", "1", "--eval_clips", "4", "--batch", "2",
                     "--default_max", "2"])
    assert set(out["clip"]) == set(out["eval"]) == {"qwen2_audio", "qwen2_5_omni"}
    assert all(r["ours"] > 0 for part in out.values() for r in part.values())
    assert "x the processor default" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("kind,billions", [("qwen2_5_omni_7b", 8.93), ("qwen2_5_omni_3b", 4.70)])
def test_real_size_configs_have_the_real_parameter_counts(kind: str, billions: float) -> None:
    """The embedded shapes give the official thinkers' sizes (counted on the meta device)."""
    config, _ = build_config(kind, build_tokenizer("real"))
    assert sum(_count(config).values()) / 1e9 == pytest.approx(billions, abs=0.01)
    assert kind in REAL_SHAPES


def test_generation_bench_dry_run_builds_the_engine_it_would_start(capsys) -> None:
    """bench/generation.py without vLLM: the tiny Omni checkpoint is exported and the engine
    keywords are the evaluation backend's (`engine_kwargs`); nothing is timed."""
    from bench import generation
    from local.core.models import QWEN2_5_OMNI
    from local.core.vllm_requests import mm_limits

    plans = generation.main(["--dry_run", "--families", "qwen2_5_omni", "--vocab", "tiny"])
    engine = plans["qwen2_5_omni"]["engine"]
    assert engine["limit_mm_per_prompt"] == mm_limits(QWEN2_5_OMNI)
    assert engine["generation_config"] == "vllm" and engine["max_model_len"] == 2048
    assert engine["model"].endswith("vllm")  # the export, not the thinker-only checkpoint
    assert "vllm.LLM(" in capsys.readouterr().out


@pytest.mark.slow
def test_generation_bench_real_size_dry_run() -> None:
    """--real_size without a GPU: Qwen2-Audio-7B's shapes (8.40B parameters, counted on the meta
    device) and vLLM's random weights (load_format dummy); no model allocated."""
    from bench import generation

    plan = generation.main(["--dry_run", "--real_size", "qwen2_audio_7b"])["qwen2_audio_7b"]
    assert "8.40B parameters" in plan["name"]
    assert plan["engine"]["load_format"] == "dummy" and plan["engine"]["dtype"] == "bfloat16"


@pytest.mark.vllm
@pytest.mark.slow  # one engine start (~1-2 min on 2 cores)
def test_generation_bench_runs_with_vllm(monkeypatch, capsys) -> None:
    """HF (full and last-position logits) and vLLM generate exactly the forced tokens on the same
    prompts; the tiny float32 model's greedy tokens agree."""
    pytest.importorskip("vllm", reason="vLLM is not installed (run.sh --vllm true builds it)")
    from bench import generation

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    result = generation.main(["--families", "qwen2_5_omni", "--vocab", "tiny", "--prompts", "2",
                              "--max_new_tokens", "3", "--repeats", "1", "--warmup", "0"])
    timed = result["qwen2_5_omni"]["timed"]
    assert set(timed) == {"hf_full", "hf_last", "vllm"}
    assert all(len(t.tokens) == 2 and all(len(row) == 3 for row in t.tokens)
               for t in timed.values())
    assert timed["hf_full"].tokens == timed["hf_last"].tokens == timed["vllm"].tokens
    assert "CPU ratio vLLM / HF" in capsys.readouterr().out


@pytest.mark.slow  # ~10 s: one tiny model, 2 prompts
def test_generation_bench_hf_only_needs_no_vllm(capsys) -> None:
    """--hf_only (the GPU kit where vLLM cannot be carried) measures the two HF paths, their
    forced tokens identical, and never starts or imports vLLM."""
    import sys

    from bench import generation

    result = generation.main(["--hf_only", "--families", "qwen2_audio", "--prompts", "2",
                              "--clip_s", "2", "--max_new_tokens", "3", "--repeats", "1",
                              "--warmup", "0"])
    timed = result["qwen2_audio"]["timed"]
    assert set(timed) == {"hf_full", "hf_last"}
    assert timed["hf_full"].tokens == timed["hf_last"].tokens
    assert all(len(row) == 3 for row in timed["hf_last"].tokens)
    printed = capsys.readouterr().out
    assert "item 5: HF last-position / full logits" in printed and "not run (--hf_only)" in printed
    assert "vllm" not in sys.modules
