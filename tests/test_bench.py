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


def test_qwen3_omni_config_implies_the_reported_size() -> None:
    """The embedded Qwen3-Omni-30B-A3B thinker config (reported, not byte-exact) counts 31.72B
    parameters with its towers (audio 0.65B, vision 0.54B) and 4.54B active; its text model
    30.53B, 3.35B active: the reported 30.5B total / 3.3B active. The text total is exactly
    keras-hub's quoted 30,532,122,624 plus the 128 embedding rows by which 152,064 exceeds
    151,936, in the token embedding and the LM head (2 x 128 x 2048)."""
    from bench.models import QWEN3_OMNI_30B_A3B, moe_counts, qwen3_omni_config

    config = qwen3_omni_config(build_tokenizer("real", family="qwen3_omni_moe"))
    assert config.model_type == "qwen3_omni_moe_thinker"
    assert config.text_config.num_hidden_layers == 48 and config.text_config.head_dim == 128
    m = moe_counts(config)
    assert m["text_total"] == 30_532_122_624 + 2 * 128 * 2048
    assert 30.0e9 < m["text_total"] < 31.0e9 and 3.2e9 < m["text_active"] < 3.5e9
    assert 31.0e9 < m["total"] < 32.5e9 and 4.0e9 < m["active"] < 5.0e9
    assert 0.6e9 < m["audio"] < 0.7e9 and 0.5e9 < m["vision"] < 0.6e9
    assert QWEN3_OMNI_30B_A3B["text"]["num_hidden_layers"] == 48
    four = moe_counts(qwen3_omni_config(build_tokenizer("real", family="qwen3_omni_moe"), 4))
    per_layer = (m["text_total"] - four["text_total"]) / 44
    assert four["text_total"] + 44 * per_layer == m["text_total"]  # depth is linear in params


@pytest.mark.slow  # ~8 s: two tiny bf16 GRPO steps with the family's LoRA
def test_qwen3_omni_lora_step_harness_runs_and_extrapolates(tmp_path, capsys) -> None:
    """bench/grpo_moe.py at the tiny kit's widths on CPU: one LoRA GRPO step at 1 and 2 text
    layers (bf16, grad-accum 2, gradient checkpointing, the family's targets, none in the
    towers), the JSON the GPU kit's report reads, and the extrapolation labelled as such."""
    from bench import grpo_moe
    from bench.gpu_kit_report import moe_line

    out = grpo_moe.main(["--tiny", "--layers", "1,2", "--G", "2", "--max_completion_length", "2",
                         "--clip_s", "1", "--warmup", "0",
                         "--json", str(tmp_path / "grpo_qwen3_omni_moe.json")])
    results = out["results"]
    assert [r["layers"] for r in results] == [1, 2]
    for r in results:
        assert r["measured_steps"] == 1 and r["step"] > 0 and r["trainable"] > 0
        assert r["adapters_in_towers"] == 0
        assert "parameters mlp.experts.gate_up_proj mlp.experts.down_proj" in r["lora"]
        assert "(family record)" in r["lora"]
    assert results[1]["trainable"] > results[0]["trainable"]
    slope = out["extrapolated"]["trainable"]["per_layer"]
    assert out["extrapolated"]["trainable"]["value"] == results[1]["trainable"] + 46 * slope
    printed = capsys.readouterr().out
    assert "EXTRAPOLATED (linear in layers, not measured) to 48 layers" in printed
    assert "measured: 1 layers: step" in moe_line(tmp_path)


def test_extrapolation_is_the_line_through_the_two_deepest_depths() -> None:
    from bench.grpo_moe import extrapolate

    assert extrapolate({2: 10.0, 4: 14.0}, 48) == (2.0, 102.0)
    assert extrapolate({1: 0.0, 2: 10.0, 4: 14.0}, 8) == (2.0, 22.0)
