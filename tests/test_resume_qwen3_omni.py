"""Full-weight resume of a Qwen3-Omni MoE thinker: the experts are converted back to the fused
layout the loaded model holds.

transformers 5.24 holds each MoE layer's experts fused (`...mlp.experts.gate_up_proj` (E, 2*I, H),
`...mlp.experts.down_proj` (E, H, I)) and `save_pretrained` writes them split, one tensor per
expert (`model.layers.N.mlp.experts.K.{gate,up,down}_proj.weight`): the "qwen2_moe" converters
of .venv/.../transformers/conversion_mapping.py, which "qwen3_omni_moe_thinker" maps to, reversed
by core_model_loading.revert_weight_conversion. Resume must fuse them again (as from_pretrained
does) and still load every tensor exactly, or fail naming the tensors that do not fit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from local.core.models import load_model_and_processor
from local.train.checkpoints import CheckpointError, load_full_weights
from tests.helpers import tiny_checkpoint

EXPERT = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$")


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model_and_processor(str(tiny_checkpoint("qwen3_omni_moe")), dtype="float32").model


def _state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save_changed(model: Any, folder: Path, **save: Any) -> dict[str, torch.Tensor]:
    """Save `model` with every tensor changed (each by its own amount, so experts that were
    swapped or stacked out of order would show), then put the weights back; returns the saved
    state."""
    before = _state(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand(tensor.shape, generator=generator))
    saved = _state(model)
    model.save_pretrained(folder, **save)
    model.load_state_dict(before)
    assert not any(torch.equal(before[k], saved[k]) for k in saved if saved[k].is_floating_point())
    return saved


def _differ(model: Any, expected: dict[str, torch.Tensor]) -> list[str]:
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    return [k for k in expected if not torch.equal(loaded[k], expected[k])]


@pytest.fixture(scope="module")
def checkpoint(model: Any, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("qwen3-omni") / "checkpoint-7"
    return folder, _save_changed(model, folder)


def test_the_checkpoint_holds_the_experts_split(checkpoint) -> None:
    """What makes this family different: the saved layout is not the loaded one."""
    folder, expected = checkpoint
    stored = load_file(folder / "model.safetensors")
    fused = [k for k in expected if k.endswith("mlp.experts.gate_up_proj")]
    assert fused and not [k for k in stored if k.endswith("gate_up_proj")]
    experts = expected[fused[0]].shape[0]
    split = {EXPERT.match(k).group(2) for k in stored if EXPERT.match(k)}  # type: ignore[union-attr]
    assert split == {str(i) for i in range(experts)}


def test_resume_restores_every_tensor_including_the_fused_experts(model, checkpoint) -> None:
    folder, expected = checkpoint
    assert load_full_weights(model, folder) == len(expected)
    assert _differ(model, expected) == []


def test_resume_of_a_sharded_checkpoint_with_a_layer_s_experts_across_shards(
        model, tmp_path: Path) -> None:
    """The experts of one layer must all be read before they are fused: a shard boundary within
    a layer's experts keeps that layer's tensors until its last shard is read."""
    expected = _save_changed(model, tmp_path, max_shard_size="40KB")
    weight_map = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    files_of_layer: dict[str, set[str]] = {}
    for key, file in weight_map.items():
        if match := EXPERT.match(key):
            files_of_layer.setdefault(match.group(1), set()).add(file)
    assert any(len(files) > 1 for files in files_of_layer.values()), files_of_layer
    load_full_weights(model, tmp_path)
    assert _differ(model, expected) == []


def _broken(folder: Path, tmp_path: Path, edit: Any) -> Path:
    """A copy of the checkpoint in `folder` with its tensors edited by `edit` (in place)."""
    broken = tmp_path / "checkpoint-7"
    broken.mkdir()
    for item in folder.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    tensors = load_file(broken / "model.safetensors")
    edit(tensors)
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    return broken


@pytest.mark.parametrize(("edit", "named"), [
    pytest.param(lambda t: t.pop("model.layers.1.mlp.experts.2.up_proj.weight"),
                 "model.layers.1.mlp.experts.2.up_proj.weight", id="an-expert-missing"),
    pytest.param(lambda t: t.update({"model.layers.0.mlp.experts.1.down_proj.weight":
                                     torch.zeros(3, 1)}),
                 "model.layers.0.mlp.experts.1.down_proj.weight", id="an-expert-reshaped"),
    pytest.param(lambda t: t.update({"model.layers.0.mlp.experts.9.gate_proj.weight":
                                     t["model.layers.0.mlp.experts.0.gate_proj.weight"].clone()}),
                 "model.layers.0.mlp.experts.9.gate_proj.weight", id="an-expert-too-many"),
    pytest.param(lambda t: [t.pop(k) for k in list(t) if k.startswith("model.layers.1.mlp.experts.")
                            and k.endswith("down_proj.weight")],
                 "layers.1.mlp.experts.down_proj", id="all-experts-of-a-layer-missing"),
])
def test_resume_fails_naming_the_expert_that_does_not_fit(model, checkpoint, tmp_path: Path,
                                                         edit: Any, named: str) -> None:
    folder, _ = checkpoint
    broken = _broken(folder, tmp_path, edit)
    with pytest.raises(CheckpointError) as error:
        load_full_weights(model, broken)
    assert named in str(error.value) and str(broken) in str(error.value), str(error.value)


def test_lora_resume_on_the_fused_experts_restores_the_adapter(tmp_path: Path) -> None:
    """A LoRA on the experts (peft target_parameters, the family's lora_target_parameters)
    resumes through PEFT's adapter loading, not through load_full_weights: no fused layout to
    rebuild, and every adapter tensor comes back."""
    from peft import LoraConfig

    from local.core.families.qwen3_omni_moe import FAMILY
    from local.train.checkpoints import restores_full_weights
    from tests.helpers_train import make_trainer

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                      target_parameters=list(FAMILY.lora_target_parameters))
    trainer = make_trainer("qwen3_omni_moe", tmp_path / "run", rows=4, peft_config=lora)
    model = trainer.model
    before = _state(model)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.5)
    expected = _state(model)
    assert any("experts" in k and "lora_A" in k for k in expected)
    trainer.save_model(str(tmp_path / "checkpoint-7"))
    model.load_state_dict(before)
    assert not restores_full_weights(model, tmp_path / "checkpoint-7")
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint-7"))
    assert _differ(model, expected) == []
