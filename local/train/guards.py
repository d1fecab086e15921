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

Example:
    >>> from local.train.guards import batch_audio
    >>> batch_audio({"prompt_ids": None}, expected=False) is None
    True
"""

from __future__ import annotations

from typing import Any

import torch

from local.core.collate import AUDIO_KEYS
from local.train.audio_cache import exclude_from_adapters

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
