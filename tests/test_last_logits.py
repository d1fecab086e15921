"""local/core/last_logits.py: generation's prefill applies the LM head to the last position only.

Both families, tiny checkpoints (float32), a left-padded batch of two prompts of different lengths
with different clips. Each check has its control: the head's input is recorded by a hook of the
test's own, with and without the context (so a disabled mechanism fails the shape check), and
every output is compared with the same call outside the context.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from local.core.collate import encode_batch, render_prompt
from local.core.last_logits import LastLogits, generation_model, last_position_logits
from local.core.models import LoadedModel, load_model_and_processor
from local.core.prompts import build_messages
from local.core.records import Record
from local.eval.generation import GenerationSettings, Generator
from tests.helpers import tiny_checkpoint, tone

FAMILIES = ("qwen2_audio", "qwen2_5_omni")
QUESTIONS = ("Which tone?", "How many beeps do you hear in this clip, and which is the loudest?")
NEW = 6  # new tokens, forced (min_new_tokens) so every step runs


@dataclass
class Case:
    loaded: LoadedModel
    batch: dict[str, torch.Tensor]

    @property
    def model(self) -> Any:
        return self.loaded.model


@pytest.fixture(scope="module", params=FAMILIES)
def case(request: pytest.FixtureRequest) -> Case:
    loaded = load_model_and_processor(str(tiny_checkpoint(request.param)), dtype="float32")
    loaded.model.eval()
    texts = [render_prompt(loaded.processor, build_messages(q)) for q in QUESTIONS]
    batch = dict(encode_batch(loaded.processor, loaded.family, texts,
                              [tone(1.0, 440.0), tone(2.0, 880.0)]))
    assert not bool(batch["attention_mask"][0].all())  # the short prompt is left-padded
    return Case(loaded, batch)


class HeadShapes:
    """The output shape of every call of the model's LM head (a hook of the test's own)."""

    def __init__(self, model: Any) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.handle = model.get_output_embeddings().register_forward_hook(
            lambda module, args, out: self.shapes.append(tuple(out.shape)))

    def remove(self) -> None:
        self.handle.remove()


@pytest.fixture
def head(case: Case) -> Iterator[HeadShapes]:
    shapes = HeadShapes(case.model)
    yield shapes
    shapes.remove()


def _generate(case: Case, cut: bool, **kwargs: Any) -> tuple[Any, LastLogits | None]:
    settings = {"max_new_tokens": NEW, "min_new_tokens": NEW, "do_sample": False, **kwargs}
    with torch.inference_mode():
        if not cut:
            return case.model.generate(**case.batch, **settings), None
        with last_position_logits(case.model) as state:
            return case.model.generate(**case.batch, **settings), state


def test_greedy_tokens_identical_and_prefill_head_sees_one_position(case: Case,
                                                                   head: HeadShapes) -> None:
    full, _ = _generate(case, cut=False)
    prefill_full = head.shapes[0]
    head.shapes.clear()
    cut, state = _generate(case, cut=True)
    assert torch.equal(full, cut)
    rows, length = case.batch["input_ids"].shape
    vocab = case.model.get_output_embeddings().out_features
    assert prefill_full == (rows, length, vocab)  # control: without it, every position
    assert head.shapes[0] == (rows, 1, vocab)     # with it, one position per row
    assert head.shapes == [(rows, 1, vocab)] * NEW
    assert state is not None and state.active and state.prefills_cut == 1


def test_beam_search_scores_and_logits_unchanged(case: Case, head: HeadShapes) -> None:
    """`output_logits` / `output_scores` hold the last position only, with or without it."""
    kwargs = {"num_beams": 2, "return_dict_in_generate": True, "output_logits": True,
              "output_scores": True}
    full, _ = _generate(case, cut=False, **kwargs)
    head.shapes.clear()
    cut, state = _generate(case, cut=True, **kwargs)
    assert torch.equal(full.sequences, cut.sequences)
    for name in ("logits", "scores"):
        for a, b in zip(getattr(full, name), getattr(cut, name), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert head.shapes[0][1] == 1 and state is not None and state.prefills_cut == 1


def test_log_prob_forward_inside_the_context_keeps_full_logits(case: Case) -> None:
    """A forward pass (a log-prob pass) inside the context, even after a generate, is untouched;
    leaving the context removes the hook and the patched prefill."""
    with torch.inference_mode():
        reference = case.model(**case.batch).logits
        with last_position_logits(case.model):
            case.model.generate(**case.batch, max_new_tokens=2, do_sample=False)
            inside = case.model(**case.batch).logits
    assert inside.shape == reference.shape == (*case.batch["input_ids"].shape,
                                               reference.shape[-1])
    torch.testing.assert_close(inside, reference, rtol=0, atol=0)
    assert "_prefill" not in vars(case.model)
    assert not case.model.get_output_embeddings()._forward_pre_hooks


def test_another_caller_of_prefill_gets_full_logits(case: Case) -> None:
    """Only generate's sample / beam loops are cut: a custom decoding method that runs the
    prefill itself (and could read every position) gets all of them."""

    def prefill_logits(model: Any, input_ids: torch.Tensor, logits_processor: Any,
                       stopping_criteria: Any, generation_config: Any, **kwargs: Any) -> Any:
        kwargs.pop("synced_gpus", None)
        return model._prefill(input_ids, generation_config, kwargs).logits

    with torch.inference_mode(), last_position_logits(case.model) as state:
        logits = case.model.generate(**case.batch, custom_generate=prefill_logits,
                                     max_new_tokens=1)
    assert logits.shape[1] == case.batch["input_ids"].shape[1]
    assert state.active and state.prefills_cut == 0


def test_evaluation_generator_uses_it(case: Case, head: HeadShapes) -> None:
    """`local.eval.generation.Generator` generates inside the context: its prefill head call
    sees one position per row."""
    generator = Generator(case.loaded, GenerationSettings(max_new_tokens=2))
    records = [Record(id=f"r{i}", audio=tone(1.0 + i), sampling_rate=16_000, question=q,
                      choices=["a", "b"], answer="a") for i, q in enumerate(QUESTIONS)]
    outputs = generator.generate(records)
    assert all(out.error is None for out in outputs)
    assert head.shapes[0][:2] == (2, 1)


def test_nested_use_is_refused(case: Case) -> None:
    with last_position_logits(case.model), \
            pytest.raises(RuntimeError, match="already active"), \
            last_position_logits(case.model):
        pass
    assert "_prefill" not in vars(case.model)


def test_peft_model_resolves_to_its_base_model(case: Case) -> None:
    peft = pytest.importorskip("peft")
    wrapped = peft.PeftModel(case.model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    try:
        assert generation_model(wrapped) is case.model
        with torch.inference_mode(), last_position_logits(wrapped) as state:
            wrapped.generate(**case.batch, max_new_tokens=2, do_sample=False)
        assert state.active and state.prefills_cut == 1
    finally:
        wrapped.unload()


def test_no_op_where_generate_keeps_one_position_itself() -> None:
    """A model whose forward takes `logits_to_keep` is left alone (generate passes 1)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1))
    with last_position_logits(model) as state:
        assert "_prefill" not in vars(model) and not model.lm_head._forward_pre_hooks
    assert not state.active and "logits_to_keep" in state.reason


def test_refuses_what_is_not_a_generation_model() -> None:
    with pytest.raises(TypeError, match="generation model"), \
            last_position_logits(torch.nn.Linear(2, 2)):
        pass
