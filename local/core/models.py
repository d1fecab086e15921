"""Load a policy model and its processor from a local folder or a hub id.

The family, and with it the class, is chosen by ``config.model_type`` (never by a path
substring); each family is one module of `local.core.families`:

| model_type              | loads                                         |
|-------------------------|-----------------------------------------------|
| qwen2_audio             | Qwen2AudioForConditionalGeneration            |
| qwen2_5_omni (full)     | its thinker: Qwen2_5OmniThinkerForConditionalGeneration (no talker) |
| qwen2_5_omni_thinker    | Qwen2_5OmniThinkerForConditionalGeneration    |
| qwen3_omni_moe (full)   | its thinker: Qwen3OmniMoeThinkerForConditionalGeneration (no talker) |
| qwen3_omni_moe_thinker  | Qwen3OmniMoeThinkerForConditionalGeneration   |

A LoRA checkpoint (`adapter_config.json`, as `--use_peft` training saves) loads its base model,
applies the adapter and merges it, so evaluation treats it like any other checkpoint.

Example:
    >>> from local.core.models import load_model_and_processor
    >>> loaded = load_model_and_processor(".cache/tiny-omni")            # doctest: +SKIP
    >>> loaded.family.name, loaded.family.max_audio_seconds              # doctest: +SKIP
    ('qwen2_5_omni', 300.0)
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import SafetensorError
from transformers import AutoConfig, AutoProcessor, PretrainedConfig

from local.core.families import (
    FAMILY_NAMES,
    HUB_IDS,
    ModelFamily,
    family_for_model_type,
    family_named,
)

# The checkpoints `--stage prepare` downloads: every family's hub ids (prepare's size table
# covers them; a test keeps the two equal).
SUPPORTED_MODELS = HUB_IDS


class ModelLoadError(RuntimeError):
    """A checkpoint the recipe cannot use; the message says what was found and what to do."""


# ---------------------------------------------------------------------------------------------
# Whole weight files: a save killed mid-write leaves a shorter file, which safetensors (0.8)
# reports with a traceback naming no file ("incomplete metadata, file not fully covered")
# ---------------------------------------------------------------------------------------------

_SINGLE_WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin")
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_INTERRUPTED = ("the save was interrupted (or the copy cut short); save the model again, or "
                "evaluate another step")


def _safetensors_problem(path: Path) -> str | None:
    """Why `path` is no whole safetensors file: its 8-byte header length, the JSON header, and
    the end of the last tensor's data (`data_offsets`) must all lie within the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or 8 + length > size:
            return (f"{path}: truncated or not a safetensors file ({size} bytes, shorter than "
                    f"the header it starts with): {_INTERRUPTED}.")
        try:
            header = json.loads(handle.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items()
                       if k != "__metadata__"), default=0)
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError,
                AttributeError):
            return (f"{path}: not a safetensors file (its header is not the JSON safetensors "
                    f"writes): {_INTERRUPTED}.")
    if 8 + length + end > size:
        return (f"{path}: truncated safetensors file (its header promises {8 + length + end} "
                f"bytes, the file holds {size}): {_INTERRUPTED}.")
    return None


def _torch_file_problem(path: Path) -> str | None:
    """Why `path`, a torch.save zip archive (the format since torch 1.6), is cut short: its
    end-of-archive record is missing. A file in the legacy (pickle) format is not checked."""
    with open(path, "rb") as handle:
        zipped = handle.read(2) == b"PK"
    if zipped and not zipfile.is_zipfile(path):
        return (f"{path}: truncated torch weights file (the zip archive has no end record): "
                f"{_INTERRUPTED}.")
    return None


def weights_problem(folder: str | Path) -> str | None:
    """Why the weight files of a local model folder cannot be loaded, in one line naming the
    file (truncated, not a weights file, a shard its index lists missing), or None: whole, or
    no weight files at all (the loader then says what it misses).

    >>> weights_problem("a/folder/without/weights") is None
    True
    """
    root = Path(folder)
    files = [root / name for name in _SINGLE_WEIGHTS if (root / name).is_file()]
    for index in _SHARD_INDEXES:
        if not (root / index).is_file():
            continue
        try:
            shards = sorted(set(json.loads((root / index).read_text())["weight_map"].values()))
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
            return (f"{root / index}: not a shard index (no JSON weight_map): "
                    f"{_INTERRUPTED}.")
        for shard in shards:
            if not (root / shard).is_file():
                return f"{root / shard}: missing (listed in {index}): {_INTERRUPTED}."
        files += [root / shard for shard in shards]
    for path in files:
        check = _safetensors_problem if path.suffix == ".safetensors" else _torch_file_problem
        problem = check(path)
        if problem is not None:
            return problem
    return None


# Kept for the modules that name a family directly (bench, prepare).
QWEN2_AUDIO = family_named("qwen2_audio")
QWEN2_5_OMNI = family_named("qwen2_5_omni")
QWEN3_OMNI_MOE = family_named("qwen3_omni_moe")


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    family: ModelFamily


def family_of(config: PretrainedConfig) -> ModelFamily:
    """The family of a loaded config, or a clear error for an unsupported model."""
    family = family_for_model_type(getattr(config, "model_type", None))
    if family is None:
        raise ModelLoadError(
            f"model_type {getattr(config, 'model_type', None)!r} is not supported: the recipe "
            f"trains the families {', '.join(FAMILY_NAMES)} (Qwen2-Audio-7B-Instruct, "
            "Qwen2.5-Omni-3B/7B, Qwen3-Omni-30B-A3B-Instruct/-Thinking).")
    return family


def _torch_dtype(dtype: str | torch.dtype | None) -> Any:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ModelLoadError(
            f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32") from None


def load_config(name_or_path: str, *, revision: str | None = None) -> PretrainedConfig:
    """The checkpoint's config, with an actionable error when it cannot be read."""
    try:
        return AutoConfig.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"cannot read a model config from {name_or_path!r} ({error}). Give a checkpoint "
            "folder with config.json, or a hub id; offline, run `bash run.sh --stage prepare` "
            "first or set HF_HOME to a cache that holds the model.") from error


def load_model_and_processor(
    name_or_path: str,
    *,
    dtype: str | torch.dtype | None = "auto",
    attn_implementation: str | None = None,
    device_map: Any = None,
    revision: str | None = None,
) -> LoadedModel:
    """Load the policy (thinker only for Omni) and its processor from a folder or hub id.

    A local folder's weight files are checked first (`weights_problem`): a truncated one is a
    `ModelLoadError` naming it, not a safetensors traceback.
    """
    problem = weights_problem(name_or_path) if Path(name_or_path).is_dir() else None
    if problem is not None:
        raise ModelLoadError(problem)
    adapter = Path(name_or_path) / "adapter_config.json"
    if adapter.is_file() and not (Path(name_or_path) / "config.json").is_file():
        return _load_lora_checkpoint(Path(name_or_path), dtype=dtype,
                                     attn_implementation=attn_implementation,
                                     device_map=device_map)
    config = load_config(name_or_path, revision=revision)
    family = family_of(config)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype), "revision": revision}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    model_class = getattr(transformers, family.model_class)
    try:
        if config.model_type == family.full_model_type:
            # A whole Omni checkpoint: its weights are stored under "thinker."; take that part.
            model = model_class.from_pretrained(
                name_or_path, config=config.thinker_config, key_mapping={r"^thinker\.": ""},
                **kwargs)
        else:
            model = model_class.from_pretrained(name_or_path, **kwargs)
        processor = AutoProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError, SafetensorError) as error:
        raise ModelLoadError(f"cannot load {name_or_path!r} as {family.name}: {error}") from error
    keep_used_weight_conversions(model)
    return LoadedModel(model=model, processor=processor, family=family)


def keep_used_weight_conversions(model: Any) -> None:
    """Keep only the weight conversions the checkpoint's keys used, as the usual loader does.

    transformers 5.24's ZeRO-3 loader keeps the whole conversion table
    (integrations/deepspeed.py, `_load_state_dict_into_zero3_model`: `model_to_load.
    _weight_conversions = weight_mapping`) where the usual one keeps the conversions that matched
    (core_model_loading.py: `[conversion for conversion in weight_mapping if
    conversion.was_used()]`). `save_pretrained` reverses every kept one, so under ZeRO-3 a
    Qwen3-Omni thinker was saved as `thinker.model.thinker.*` and loaded back re-initialised
    (tests/test_qwen3_omni_lora.py, the 2-process ZeRO-3 full run).
    """
    conversions = getattr(model, "_weight_conversions", None)
    if conversions:
        model._weight_conversions = [c for c in conversions if c.was_used()]


def _load_lora_checkpoint(folder: Path, **kwargs: Any) -> LoadedModel:
    """Base model + the LoRA adapter in `folder`, merged; the folder's processor if it has one."""
    from peft import PeftModel

    base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{folder}: adapter_config.json names no base model "
                             "(base_model_name_or_path); cannot rebuild the policy.")
    loaded = load_model_and_processor(base, **kwargs)
    try:
        merged = PeftModel.from_pretrained(loaded.model, str(folder)).merge_and_unload()
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot apply the LoRA adapter in {folder}: {error}") from error
    processor = loaded.processor
    if (folder / "processor_config.json").is_file() or (folder / "tokenizer_config.json").is_file():
        processor = AutoProcessor.from_pretrained(str(folder))
    return LoadedModel(model=merged, processor=processor, family=loaded.family)
