"""LoRA weights synced to vLLM are merged out of place: the bf16 base never moves (issue 20).

TRL 1.16 merges the adapters into the base in place and unmerges them at every sync; in bf16
the two roundings do not cancel, and the base (GRPO's KL reference under PEFT) drifts. The
recipe's `merged_state` computes W + s*B@A in fp32, rounds once, and writes nothing. A tiny bf16
model with every LoRA Linear the recipe merges (nn.Linear with and without bias, transformers'
Conv1D with fan_in_fan_out) and a `modules_to_save` head; B is random (non-zero).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers.pytorch_utils import Conv1D
from trl.generation.vllm_generation import VLLMGeneration

from local.train.lora_merge import check_mergeable, merged_state
from local.train.vllm_rollouts import AudioVLLMGeneration

SYNCS = 60


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(32, 64)
        self.q_proj = torch.nn.Linear(64, 64)
        self.v_proj = torch.nn.Linear(64, 64, bias=False)
        self.c_attn = Conv1D(96, 64)  # weight (in, out): peft sets fan_in_fan_out
        self.head = torch.nn.Linear(96, 32)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.c_attn(self.q_proj(self.embed(ids)) + self.v_proj.weight[0]))


def _peft_model(**config: object) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "c_attn"],
                "modules_to_save": ["head"], "lora_dropout": 0.1, **config}
    with warnings.catch_warnings():  # peft: "fan_in_fan_out is set to True" for Conv1D
        warnings.simplefilter("ignore")
        model = get_peft_model(Tiny().to(torch.bfloat16), LoraConfig(**settings))
    for layer in _lora_layers(model):
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.05)  # as if trained
    return model


def _lora_layers(model: torch.nn.Module) -> list[LoraLinear]:
    return [m for m in model.modules() if isinstance(m, LoraLinear)]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def _expected(layer: LoraLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """(W.float() + s * B@A).to(W.dtype) and the fp32 value it rounds."""
    weight = layer.get_base_layer().weight
    delta = layer.lora_B["default"].weight.float() @ layer.lora_A["default"].weight.float()
    exact = weight.float() + layer.scaling["default"] * (delta.T if layer.fan_in_fan_out
                                                         else delta)
    return exact.to(weight.dtype), exact


def _within_rounding(sent: torch.Tensor, exact: torch.Tensor) -> bool:
    """Round-to-nearest bf16 of `exact`: off by at most half an ulp, 2^-8 of its magnitude."""
    return bool(((sent.float() - exact).abs() <= exact.abs() * 2.0 ** -8 + 1e-38).all())


def _generation(model: torch.nn.Module, cls: type = AudioVLLMGeneration) -> VLLMGeneration:
    """A generation object with only what the weight iteration reads (no engine, no ZeRO)."""
    generation = object.__new__(cls)
    generation.model = model
    generation._dist = SimpleNamespace(is_fsdp=False, gather_params=contextlib.nullcontext)
    return generation


def _trl_sync(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """TRL 1.16's PEFT sync (in-place merge, read, unmerge), tensors copied as vLLM would."""
    return [(n, t.clone()) for n, t in VLLMGeneration._iter_named_params(_generation(model))]


def test_merged_sync_leaves_the_base_bit_identical() -> None:
    """60 syncs through the recipe's path (`AudioVLLMGeneration._iter_named_params`): every
    parameter of the model, base and adapters, is bit-identical to before; each merged weight is
    exactly (W.float() + s * B@A).to(bf16), within bf16 rounding of the fp32 value; the rest is
    sent as it is; the names and order are TRL's."""
    model = _peft_model()
    before = _snapshot(model)
    layers = {f"{n.removeprefix('base_model.model.')}.weight": m
              for n, m in model.named_modules() if isinstance(m, LoraLinear)}
    assert len(layers) == 3 and any(m.fan_in_fan_out for m in layers.values())
    generation = _generation(model)
    for _ in range(SYNCS):
        sent = list(generation._iter_named_params())
    assert all(torch.equal(param, before[name]) for name, param in model.named_parameters())

    # TRL's first sync from the same base: the same names in the same order, and on CPU the
    # same tensors bit for bit (peft adds its fp32 delta in fp32 there too, then rounds).
    trl = _trl_sync(copy.deepcopy(model))
    assert [n for n, _ in sent] == [n for n, _ in trl]
    assert "head.weight" in dict(sent) and not any("lora_" in n for n, _ in sent)
    for (name, tensor), (_, trls) in zip(sent, trl, strict=True):
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, trls), name
        if name in layers:
            merged, exact = _expected(layers[name])
            assert torch.equal(tensor, merged) and _within_rounding(tensor, exact), name
            assert not torch.equal(tensor, layers[name].get_base_layer().weight)


def test_trls_in_place_merge_moves_the_base() -> None:
    """The contrast: the same 60 syncs through TRL's own path (peft's merge_adapter and
    unmerge_adapter in place, in bf16) change base weights, which the test above would catch."""
    model = _peft_model()
    before = _snapshot(model)
    for _ in range(SYNCS):
        _trl_sync(model)
    moved = {name: int((param != before[name]).sum()) for name, param in model.named_parameters()
             if not torch.equal(param, before[name])}
    assert moved and all("base_layer.weight" in name for name in moved), moved


def test_lora_bias_is_merged_out_of_place() -> None:
    model = _peft_model(target_modules=["q_proj"], lora_bias=True, modules_to_save=None)
    (layer,) = _lora_layers(model)
    torch.nn.init.normal_(layer.lora_B["default"].bias, std=0.05)
    before = _snapshot(model)
    sent = dict(merged_state(model))
    base_bias = layer.get_base_layer().bias
    bias = (base_bias.float() + layer.scaling["default"] * layer.lora_B["default"].bias.float())
    assert torch.equal(sent["q_proj.bias"], bias.to(torch.bfloat16))
    assert torch.equal(sent["q_proj.weight"], _expected(layer)[0])
    assert all(torch.equal(param, before[name]) for name, param in model.named_parameters())


@pytest.mark.parametrize(("config", "message"), [
    ({"use_dora": True}, "LoRA variant DoraLinearVariant"),
    ({"target_modules": ["embed"], "modules_to_save": None}, "embed is a Embedding adapter"),
])
def test_what_it_cannot_merge_is_refused_in_one_line(config: dict, message: str) -> None:
    model = _peft_model(**config)
    with pytest.raises(ValueError, match=message) as error:
        check_mergeable(model)
    assert "\n" not in str(error.value)


class _Tokenizer:  # what AudioVLLMGeneration reads before its checks: every token known
    unk_token_id = 0

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        return 7 if isinstance(tokens, str) else [7] * len(tokens)


@pytest.mark.parametrize(("config", "fsdp", "message"), [
    ({"use_dora": True}, None, "LoRA variant DoraLinearVariant"),
    ({}, 2, "PEFT under FSDP is not supported"),
], ids=["dora", "fsdp"])
def test_the_rollout_engine_is_refused_before_it_is_built(config: dict, fsdp: int | None,
                                                          message: str) -> None:
    """The trainer's vLLM generation refuses in one line what its sync could not merge, before
    TRL builds the engine (which would fail otherwise: no vLLM here)."""
    plugin = SimpleNamespace(fsdp_version=fsdp) if fsdp else None
    accelerator = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None,
                                                        fsdp_plugin=plugin))
    with pytest.raises(ValueError, match=message) as error:
        AudioVLLMGeneration(model=_peft_model(**config), accelerator=accelerator,
                            processing_class=SimpleNamespace(tokenizer=_Tokenizer()),
                            family=None, served_model="unused")
    assert "\n" not in str(error.value)
