"""The model families the recipe trains and evaluates: one module per family, one registry.

| family (module)  | model_type of the policy | whole checkpoint, reduced to its thinker |
|------------------|--------------------------|------------------------------------------|
| qwen2_audio      | qwen2_audio              | -                                        |
| qwen2_5_omni     | qwen2_5_omni_thinker     | qwen2_5_omni                             |
| qwen3_omni_moe   | qwen3_omni_moe_thinker   | qwen3_omni_moe                           |

Adding a family: a module here with its `FAMILY` record, listed in `FAMILIES`.

Example:
    >>> from local.core.families import family_for_model_type
    >>> family_for_model_type("qwen3_omni_moe").name
    'qwen3_omni_moe'
    >>> family_for_model_type("bert") is None
    True
"""

from __future__ import annotations

from local.core.families import qwen2_5_omni, qwen2_audio, qwen3_omni_moe
from local.core.families.base import ModelFamily

FAMILIES: tuple[ModelFamily, ...] = (qwen2_audio.FAMILY, qwen2_5_omni.FAMILY,
                                     qwen3_omni_moe.FAMILY)
FAMILY_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
HUB_IDS: tuple[str, ...] = tuple(h for f in FAMILIES for h in f.hub_ids)


def family_for_model_type(model_type: str | None) -> ModelFamily | None:
    """The family that loads a config of this model_type, or None."""
    return next((f for f in FAMILIES if model_type in f.model_types), None)


def family_named(name: str) -> ModelFamily:
    """The family called `name` (see FAMILY_NAMES)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise ValueError(f"unknown model family {name!r}; choose one of {FAMILY_NAMES}")


__all__ = ["FAMILIES", "FAMILY_NAMES", "HUB_IDS", "ModelFamily",
           "family_for_model_type", "family_named"]
