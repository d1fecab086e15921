"""What the rest of the recipe needs to know about a model family: the `ModelFamily` record.

Each family module (`qwen2_audio`, `qwen2_5_omni`, `qwen3_omni_moe`) holds one of these as
`FAMILY`; `local.core.families` keeps the registry and answers by `config.model_type`.

Example:
    >>> from local.core.families import family_named
    >>> family_named("qwen3_omni_moe").audio_token
    '<|audio_pad|>'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFamily:
    """One model family's facts; everything else asks the family, never a global."""

    name: str  # "qwen2_audio" | "qwen2_5_omni" | "qwen3_omni_moe"
    max_audio_seconds: float  # the encoder's window: longer clips are cut (with a count)
    # Qwen2-Audio's encoder needs features padded to the full 30 s window (3000 frames); the Omni
    # encoders take any length, so batches are padded only to their longest clip.
    pad_audio_to_window: bool
    # The transformers class of the policy (the thinker for Omni models), by name: it is looked
    # up in `transformers` when a model is loaded.
    model_class: str = ""
    # config.model_type of a checkpoint the policy class loads as it is ...
    model_type: str = ""
    # ... and of a whole checkpoint (thinker + talker) that is reduced to its thinker, or None.
    full_model_type: str | None = None
    # The audio placeholder the processor expands into one token per audio frame.
    audio_token: str = ""
    # Multimodal markers never to be generated (the audio placeholder among them); those a
    # tokenizer lacks are skipped.
    placeholder_tokens: tuple[str, ...] = ()
    # The model also takes images and video (the Omni thinkers): vLLM engines set their limits
    # to 0.
    vision: bool = False
    # Hub ids of the released checkpoints of this family.
    hub_ids: tuple[str, ...] = ()
    # LoRA targets of the family (PEFT names): modules (a list of leaf names, never a regex:
    # peft 0.21.2 rewrites a regex string to the leaf names it matched for the qwen2_moe-converted
    # model types, qwen3_omni_moe_thinker among them, which drops its scope;
    # peft/utils/transformers_weight_conversion.py, _resolve_string_target_modules), parameters
    # (PEFT `target_parameters`: fused 3-D expert tensors, which no module target reaches), and
    # the submodules kept free of adapters (the towers whose layers share the leaf names).
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_target_parameters: tuple[str, ...] = ()
    lora_exclude_modules: tuple[str, ...] = ()
    # Whether `--use_peft` without targets takes the ones above. False keeps PEFT's own rule
    # (for the Qwen2 families PEFT has no default targets and refuses; the targets above are the
    # planner's suggestion, local/train/plan_model.py).
    lora_targets_by_default: bool = False
    # The name of the mixture-of-experts router submodule in each text layer (its last parts), or
    # None for a dense model; `freeze_router` freezes these (local/train/guards.py).
    router: str | None = None

    @property
    def model_types(self) -> tuple[str, ...]:
        """Every config.model_type this family loads."""
        return tuple(t for t in (self.model_type, self.full_model_type) if t)
