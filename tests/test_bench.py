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
