"""Reuse a frozen audio encoder's output: each distinct clip goes through the encoder once.

In a GRPO step every prompt's clip is seen by the encoder G times at generation, and G times
again in every log-prob pass (reference, old policy, policy). When the encoder is frozen its
output for a clip never changes, so `AudioEncoderCache` computes it once per distinct clip and
hands it back for every other row and pass of the rollout.

It works at the audio tower's `forward` (both families call `self.audio_tower(...)`), patched only
inside `attach()`: rows are keyed by their features' bytes (after the cast to the tower's dtype,
which the tower does anyway), misses go through the real encoder in one batch, hits are copied
from the cache. Qwen2-Audio towers take `(batch, mel, 3000)` and a mask; Omni towers take the valid
frames of all rows concatenated, `(mel, frames)`, with `feature_lens`. Towers with identical
weights (a frozen policy encoder and the reference model's) share one store; the sharing is
re-checked at each rollout when any tower's weights were written since (a resume loads them after
the trainer is built). Dropout inside the
encoder (0 in the official configs) is applied once per clip instead of once per row.

Example:
    >>> cache = AudioEncoderCache([policy.model.audio_tower])          # doctest: +SKIP
    >>> with cache.attach():                                            # doctest: +SKIP
    ...     policy(**batch_of_g_copies)  # encoder runs on 1 row, not G  # doctest: +SKIP
    >>> cache.stats["encoded_clips"], cache.stats["reused_rows"]       # doctest: +SKIP
    (1, 3)
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling

_OUTPUT_FLAGS = ("output_attentions", "output_hidden_states")


def find_audio_tower(model: Any) -> torch.nn.Module:
    """The `audio_tower` submodule of a (possibly wrapped) Qwen2-Audio / Omni-thinker model."""
    for name, module in model.named_modules():
        if name == "audio_tower" or name.endswith(".audio_tower"):
            return module
    raise ValueError(f"{type(model).__name__} has no audio_tower submodule")


def audio_output_lengths(tower: torch.nn.Module
                         ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """frames -> (after the convolutions, audio tokens) of an audio tower: Qwen2-Audio's and
    Qwen2.5-Omni's method `_get_feat_extract_output_lengths`; Qwen3-Omni's encoder has none, its
    modeling module holds the function (frames -> audio tokens, 13 per 100 frames), given here
    as both elements (callers read the audio tokens, element 1)."""
    method = getattr(tower, "_get_feat_extract_output_lengths", None)
    if method is not None:
        return method
    function = sys.modules[type(tower).__module__]._get_feat_extract_output_lengths

    def lengths(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = function(frames)
        return tokens, tokens

    return lengths


def encoder_is_frozen(model: Any) -> bool:
    """True when no parameter of the model's audio tower (LoRA adapters included) trains."""
    return not any(p.requires_grad for p in find_audio_tower(model).parameters())


def freeze_audio_tower(model: Any) -> int:
    """Stop gradients into the audio tower, adapters inside it included; returns the parameter
    count. Call it on the model as trained (after PEFT wrapped it): adapters added later train."""
    frozen = 0
    for parameter in find_audio_tower(model).parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen


def _shard(p: torch.Tensor) -> torch.Tensor:
    return getattr(p, "ds_tensor", p)  # ZeRO-3 keeps a rank's shard there


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two towers hold identical parameters (ZeRO-3: this rank's shards)."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    if pa.keys() != pb.keys():
        return False
    with torch.no_grad():
        return all(torch.equal(_shard(pa[k]), _shard(pb[k]).to(_shard(pa[k]).device)) for k in pa)


def _fingerprint(tower: torch.nn.Module) -> tuple:
    """Changes whenever a parameter of `tower` is written or replaced (a load, an optimizer step):
    each tensor's storage and in-place version counter, without reading the weights."""
    def mark(p: torch.Tensor) -> tuple:
        try:
            return p.data_ptr(), p._version
        except RuntimeError:  # tensors without a version counter: always treated as changed
            return p.data_ptr(), object()

    return tuple(mark(_shard(p)) for p in tower.parameters())


def _on_every_rank(flag: bool, every: bool) -> bool:
    """`flag` agreed over all ranks (all of them if `every`, else any) when torch.distributed
    runs: ranks must take the same cached/uncached path, or ZeRO-3's parameter gathers in the
    encoder's forward would wait for each other forever."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN if every else dist.ReduceOp.MAX)
    return bool(value.item())


def tuner_layers(tower: torch.nn.Module) -> list[torch.nn.Module]:
    """PEFT adapter layers (LoRA, ...) inside the tower."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # no PEFT, no adapters
        return []
    return [m for m in tower.modules() if isinstance(m, BaseTunerLayer)]


def _digest(row: torch.Tensor, dtype: torch.dtype) -> str:
    data = row.detach().to(dtype).contiguous()
    raw = data.view(torch.uint8) if data.dim() else data.reshape(1).view(torch.uint8)
    digest = hashlib.blake2b(raw.cpu().numpy().tobytes(), digest_size=16).hexdigest()
    return f"{tuple(row.shape)}:{digest}"


class AudioEncoderCache:
    """Per-clip audio-tower outputs shared by all rows and passes of a rollout (frozen encoders)."""

    def __init__(self, towers: Sequence[torch.nn.Module]):
        self.towers = list(dict.fromkeys(towers))  # unique, in order
        self._stores: dict[int, dict[str, torch.Tensor]] = {}
        self._fingerprints: tuple | None = None
        self.stats: Counter[str] = Counter()
        self.refresh()

    @property
    def shared(self) -> bool:
        """True when every tower reads and writes one store."""
        return len({id(s) for s in self._stores.values()}) == 1

    def refresh(self) -> bool:
        """Re-decide which towers share a store if any tower's weights changed since the last
        decision (a resume loads weights after the trainer is built); returns True if it did.
        Costs a pointer/version scan when nothing changed, a weight comparison when something did.
        """
        fingerprints = tuple(_fingerprint(t) for t in self.towers)
        if not _on_every_rank(fingerprints != self._fingerprints, every=False):
            return False
        self._stores = {}
        for i, tower in enumerate(self.towers):
            twin = next((t for t in self.towers[:i]
                         if _on_every_rank(same_weights(t, tower), every=True)), None)
            self._stores[id(tower)] = self._stores[id(twin)] if twin is not None else {}
        self._fingerprints = fingerprints
        return True

    def clear(self) -> None:
        """Forget all cached outputs and re-check the sharing (call at each new rollout)."""
        for store in self._stores.values():
            store.clear()
        self.refresh()

    @contextlib.contextmanager
    def attach(self) -> Iterator[AudioEncoderCache]:
        """Within this block, the towers' forward reads and fills the cache."""
        patched = []
        try:
            for tower in self.towers:
                if "forward" in vars(tower):
                    raise RuntimeError("audio tower forward is already patched")
                tower.forward = self._cached_forward(tower, tower.forward)
                patched.append(tower)
            yield self
        finally:
            for tower in patched:
                del tower.forward

    def _cached_forward(self, tower: torch.nn.Module, original: Any) -> Any:
        dtype = next(tower.parameters()).dtype

        def forward(input_features: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if args or any(kwargs.get(flag) for flag in _OUTPUT_FLAGS):
                return original(input_features, *args, **kwargs)
            if any(p.requires_grad for p in tower.parameters()) and torch.is_grad_enabled():
                raise RuntimeError("AudioEncoderCache used on an audio tower that trains")
            store = self._stores[id(tower)]  # looked up per call: refresh() may regroup
            if kwargs.get("feature_lens") is not None:
                return self._omni(tower, original, store, dtype, input_features, **kwargs)
            return self._qwen2_audio(original, store, dtype, input_features, **kwargs)

        return forward

    def _misses(self, keys: list[str], store: dict[str, torch.Tensor]) -> list[int]:
        """Index of the first row of each key not in the store; counts hits and misses."""
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in store and key not in first:
                first[key] = i
        self.stats["rows"] += len(keys)
        self.stats["encoded_clips"] += len(first)
        self.stats["reused_rows"] += len(keys) - len(first)
        self.stats["encoder_calls"] += int(bool(first))
        return list(first.values())

    def _qwen2_audio(self, original: Any, store: dict[str, torch.Tensor], dtype: torch.dtype,
                     features: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     **kwargs: Any) -> BaseModelOutput:
        keys = []
        for i in range(features.shape[0]):
            key = _digest(features[i], dtype)
            if attention_mask is not None:  # key padding of the row (every query row is equal)
                key += _digest(attention_mask[i].reshape(-1, attention_mask.shape[-1])[0], dtype)
            keys.append(key)
        missing = self._misses(keys, store)
        if missing:
            index = torch.tensor(missing, device=features.device)
            mask = None if attention_mask is None else attention_mask[index]
            hidden = original(features[index], attention_mask=mask, **kwargs).last_hidden_state
            for i, row in zip(missing, hidden, strict=True):
                store[keys[i]] = row.detach()
        return BaseModelOutput(last_hidden_state=torch.stack([store[k] for k in keys]))

    def _omni(self, tower: Any, original: Any, store: dict[str, torch.Tensor], dtype: torch.dtype,
              features: torch.Tensor, feature_lens: torch.Tensor,
              aftercnn_lens: torch.Tensor | None = None,
              **kwargs: Any) -> BaseModelOutputWithPooling:
        lens = feature_lens.tolist()
        segments = torch.split(features, lens, dim=1)
        keys = [_digest(segment, dtype) for segment in segments]
        missing = self._misses(keys, store)
        if missing:
            index = torch.tensor(missing, device=feature_lens.device)
            sub_lens = feature_lens[index]
            hidden = original(
                torch.cat([segments[i] for i in missing], dim=1), feature_lens=sub_lens,
                aftercnn_lens=None if aftercnn_lens is None else aftercnn_lens[index], **kwargs,
            ).last_hidden_state
            out_lens = audio_output_lengths(tower)(sub_lens)[1].tolist()
            for i, piece in zip(missing, torch.split(hidden, out_lens), strict=True):
                store[keys[i]] = piece.detach()
        hidden = torch.cat([store[k] for k in keys])
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden)


def exclude_from_adapters(peft_config: Any, module: str, why: str) -> None:
    """Keep a PEFT config's adapters out of every submodule named `module` (`exclude_modules`,
    what it already held kept); `why` starts the error for a config without exclude_modules."""
    if not hasattr(peft_config, "exclude_modules"):
        raise ValueError(f"{why}: {type(peft_config).__name__} has no exclude_modules, so its "
                         f"adapters cannot be kept out of {module}.")
    given = peft_config.exclude_modules
    patterns = [rf"(?:.*\.)?{re.escape(module)}(?:\..*)?"]
    if isinstance(given, str):
        patterns.append(given)
    elif given:  # PEFT's list form: a module name, or the last part(s) of one
        patterns += [rf"(?:.*\.)?{re.escape(name)}" for name in given]
    peft_config.exclude_modules = "|".join(f"(?:{p})" for p in patterns)


def exclude_audio_tower(peft_config: Any) -> None:
    """Keep a PEFT config's adapters out of the audio tower (`exclude_modules`, kept as given).

    Freezing adapters inside the encoder would not hold: PEFT sets `requires_grad` again on the
    active adapter whenever adapters are switched back on (TRL does it around every reference
    pass; peft/tuners/tuners_utils.py, BaseTunerLayer.enable_adapters -> set_adapter).
    """
    exclude_from_adapters(peft_config, "audio_tower", "freeze_audio_encoder")
