"""Resume restores everything: weights, optimizer, schedule and RNG (single process, no DeepSpeed).

`save_pretrained` writes a checkpoint in the original hub layout (`audio_tower.*`,
`language_model.*`) while the loaded model holds `model.audio_tower.*`, ... (transformers 5.24
renames on load: .venv/.../transformers/conversion_mapping.py, "qwen2_audio" and
"Qwen2_5OmniThinkerForConditionalGeneration"). The Trainer's own resume
(`Trainer._load_from_checkpoint`, trainer.py line 3703) loads the file with a raw
`load_state_dict(strict=False)`: no tensor matched and training went on from the initial weights
with only a warning. The strong check: a run cut after checkpoint N and resumed ends bit-identical
(weights and logged metrics) to the run that was never interrupted.

The DeepSpeed (ZeRO-1/3) variants are in tests/test_train_distributed.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from local.train.checkpoints import CheckpointError
from local.train.rewards import REWARDS
from tests.helpers_train import assert_same_run, cut_after, length_reward, make_trainer, train_argv

FAMILIES = ["qwen2_audio", "qwen2_5_omni"]


def _perturbed_checkpoint(trainer: Any, folder: Path) -> dict[str, torch.Tensor]:
    """Save the trainer's model with every trained weight changed (the Trainer's save path), then
    put the weights back; returns the saved state."""
    model = trainer.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.5)
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer.save_model(str(folder))
    model.load_state_dict(before)
    return expected


@pytest.fixture(scope="module", params=FAMILIES)
def trainer_and_checkpoint(request, tmp_path_factory) -> tuple[Any, Path, dict]:
    root = tmp_path_factory.mktemp(request.param)
    trainer = make_trainer(request.param, root / "run", rows=4)
    folder = root / "checkpoint-7"
    return trainer, folder, _perturbed_checkpoint(trainer, folder)


def test_resume_loads_every_weight_of_the_checkpoint(trainer_and_checkpoint) -> None:
    trainer, folder, expected = trainer_and_checkpoint
    trainer._load_from_checkpoint(str(folder))
    loaded = trainer.model.state_dict()
    assert loaded.keys() == expected.keys()
    differ = [k for k in expected if not torch.equal(loaded[k], expected[k])]
    assert not differ, f"{len(differ)} of {len(expected)} tensors not restored, e.g. {differ[:3]}"


def test_resume_loads_a_sharded_checkpoint(trainer_and_checkpoint, tmp_path: Path) -> None:
    trainer, _, expected = trainer_and_checkpoint
    model = trainer.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(expected)
    model.save_pretrained(tmp_path, max_shard_size="200KB")
    model.load_state_dict(before)
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    trainer._load_from_checkpoint(str(tmp_path))
    loaded = model.state_dict()
    assert [k for k in expected if not torch.equal(loaded[k], expected[k])] == []


@pytest.mark.parametrize("edit", ["drop", "extra", "reshape"])
def test_resume_fails_loudly_on_a_checkpoint_that_does_not_match(trainer_and_checkpoint,
                                                                tmp_path: Path, edit: str) -> None:
    trainer, folder, _ = trainer_and_checkpoint
    broken = tmp_path / "checkpoint-7"
    shutil.copytree(folder, broken)
    tensors = load_file(broken / "model.safetensors")
    name = sorted(k for k in tensors if "audio_tower" in k)[0]
    if edit == "drop":
        del tensors[name]
    elif edit == "extra":
        tensors["audio_tower.not_a_weight"] = torch.zeros(2)
        name = "audio_tower.not_a_weight"
    else:
        tensors[name] = torch.zeros(3, 1)
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as error:
        trainer._load_from_checkpoint(str(broken))
    assert name in str(error.value) and str(broken) in str(error.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_resume_restores_the_adapter(tmp_path: Path, family: str) -> None:
    """A PEFT model resumes from its adapter (PEFT's own names), not through the full loader."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = make_trainer(family, tmp_path / "run", rows=4, peft_config=lora)
    expected = _perturbed_checkpoint(trainer, tmp_path / "checkpoint-7")
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint-7"))
    loaded = trainer.model.state_dict()
    assert [k for k in expected if not torch.equal(loaded[k], expected[k])] == []


# -- the strong check: cut after checkpoint N, resume, compare with the uninterrupted run -------

@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_resumed_run_is_bit_identical_to_the_uninterrupted_one(tmp_path: Path, monkeypatch,
                                                               family: str) -> None:
    import train

    monkeypatch.setitem(REWARDS, "length", length_reward)
    full = tmp_path / "full"
    train.main(train_argv(family, full))
    log = json.loads((full / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert all(entry["grad_norm"] > 0 for entry in log)  # every step moved the weights
    cut = cut_after(full, 1, tmp_path / "cut")
    train.main(train_argv(family, cut))
    assert_same_run(full, cut, 3)
