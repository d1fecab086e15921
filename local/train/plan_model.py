"""What the memory planner knows of a model: parameter counts from its config alone (no weights).

`model_shape(name_or_path)` reads the checkpoint's config (a local folder, the hub cache, or the
hub; `local.core.models.load_config`), builds the class train.py would load on the meta device
(Qwen2.5-Omni: the thinker only, as `load_model_and_processor`), and counts its parameters by
part: audio encoder, vision tower (Omni), and the rest (language model, LM head, projector).
The largest layer is counted as DeepSpeed's `model_to_params` does (the parameters a module holds
itself), for its ZeRO-3 estimator. No weight is read and nothing is allocated.

`adapter_counts(shape, peft_config)` counts what LoRA adds, module by module, with PEFT's own
matching (`check_target_module_exists`, `all-linear` expanded as PEFT expands it): r x (in + out)
per adapted layer (+ out for DoRA's magnitude), and a trainable copy of each `modules_to_save`.

Example:
    >>> shape = model_shape("Qwen/Qwen2.5-Omni-7B")                    # doctest: +SKIP
    >>> round(shape.total / 1e9, 2), round(shape.parts["vision tower"] / 1e9, 2)  # doctest: +SKIP
    (8.93, 0.68)
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers

from local.core.families import ModelFamily, family_named
from local.core.models import ModelLoadError, family_of, load_config
from local.train.audio_cache import exclude_from_adapters

AUDIO, VISION, LANGUAGE = "audio encoder", "vision tower", "language model"
# the planner's LoRA suggestion: the attention targets every family states (local.core.families)
ADAPTER_TARGETS_HINT = " ".join(ModelFamily.lora_target_modules)


class PlanError(ValueError):
    """Input the planner cannot use; the message is one line saying what to give instead."""


@dataclass(frozen=True)
class ModelShape:
    """Parameter counts by part and the sizes the activation estimates need."""

    name: str  # as given (hub id or folder)
    model_type: str  # the checkpoint's (qwen2_5_omni, qwen2_5_omni_thinker, qwen2_audio)
    family: str  # qwen2_5_omni | qwen2_audio
    parts: dict[str, int]  # AUDIO / VISION / LANGUAGE -> parameters
    largest_layer: int  # DeepSpeed's largest_layer_params
    lm_head: int
    hidden: int
    layers: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    max_positions: int
    audio_hidden: int
    audio_layers: int
    audio_ffn: int
    max_audio_seconds: float
    pads_audio_to_window: bool
    model: Any = field(default=None, repr=False, compare=False)  # the meta-device model

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def kv_bytes_per_token(self, weight_bytes: int = 2) -> int:
        """K and V of every layer for one token."""
        return self.layers * 2 * self.kv_heads * self.head_dim * weight_bytes


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """The official Omni config makes transformers warn about token ids beyond the audio
    encoder's vocabulary while building the class; nothing the planner reads."""
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)


def _policy_class_and_config(config: Any) -> tuple[Any, Any]:
    family = family_of(config)
    policy = getattr(transformers, family.model_class)
    if config.model_type == family.full_model_type:  # a whole Omni: train.py trains its thinker
        return policy, config.thinker_config
    return policy, config


def _part(name: str) -> str:
    if "audio_tower" in name.split("."):
        return AUDIO
    if "visual" in name.split("."):
        return VISION
    return LANGUAGE


@contextlib.contextmanager
def _without_zero3() -> Iterator[None]:
    """transformers builds a model inside DeepSpeed's zero.Init once a ZeRO-3 run's config is
    registered (train.py under conf/ds_zero3.json: `is_deepspeed_zero3_enabled()`), which cannot
    initialise meta tensors; the counts need a plain meta model, so the registration is lifted
    while it is built."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


@functools.lru_cache(maxsize=4)
def model_shape(name_or_path: str, revision: str | None = None) -> ModelShape:
    """The counts of the model train.py would load from `name_or_path` (config only)."""
    try:
        with _quiet_transformers():
            config = load_config(name_or_path, revision=revision)
        family = family_of(config)
        cls, policy_config = _policy_class_and_config(config)
        with _quiet_transformers(), _without_zero3(), torch.device("meta"):
            model = cls._from_config(policy_config, dtype=torch.bfloat16)
    except ModelLoadError as error:
        raise PlanError(" ".join(str(error).split())) from None
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise PlanError(f"cannot build the model of {name_or_path!r} from its config "
                        f"({' '.join(str(error).split())})") from None
    parts = {AUDIO: 0, VISION: 0, LANGUAGE: 0}
    seen: set[int] = set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) not in seen:  # tied weights count once
            seen.add(id(parameter))
            parts[_part(name)] += parameter.numel()
    if not parts[VISION]:
        del parts[VISION]
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    text = policy_config.get_text_config()
    audio = policy_config.audio_config
    heads = text.num_attention_heads
    return ModelShape(
        name=name_or_path, model_type=config.model_type, family=family.name, parts=parts,
        largest_layer=largest, lm_head=model.get_output_embeddings().weight.numel(),
        hidden=text.hidden_size, layers=text.num_hidden_layers,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
        ffn=_mlp_width(text), vocab=text.vocab_size,
        max_positions=text.max_position_embeddings, audio_hidden=audio.d_model,
        audio_layers=audio.encoder_layers, audio_ffn=audio.encoder_ffn_dim,
        max_audio_seconds=family.max_audio_seconds,
        pads_audio_to_window=family.pad_audio_to_window, model=model)


def _mlp_width(text: Any) -> int:
    """The MLP width one token's activations see: a mixture-of-experts layer runs
    `num_experts_per_tok` experts of `moe_intermediate_size` each (Qwen3-Omni's text layers are
    all sparse: `mlp_only_layers` empty, `decoder_sparse_step` 1, so `intermediate_size` is
    unused); a dense layer its `intermediate_size`."""
    experts = getattr(text, "num_experts_per_tok", None)
    width = getattr(text, "moe_intermediate_size", None)
    if experts and width and not getattr(text, "mlp_only_layers", None):
        return int(experts) * int(width)
    return int(text.intermediate_size)


def _adapter_size(module: torch.nn.Module, r: int, dora: bool) -> int:
    """Parameters LoRA adds to one layer (lora_A + lora_B, DoRA's magnitude)."""
    if isinstance(module, torch.nn.Embedding):
        return r * (module.num_embeddings + module.embedding_dim)
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        kernel = int(torch.tensor(module.kernel_size).prod())
        added = r * module.in_channels // module.groups * kernel + module.out_channels * r
        return added + (module.out_channels if dora else 0)
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        raise PlanError(f"LoRA target {type(module).__name__} is not a layer PEFT adapts "
                        "(Linear, Embedding, Conv); check --lora_target_modules")
    out_features, in_features = weight.shape
    return r * (in_features + out_features) + (out_features if dora else 0)


def _parameter_adapters(shape: ModelShape, config: Any, counts: dict[str, int]) -> int:
    """Add the LoRA of `target_parameters` to `counts`; returns how many parameters matched.

    PEFT's rule (peft 0.21.2 tuners_utils.py, BaseTuner._inject_parameters): a parameter
    `<module>.<name>` is adapted when it equals or ends with `.<target>` (exclude_modules does
    not apply). A 3-D (experts, a, b) tensor gets one LoRA per expert: lora_A (r*E, in) and
    lora_B (out, r*E) (tuners/lora/layer.py, ParamWrapper.get_delta_factors), r*E*(a+b) in all;
    a 2-D one r*(a+b).
    """
    targets = list(config.target_parameters)
    matched = 0
    for name, module in shape.model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            key = f"{name}.{param_name}"
            if not any(key == t or key.endswith(f".{t}") for t in targets):
                continue
            if param.dim() not in (2, 3):
                raise PlanError(f"lora_target_parameters: {key} is a {param.dim()}-D tensor; "
                                "PEFT adapts 2-D weights and 3-D expert stacks")
            experts = param.shape[0] if param.dim() == 3 else 1
            matched += 1
            counts[_part(name)] += config.r * experts * (param.shape[-2] + param.shape[-1])
    return matched


def adapter_counts(shape: ModelShape, peft_config: Any) -> dict[str, int]:
    """Trainable parameters LoRA adds, by part (AUDIO / VISION / LANGUAGE), `modules_to_save`
    copies and `target_parameters` (fused MoE experts) included; a config without targets takes
    the family's where the family states them (Qwen3-Omni, as train.py does); PEFT's refusals
    (no default target modules for this model type, targets that match nothing) as a
    `PlanError`."""
    from peft.tuners.tuners_utils import (
        _maybe_include_all_linear_layers,
        check_target_module_exists,
    )
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    config = copy.deepcopy(peft_config)
    model_type = shape.model.config.model_type
    family = family_named(shape.family)
    if config.target_modules is None and not getattr(config, "target_parameters", None) \
            and family.lora_targets_by_default:  # train.py: guards.family_lora_targets
        config.target_modules = set(family.lora_target_modules)
        config.target_parameters = list(family.lora_target_parameters)
        for module in family.lora_exclude_modules:
            exclude_from_adapters(config, module, f"LoRA targets of {family.name}")
    if config.target_modules is None and getattr(config, "target_parameters", None):
        config.target_modules = set()  # parameters only
    if config.target_modules is None:
        default = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
        if default is None:
            raise PlanError(f"use_peft: PEFT has no default target modules for model_type "
                            f"{model_type} (training would stop the same way after loading the "
                            f"weights); give --lora_target_modules, e.g. {ADAPTER_TARGETS_HINT}")
        config.target_modules = set(default)
    config = _maybe_include_all_linear_layers(config, shape.model)
    counts = {part: 0 for part in shape.parts}
    saved = tuple(getattr(config, "modules_to_save", None) or ())
    matched = _parameter_adapters(shape, config, counts) \
        if getattr(config, "target_parameters", None) else 0
    for name, module in shape.model.named_modules():
        if saved and any(name == s or name.endswith(f".{s}") for s in saved):
            counts[_part(name)] += sum(p.numel() for p in module.parameters())
        elif name and check_target_module_exists(config, name):
            matched += 1
            counts[_part(name)] += _adapter_size(module, config.r, bool(config.use_dora))
    if not matched:
        given = sorted(getattr(config, "target_parameters", None) or [])
        also = f"and lora_target_parameters {given} " if given else ""
        raise PlanError(f"lora_target_modules {sorted(config.target_modules)} {also}match no "
                        f"layer of {shape.name} (PEFT would refuse it); "
                        f"e.g. {ADAPTER_TARGETS_HINT}")
    return counts
