"""HF generation without full-vocabulary logits at every prompt position.

Why: transformers' `generate` asks a model for the last position's logits only when the model's
`forward` takes `logits_to_keep` (transformers/generation/utils.py, `GenerationMixin.generate`:
"If the model supports `logits_to_keep` in forward(), set it to 1 ..."). Neither
`Qwen2AudioForConditionalGeneration.forward` nor `Qwen2_5OmniThinkerForConditionalGeneration
.forward` takes it (transformers 5.24): both run `self.lm_head(hidden_states)` on every position,
so a batch's prefill computes prompt length x vocabulary logits (152k columns with the real
vocabulary; 78% of `generate` time measured on CPU) of which `generate` reads one row.

What `last_position_logits(model)` does: while the model generates, its output head
(`get_output_embeddings()`) sees only the last position of the prefill forward. The prefill is
`GenerationMixin._prefill`, called only by the two decoding loops below, and each reads nothing
of its logits but the last position (transformers 5.24, generation/utils.py):

- `_sample` (greedy and sampling): ``next_token_logits = outputs.logits[:, -1].to(copy=True, ...)``;
  `output_logits` stores that row and `output_scores` the processed one, so both are unchanged;
- `_beam_search`: ``logits = model_outputs.logits[:, -1, :].to(copy=True, ...)``, likewise.

Decode steps feed one token per row already. The cut is armed only while `_prefill` runs *and*
was called from one of those two functions (their code objects, checked on the calling frame).
Anything else the model runs inside the context gets full logits: a log-prob forward (a
trainer's old-policy / reference pass), assisted decoding (`_assisted_decoding` keeps
`candidate_length + 1` positions and does not call `_prefill`), a `custom_generate` method.

It is a no-op (the handle's `active` is False) where there is nothing to do or it was not checked:
the model's forward takes `logits_to_keep` (`generate` keeps one position itself), transformers
has no `GenerationMixin._prefill` (another version: warned), or the model has no output head.
It refuses (TypeError) an object that is not a transformers generation model, and (RuntimeError)
a second context on the same model. A PEFT model is resolved to its base model, whose `_prefill`
`generate` calls.

Example:
    >>> with torch.inference_mode(), last_position_logits(model) as cut:   # doctest: +SKIP
    ...     sequences = model.generate(**inputs, max_new_tokens=32)
    >>> cut.active, cut.prefills_cut                                        # doctest: +SKIP
    (True, 1)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation.utils import GenerationMixin

logger = logging.getLogger(__name__)

# The callers of `_prefill` whose use of its logits was read (see the module docstring).
_LAST_POSITION_READERS = tuple(
    getattr(GenerationMixin, name).__code__ for name in ("_sample", "_beam_search")
    if hasattr(GenerationMixin, name))


@dataclass
class LastLogits:
    """What a `last_position_logits` context did: whether it was armed, how many prefill head
    calls it cut to the last position, and why it stayed off (`reason`)."""

    active: bool
    reason: str = ""
    prefills_cut: int = 0


def generation_model(model: Any) -> Any:
    """The transformers model whose `generate` runs the prefill (a PEFT model's base model)."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(target, GenerationMixin) or not isinstance(target, torch.nn.Module):
        raise TypeError(f"last_position_logits needs a transformers generation model, not "
                        f"{type(model).__name__} (unwrap DDP/FSDP wrappers first)")
    return target


def _why_off(target: Any) -> str:
    if target._supports_logits_to_keep():
        return "the model's forward takes logits_to_keep (generate keeps one position itself)"
    if not hasattr(GenerationMixin, "_prefill") or len(_LAST_POSITION_READERS) != 2:
        return ("this transformers has no GenerationMixin._prefill/_sample/_beam_search (checked "
                "against 5.24)")
    if target.get_output_embeddings() is None:
        return "the model has no output head"
    return ""


@contextmanager
def last_position_logits(model: Any) -> Iterator[LastLogits]:
    """Within the block, `model.generate`'s prefill applies the output head to the last position
    only (greedy, sampling, beam search); every other forward keeps full logits."""
    target = generation_model(model)
    reason = _why_off(target)
    if reason:
        if "checked against" in reason:
            logger.warning("last_position_logits is off: %s", reason)
        yield LastLogits(active=False, reason=reason)
        return
    if "_prefill" in vars(target):
        raise RuntimeError("last_position_logits is already active on this model (or its "
                           "_prefill is patched by someone else)")
    state = LastLogits(active=True)
    armed = False

    def cut_to_last(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        hidden = args[0] if args else None
        if not armed or not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 \
                or hidden.shape[1] == 1:
            return None
        state.prefills_cut += 1
        return (hidden[:, -1:, :], *args[1:])

    prefill = target._prefill  # the bound class method

    def last_position_prefill(*args: Any, **kwargs: Any) -> Any:
        nonlocal armed
        # `generate` calls `self._prefill(...)` from the decoding loop: frame 1 is that loop.
        armed = sys._getframe(1).f_code in _LAST_POSITION_READERS
        try:
            return prefill(*args, **kwargs)
        finally:
            armed = False

    handle = target.get_output_embeddings().register_forward_pre_hook(cut_to_last)
    target._prefill = last_position_prefill
    try:
        yield state
    finally:
        handle.remove()
        del target._prefill
