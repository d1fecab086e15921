"""AudioGRPOTrainer's guards against silent paths, and the vision tower it freezes.

Audio in every log-prob pass: every training row carries a clip (a row without one stops at
rollout time), so a loss batch without `input_features`, or a log-prob pass outside a rollout or
loss batch, would make TRL score the completions text-only with no error at all.
`batch_audio` and `require_audio` raise `MissingAudioError` there instead. The one text-only
path left is the trainer's `forward_audio_in_loss=False` (stock TRL's behaviour, for the tests
that show the difference); evaluation's `--no_audio` lives in local/eval and is untouched.

Qwen2.5-Omni's vision tower (`visual`, 676,550,144 parameters in the 7B thinker, 668,684,288 in
the 3B) never runs on audio prompts, so it never gets a gradient, yet as a trainable module it
costs gradient buffers, optimizer states (DeepSpeed allocates them for every trainable parameter)
and gradient sync. The reference recipe (WeST, west/bin/train_grpo.py) trains the whole
`Qwen2_5OmniForConditionalGeneration` and leaves it trainable; `freeze_vision_tower` sets its
`requires_grad` off, which changes no update while weight_decay is 0 (the recipe's default;
with decay, DeepSpeed's AdamW would also shrink the unused weights). `exclude_vision_tower`
keeps LoRA adapters out of it (PEFT would make frozen adapters trainable again).

LoRA targets of a family (`family_lora_targets`): `--use_peft` without targets on a family that
states its own (`ModelFamily.lora_targets_by_default`: Qwen3-Omni) takes them, and
`exclude_family_towers` keeps adapters out of the towers that share their leaf names; the other
families keep PEFT's rule. PEFT's `exclude_modules` does not apply to `target_parameters`
(peft 0.21.2 tuners_utils.py, BaseTuner._inject_parameters matches parameter names only), so a
parameter target must name only text-model tensors (Qwen3-Omni's `mlp.experts.*`: the towers
have no experts); the audio-encoder guard still sees such adapters (`ParamWrapper` is a
`BaseTunerLayer`: local/train/audio_cache.py, tuner_layers).

The MoE router (`freeze_router`, on by default): `freeze_router` sets the routers'
`requires_grad` off after TRL/PEFT wrapped the model. GRPO's updates are small and on-policy, and
rollouts (vLLM or `generate`) route with the weights they are given: a router that moves shifts
which experts every later token reaches, which the importance ratio sees only through the
sampled tokens; frozen, the pretrained load balance holds and the aux loss is not needed.
Others do the same or make it an option: prime-rl (PrimeIntellect-ai/prime-rl#1836,
`freeze_moe_router`, applied after LoRA), xtuner (InternLM/xtuner#1179), instructlab/training
(#669: "router parameters which should be frozen in the training phase"); NeMo's omni3 RL
recipes froze it first, then trained it (NVIDIA-NeMo/labs-molt#74). LoRA leaves it frozen anyway
(it is no target).

Example:
    >>> from local.train.guards import batch_audio
    >>> batch_audio({"prompt_ids": None}, expected=False) is None
    True
"""

from __future__ import annotations

from typing import Any

import torch

from local.core.collate import AUDIO_KEYS
from local.core.families import ModelFamily
from local.train.audio_cache import exclude_from_adapters, tuner_layers

# The rollout batch's per-row names (dataset id and audio file), carried with the rows through
# TRL's shuffle and split so that errors of the loss pass name the row.
ROW_NAMES = "audio_row_names"
VISION_TOWER = "visual"


class MissingAudioError(RuntimeError):
    """A log-prob pass about to run without the audio its rows carry."""


def batch_audio(inputs: dict[str, Any], *, expected: bool) -> dict[str, torch.Tensor] | None:
    """The batch's audio tensors; None when there are none and none are expected, else an error
    (TRL's loss would otherwise score the completions without their audio)."""
    missing = [k for k in AUDIO_KEYS if inputs.get(k) is None]
    if not missing:
        return {k: inputs[k] for k in AUDIO_KEYS}
    if not expected:
        return None
    raise MissingAudioError(
        f"the loss batch has no {', '.join(missing)}, but its rows have audio: the loss would be "
        "a text-only pass. The batch must come from AudioGRPOTrainer's rollout, which returns "
        "each row's features.")


def require_audio(audio: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """`audio` itself; MissingAudioError when a log-prob pass has none."""
    if audio is None:
        raise MissingAudioError(
            "a log-prob pass ran outside a rollout or loss batch with audio: its completions "
            "would be scored without their clips. Call it inside trainer._audio_for_logps(...).")
    return audio


def find_vision_tower(model: Any) -> torch.nn.Module | None:
    """The `visual` submodule of a (possibly wrapped) Qwen2.5-Omni thinker; None if it has none
    (Qwen2-Audio)."""
    for name, module in model.named_modules():
        if name == VISION_TOWER or name.endswith(f".{VISION_TOWER}"):
            return module
    return None


def freeze_vision_tower(model: Any) -> int:
    """Stop gradients into the vision tower (adapters inside it included); returns its parameter
    count (0 without one). Call it on the model as trained, after PEFT wrapped it."""
    tower = find_vision_tower(model)
    if tower is None:
        return 0
    frozen = 0
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen


def exclude_vision_tower(peft_config: Any, model: Any) -> bool:
    """Keep LoRA adapters out of the model's vision tower, where it has one and the config can
    say so (returns whether it did; adapters left there would only get no gradient)."""
    if not hasattr(model, "named_modules") or find_vision_tower(model) is None:
        return False  # Qwen2-Audio (PEFT warns about an exclusion that matches nothing)
    if not hasattr(peft_config, "exclude_modules"):
        return False
    exclude_from_adapters(peft_config, VISION_TOWER, "vision tower")
    return True


def _takes_family_targets(model_args: Any, family: ModelFamily) -> bool:
    return bool(model_args.use_peft) and family.lora_targets_by_default and \
        model_args.lora_target_modules is None and model_args.lora_target_parameters is None


def family_lora_problem(model_args: Any, family: ModelFamily) -> str | None:
    """Why the family's LoRA targets cannot take these options (None: they can, or they do not
    apply): the fused expert tensors take no dropout (peft 0.21.2 tuners/lora/layer.py,
    ParamWrapper.__init__: "does not work with lora_dropout != 0")."""
    if not _takes_family_targets(model_args, family) or not family.lora_target_parameters:
        return None
    if not model_args.lora_dropout:
        return None
    return (f"the LoRA targets of {family.name} include the fused expert tensors "
            f"({', '.join(family.lora_target_parameters)}), which PEFT adapts without dropout "
            f"(lora_dropout is {model_args.lora_dropout})")


def family_lora_targets(model_args: Any, family: ModelFamily) -> str | None:
    """Give TRL's ModelConfig the family's LoRA targets when `--use_peft` names none and the
    family states its own (Qwen3-Omni); returns what was set, for the log, or None (left as it
    is: targets given, no PEFT, or a family that keeps PEFT's rule)."""
    if not _takes_family_targets(model_args, family):
        return None
    problem = family_lora_problem(model_args, family)
    if problem:
        raise ValueError(f"use_peft on {family.name}: {problem}")
    model_args.lora_target_modules = list(family.lora_target_modules)
    model_args.lora_target_parameters = list(family.lora_target_parameters) or None
    return (f"LoRA targets of {family.name}: modules {' '.join(family.lora_target_modules)}; "
            f"parameters {' '.join(family.lora_target_parameters) or '-'}; none in "
            f"{', '.join(family.lora_exclude_modules) or '-'}")


def exclude_family_towers(peft_config: Any, family: ModelFamily) -> None:
    """Keep the family-target config's adapters out of the family's excluded towers."""
    for module in family.lora_exclude_modules:
        exclude_from_adapters(peft_config, module, f"LoRA targets of {family.name}")


def routers(model: Any, family: ModelFamily) -> list[torch.nn.Module]:
    """The family's MoE routers in a (possibly wrapped) model; [] for a dense family."""
    if family.router is None:
        return []
    return [m for name, m in model.named_modules() if name.endswith(f".{family.router}")]


def router_trains(model: Any, family: ModelFamily) -> bool:
    return any(p.requires_grad for r in routers(model, family) for p in r.parameters())


def freeze_router(model: Any, family: ModelFamily) -> int:
    """Stop gradients into the family's routers; returns their parameter count (0 for a dense
    family). Call it on the model as trained, after PEFT wrapped it; adapters inside a router are
    refused (PEFT makes them trainable again whenever adapters are switched on)."""
    found = routers(model, family)
    if any(tuner_layers(r) for r in found):
        raise ValueError(f"freeze_router: the router ({family.router}) holds PEFT adapters; "
                         "leave it out of the LoRA targets, or set freeze_router: false")
    frozen = 0
    for parameter in (p for r in found for p in r.parameters()):
        parameter.requires_grad_(False)
        frozen += getattr(parameter, "ds_numel", parameter.numel())  # ZeRO-3: numel() is 0
    return frozen
