"""GPU checks (marker `gpu`, excluded from the default test command; skipped without CUDA).

Run on a GPU node with `bash run.sh --stage test --test_args "-m gpu"`.
"""

from __future__ import annotations

import pytest
import torch

from local.core.models import load_model_and_processor
from tests.helpers import logits_differ, processor_inputs, tiny_checkpoint, tone
from tests.helpers_train import audio_encoder_state, make_trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
FAMILIES = ["qwen2_audio", "qwen2_5_omni"]


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_forward_on_gpu_depends_on_the_audio(family: str) -> None:
    loaded = load_model_and_processor(str(tiny_checkpoint(family)), dtype="bfloat16",
                                      device_map="cuda")
    low = {k: v.cuda() for k, v in processor_inputs(loaded.processor, [tone(2.0, 220)]).items()}
    high = {k: v.cuda() for k, v in processor_inputs(loaded.processor, [tone(2.0, 3000)]).items()}
    for inputs in (low, high):
        inputs["input_features"] = inputs["input_features"].to(torch.bfloat16)
    assert logits_differ(lambda x: loaded.model(**x).logits.float(), low, high, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_grpo_steps_on_gpu_train_the_audio_encoder(tmp_path, family: str) -> None:
    trainer = make_trainer(family, tmp_path, use_cpu="false", bf16="true")  # bf16 autocast
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert next(model.parameters()).is_cuda
    before = audio_encoder_state(model)
    trainer.train()
    after = audio_encoder_state(model)
    assert any(not torch.equal(after[k], v) for k, v in before.items() if ".layers." in k)
