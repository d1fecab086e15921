"""bench/lora_merge.py on the CPU: the scaled model (bench/models.py) with LoRA, `merged_state`
fully consumed and timed, its JSON written; real sizes refuse without a GPU. No timing asserted
beyond a positive median."""

from __future__ import annotations

import json

import pytest
import torch

from bench import lora_merge


def test_scaled_model_merge_is_timed_and_written(tmp_path, capsys) -> None:
    out = tmp_path / "lora_merge.json"
    result = lora_merge.main(["--scaled", "--lora_r", "8", "--repeats", "2", "--warmup", "0",
                              "--json", str(out)])
    printed = capsys.readouterr().out
    assert "## LoRA merge: scaled_omni7b" in printed and "merged_state, fully consumed: " in printed
    assert "peft merge_adapter + read + unmerge_adapter" in printed
    written = json.loads(out.read_text())
    assert written["model"] == "scaled_omni7b" and written["lora_layers"] > 0
    for key in ("merged_state", "peft_in_place"):
        figures = written[key]
        assert len(figures["times_s"]) == 2 and figures["median_s"] > 0
        assert figures["peak_extra_mb"] >= 0 and figures["bytes"] > 0
    # every base weight once, no lora_ tensor: as many tensors as the unwrapped model has
    assert written["merged_state"]["tensors"] == written["peft_in_place"]["tensors"]
    assert result["merged_state"]["median_s"] == written["merged_state"]["median_s"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_real_size_needs_a_gpu() -> None:
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        lora_merge.main(["--real_size", "qwen2_5_omni_7b"])
