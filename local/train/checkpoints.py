"""What train.py writes and reads back besides the checkpoint rules: the policy's starting
folder, the run record, and the exact reload of a checkpoint's weights when a run resumes.

Which `checkpoint-N` folders are finished, evaluable or resumable is `local.runs.checkpoints`
(read by evaluation and the report too); the names of a run folder are `local.runs.layout`.

Example:
    >>> from local.train.checkpoints import full_weight_files
    >>> full_weight_files("exp/does-not-exist")
    []
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.core.families import family_for_model_type
from local.runs.layout import COMMAND_FILE, RUN_RECORD
from local.util.fsio import atomic_write_text, building, is_done
from local.util.gitinfo import code_version

if TYPE_CHECKING:
    import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed exactly; the message names it and what is wrong."""


# A full model save (save_pretrained): one file, or shards listed by an index; safetensors first.
_FULL_WEIGHTS = (("model.safetensors", "model.safetensors.index.json"),
                 ("pytorch_model.bin", "pytorch_model.bin.index.json"))


def policy_source(name_or_path: str, cache_dir: str | Path, *, revision: str | None = None) -> str:
    """A folder or hub id whose config names the class TRL must rebuild the reference with.

    A whole Omni checkpoint (Qwen2.5-Omni, Qwen3-Omni: thinker + talker; the family's
    `full_model_type`) is reduced once to its thinker, saved with
    the processor under `cache_dir` (built aside and swapped in when complete, its `.done`
    recording the source: `local.util.fsio.building`); a finished `cache_dir` is reused.
    Anything else is returned unchanged.
    """
    # Deferred: local.core.models loads transformers, which the run record and the weight
    # reload do not need.
    from local.core.models import load_config, load_model_and_processor

    config = load_config(name_or_path, revision=revision)
    family = family_for_model_type(config.model_type)
    if family is None or config.model_type != family.full_model_type:
        return name_or_path
    target = Path(cache_dir)
    if is_done(target):
        return str(target)
    loaded = load_model_and_processor(name_or_path, dtype="auto", revision=revision)
    with building(target, {"source": name_or_path, "revision": revision}) as tmp:
        loaded.model.save_pretrained(tmp)
        loaded.processor.save_pretrained(tmp)
    return str(target)


def write_run_record(run_dir: str | Path, config: Any, model_args: Any,
                     argv: list[str] | None = None) -> None:
    """The resolved configuration and the command line, next to the checkpoints."""
    import yaml

    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    resolved = {"training": config.to_dict(), "model": vars(model_args),
                "code": code_version()}  # the commit that trained (the report shows it)
    text = yaml.safe_dump(json.loads(json.dumps(resolved, default=str)), sort_keys=True)
    atomic_write_text(root / RUN_RECORD, text)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *(argv or sys.argv)])
    with open(root / COMMAND_FILE, "a") as handle:
        handle.write(command + "\n")


# ---------------------------------------------------------------------------------------------
# Resume: the checkpoint's weights, under the names the loaded model uses, all of them
# ---------------------------------------------------------------------------------------------

def full_weight_files(folder: str | Path) -> list[Path]:
    """The files of a full `save_pretrained` model in `folder` (shards via their index); [] when
    it holds none (a LoRA adapter only)."""
    root = Path(folder)
    for single, index in _FULL_WEIGHTS:
        if (root / single).is_file():
            return [root / single]
        if (root / index).is_file():
            weight_map = json.loads((root / index).read_text())["weight_map"]
            return [root / name for name in sorted(set(weight_map.values()))]
    return []


def restores_full_weights(model: Any, folder: str | Path) -> bool:
    """Whether `load_full_weights` is the way to resume `model` from `folder` (a PEFT model
    resumes from its adapter, which PEFT names itself)."""
    from transformers.trainer_utils import _is_peft_model

    return not _is_peft_model(model) and bool(full_weight_files(folder))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    import torch
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_names(model: Any, keys: Iterable[str], expected: Mapping[str, Any]) -> dict[str, str]:
    """Checkpoint key -> the model's parameter name, as `from_pretrained` renames it.

    `save_pretrained` writes the hub layout (Qwen2-Audio `audio_tower.*`, `language_model.*`;
    Omni thinker `model.*` for the language model) while the loaded model holds
    `model.audio_tower.*`, `model.language_model.*`: the renaming comes from the same tables
    and the same calls as transformers' loader (transformers 5.24 core_model_loading.py,
    convert_and_load_state_dict_in_model: rename_source_key, then the original key when the
    renamed one is unknown). A key that needs a tensor conversion (fused or split weights) is
    an error: resume replays renames only.
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    mapping = get_model_conversion_mapping(model)
    renamings = [t for t in mapping if isinstance(t, WeightRenaming)]
    converters = [t for t in mapping if isinstance(t, WeightConverter)]
    names = {}
    for key in keys:
        name, converted = rename_source_key(key, renamings, converters, model.base_model_prefix,
                                            expected)
        if name not in expected and key in expected:
            name, converted = key, None
        if converted is not None:
            raise CheckpointError(f"{key}: stored in a converted layout ({converted}) that resume "
                                  "does not rebuild; resume with a checkpoint of this recipe.")
        names[key] = name
    return names


def _tied_aliases(model: Any) -> dict[str, set[str]]:
    """Parameter name -> the names tied to it (both directions); save_pretrained stores one."""
    aliases: dict[str, set[str]] = {}
    for target, source in (getattr(model, "all_tied_weights_keys", None) or {}).items():
        aliases.setdefault(target, set()).add(source)
        aliases.setdefault(source, set()).add(target)
    return aliases


def _examples(names: Iterable[str], n: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def load_full_weights(model: Any, folder: str | Path) -> int:
    """Load the full model saved in `folder` into `model` in place; returns the tensors loaded.

    Every tensor the model holds must come from the checkpoint (tied copies aside), under its
    renamed name and with its shape, and every stored tensor must land somewhere: anything else
    raises `CheckpointError` naming the tensors, never a warning.
    """
    files = full_weight_files(folder)
    if not files:
        raise CheckpointError(f"{folder}: no model weights (model.safetensors or shards) to "
                              "resume from.")
    expected = model.state_dict()
    loaded: set[str] = set()
    for path in files:
        stored = _read_weights(path)
        names = model_names(model, stored, expected)
        unexpected = [key for key, name in names.items() if name not in expected]
        reshaped = [f"{key} {tuple(stored[key].shape)} vs {tuple(expected[name].shape)}"
                    for key, name in names.items()
                    if name in expected and stored[key].shape != expected[name].shape]
        if unexpected or reshaped:
            raise CheckpointError(
                f"{folder}: the checkpoint does not match the model: "
                + "; ".join(f"{what}: {_examples(items)}" for what, items in
                            (("tensors the model does not have", unexpected),
                             ("shapes differ", reshaped)) if items)
                + ". Resume with the model this run was started with, or start over with "
                "--overwrite_output_dir true.")
        model.load_state_dict({names[key]: value for key, value in stored.items()}, strict=False)
        loaded.update(names.values())
    aliases = _tied_aliases(model)
    missing = [name for name in expected
               if name not in loaded and not aliases.get(name, set()) & loaded]
    if missing:
        raise CheckpointError(
            f"{folder}: {len(missing)} of the model's {len(expected)} tensors are missing from "
            f"the checkpoint: {_examples(missing)}. The checkpoint is incomplete or from another "
            "model; resume from an earlier checkpoint or start over with --overwrite_output_dir "
            "true.")
    return len(loaded)
