"""A PEFT LoRA model's merged weights, computed out of place: the base weights never move.

TRL 1.16 syncs a LoRA policy to vLLM with peft's `merge_adapter()`, reads the parameters, then
`unmerge_adapter()`: W += s*B@A and W -= s*B@A in place, in the base dtype. In bf16 the two
roundings do not cancel, so every sync nudges the frozen base, which with PEFT is also GRPO's KL
reference (the adapters switched off): measured on CPU with peft 0.21, 1,000 cycles changed 42%
of the base weights (huggingface/trl#6688). `merged_state` yields the same tensors under the
same names without writing into the model: each LoRA Linear's weight is
`(W.float() + sum_a s_a * B_a.float() @ A_a.float()).to(W.dtype)`, one tensor at a time (the
fp32 sum rounded once), and every other parameter as it is.

Plain LoRA on Linear layers (peft's `lora.Linear`: nn.Linear, or transformers' Conv1D with
`fan_in_fan_out`; `lora_bias` included) and LoRA on parameters (peft's `lora.ParamWrapper`,
`target_parameters`: Qwen3-Omni's fused 3-D expert tensors, one LoRA per expert) are merged. A
parameter's delta is peft's own `ParamWrapper.get_delta_weight` (the per-expert einsum, in the
parameter's dtype: in bf16 the delta is rounded once before the fp32 sum, as peft's merge rounds
it; the base is still never written). DoRA and the other LoRA variants, LoRA on embeddings or
convolutions, quantized bases and other tuner types raise one line (`check_mergeable`).
Parameters are read as they are: under DeepSpeed ZeRO-3 the caller gathers them first (as TRL
does, all at once, around the merge).

Example:
    >>> for name, tensor in merged_state(peft_model):  # doctest: +SKIP
    ...     engine_weights[name] = tensor               # base names, no lora_ tensors
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import ParamWrapper
from peft.tuners.tuners_utils import BaseTunerLayer

# the layer, its adapters to add, "weight" | "bias" (lora.Linear) or the wrapped parameter's name
_Merge = tuple[LoraLinear | ParamWrapper, list[str], str]


def base_name(name: str, prefix: str = "lora_") -> str | None:
    """`name` of a PeftModel parameter as the base model's (TRL 1.16's renaming in
    `VLLMGeneration._iter_named_params`), or None for an adapter's own parameter (`prefix`)
    and for the frozen original of a `modules_to_save` module."""
    name = name.removeprefix("base_model.model.").replace(".base_layer", "")
    if prefix in name or "original_module" in name:
        return None
    return name.replace("modules_to_save.default.", "")


def _adapters(layer: LoraLinear | ParamWrapper) -> list[str]:
    """The adapters peft's `merge_adapter()` would add: active, not merged already."""
    merged = set(layer.merged_adapters)
    return [a for a in layer.active_adapters if a in layer.lora_A and a not in merged]


def _plan(model: torch.nn.Module) -> dict[int, _Merge]:
    """id(base parameter) -> what is added to it, for every LoRA layer with adapters to merge;
    one line for a layer this module does not merge."""
    plan: dict[int, _Merge] = {}
    for name, module in model.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        kind = type(module).__name__
        if isinstance(module, ParamWrapper):  # nested wrappers: each names its own parameter
            adapters = _adapters(module)
            if adapters:
                plan[id(module.get_param())] = (module, adapters, module.parameter_name)
            continue
        if not isinstance(module, LoraLinear):
            raise ValueError(f"use_vllm with PEFT: {name} is a {kind} adapter layer; the recipe "
                             "merges plain LoRA on Linear layers and parameters only (peft's "
                             "lora.Linear, lora.ParamWrapper)")
        adapters = _adapters(module)
        variants = sorted({type(module.lora_variant[a]).__name__ for a in adapters
                           if a in module.lora_variant})
        if variants:
            raise ValueError(f"use_vllm with PEFT: {name} uses the LoRA variant "
                             f"{', '.join(variants)} (e.g. use_dora); the recipe merges plain "
                             "LoRA only: turn the variant off")
        base = module.get_base_layer()
        if not isinstance(getattr(base, "weight", None), torch.nn.Parameter) or \
                not base.weight.dtype.is_floating_point:
            raise ValueError(f"use_vllm with PEFT: {name}'s base layer {type(base).__name__} "
                             "has no floating-point weight to merge into (quantized?)")
        if adapters:
            plan[id(base.weight)] = (module, adapters, "weight")
            if any(module.lora_bias.get(a) for a in adapters):
                if getattr(base, "bias", None) is None:
                    raise ValueError(f"use_vllm with PEFT: {name} has lora_bias but its base "
                                     "layer has no bias to merge it into")
                plan[id(base.bias)] = (module, adapters, "bias")
    return plan


def check_mergeable(model: torch.nn.Module) -> None:
    """Raise (one line) if `merged_state(model)` would: a layer it does not merge."""
    _plan(model)


def merged_tensor(layer: LoraLinear | ParamWrapper, adapters: list[str],
                  which: str = "weight") -> torch.Tensor:
    """`layer`'s base weight (or bias, or wrapped parameter) with `adapters` added: in fp32,
    rounded once to the base dtype. A new tensor; the layer is not written."""
    base = getattr(layer.get_base_layer(), which)
    total = base.detach().float()
    if isinstance(layer, ParamWrapper):  # peft's per-expert delta, scaling included
        for adapter in adapters:
            total = total + layer.get_delta_weight(adapter).detach().float()
        return total.to(base.dtype)
    for adapter in adapters:
        scale, b = layer.scaling[adapter], layer.lora_B[adapter]
        if which == "bias":
            total = total + scale * b.bias.detach().float()
            continue
        delta = b.weight.detach().float() @ layer.lora_A[adapter].weight.detach().float()
        total = total + scale * (delta.T if layer.fan_in_fan_out else delta)
    return total.to(base.dtype)


def merged_state(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights of a PeftModel with its active LoRA adapters merged, under the base model's
    names (no `lora_` tensors), in `named_parameters()` order (tied weights once), without
    writing into `model`: merged Linear weights are new tensors, the rest are `param.data`."""
    plan = _plan(model)  # before the first tensor: a refusal sends nothing
    prefix = getattr(model, "prefix", "lora_")
    for name, param in model.named_parameters():
        renamed = base_name(name, prefix)
        if renamed is None:
            continue
        merge = plan.get(id(param))
        yield renamed, param.data if merge is None else merged_tensor(*merge)
