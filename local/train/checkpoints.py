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


class _Layout:
    """The model's weight conversion mapping as transformers' loader splits it: renamings, and the
    converters that fuse several stored tensors into one (Qwen3-Omni's MoE experts)."""

    def __init__(self, model: Any) -> None:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming

        mapping = get_model_conversion_mapping(model)
        self.renamings = [t for t in mapping if isinstance(t, WeightRenaming)]
        self.converters = [t for t in mapping if isinstance(t, WeightConverter)]
        # as convert_and_load_state_dict_in_model's pattern_to_converter
        self.by_pattern = {p: c for c in self.converters for p in c.source_patterns}


def model_names(model: Any, keys: Iterable[str], expected: Mapping[str, Any],
                layout: _Layout | None = None) -> dict[str, tuple[str, str | None]]:
    """Checkpoint key -> (the model's tensor name, the converter source pattern it matched or
    None), as `from_pretrained` renames it.

    `save_pretrained` writes the hub layout (Qwen2-Audio `audio_tower.*`, `language_model.*`;
    Omni thinker `model.*` for the language model; Qwen3-Omni's experts one tensor per expert)
    while the loaded model holds `model.audio_tower.*`, `model.language_model.*` and the experts
    fused: the renaming comes from the same tables and the same calls as transformers' loader
    (transformers 5.24 core_model_loading.py, convert_and_load_state_dict_in_model:
    rename_source_key, then the original key when the renamed one is unknown). A key with a
    pattern is one of several stored tensors a converter fuses into that name.
    """
    from transformers.core_model_loading import rename_source_key

    layout = layout or _Layout(model)
    names = {}
    for key in keys:
        name, pattern = rename_source_key(key, layout.renamings, layout.converters,
                                          model.base_model_prefix, expected)
        if name not in expected and key in expected:
            name, pattern = key, None
        names[key] = (name, pattern)
    return names


def _stored_layout(model: Any, name: str, like: torch.Tensor) -> dict[str, torch.Size]:
    """The stored keys (and shapes) `save_pretrained` writes for the model's tensor `name`: the
    reverse conversion transformers saves with (core_model_loading.revert_weight_conversion,
    called by modeling_utils.save_pretrained), run on a meta tensor (no memory)."""
    import torch
    from transformers.core_model_loading import revert_weight_conversion

    stored = revert_weight_conversion(model, {name: torch.empty_like(like, device="meta")})
    return {key: tensor.shape for key, tensor in stored.items()}


def _convert(model: Any, layout: _Layout, folder: str | Path, name: str,
             parts: dict[str, tuple[str, torch.Tensor]], expected: Mapping[str, torch.Tensor]
             ) -> dict[str, torch.Tensor]:
    """The model's tensor `name` (and any other target of its converter) fused from the stored
    tensors `parts` (key -> (source pattern, tensor)), by transformers' own converter: the steps
    of convert_and_load_state_dict_in_model (core_model_loading.py): a copy of the converter per
    target, the tensors added in dot_natural_key order of their keys (the order MergeModulelist
    stacks the experts in), then WeightConverter.convert. First the keys and shapes are checked
    against those save_pretrained writes for `name`, so that a missing, extra or reshaped expert
    is named."""
    from copy import deepcopy

    from transformers.core_model_loading import dot_natural_key

    want = _stored_layout(model, name, expected[name])
    missing = sorted(set(want) - set(parts), key=dot_natural_key)
    unknown = sorted(set(parts) - set(want), key=dot_natural_key)
    reshaped = [f"{key} {tuple(tensor.shape)} vs {tuple(want[key])}"
                for key, (_, tensor) in parts.items() if key in want and tensor.shape != want[key]]
    if missing or unknown or reshaped:
        raise CheckpointError(
            f"{folder}: the checkpoint's tensors for {name} do not match the model: "
            + "; ".join(f"{what}: {_examples(items)}" for what, items in
                        (("missing from the checkpoint", missing),
                         ("tensors the model does not have", unknown),
                         ("shapes differ", reshaped)) if items)
            + ". Resume with the model this run was started with, or start over with "
            "--overwrite_output_dir true.")
    converter = None
    for key in sorted(parts, key=dot_natural_key):
        pattern, tensor = parts[key]
        if converter is None:
            converter = deepcopy(layout.by_pattern[pattern])
        converter.add_tensor(name, key, pattern, tensor)
    assert converter is not None
    fused = {target: value[0] if isinstance(value, list) else value for target, value in
             converter.convert(name, model=model, config=model.config).items()}
    wrong = [f"{target} {tuple(value.shape)}" for target, value in fused.items()
             if target not in expected or value.shape != expected[target].shape]
    if wrong:  # the checks above make this unreachable unless transformers' tables change
        raise CheckpointError(f"{folder}: converting {_examples(parts)} gave tensors the model "
                              f"does not hold: {_examples(wrong)}.")
    return fused


def _last_file(model: Any, folder: str | Path, files: list[Path], expected: Mapping[str, Any],
               layout: _Layout) -> dict[str, int]:
    """Converted tensor name -> the index in `files` of the last file that holds one of its
    stored tensors (the shard index's weight_map); {} for a single file."""
    root = Path(folder)
    index = next((root / i for _, i in _FULL_WEIGHTS if (root / i).is_file()), None)
    if len(files) < 2 or index is None:
        return {}
    order = {path.name: i for i, path in enumerate(files)}
    weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    last: dict[str, int] = {}
    for key, (name, pattern) in model_names(model, weight_map, expected, layout).items():
        if pattern is not None and weight_map[key] in order:
            last[name] = max(last.get(name, 0), order[weight_map[key]])
    return last


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

    Tensors stored split (Qwen3-Omni's MoE experts, one tensor per expert) are fused by
    transformers' converters (`_convert`). Files are read one at a time; the stored parts of a
    fused tensor wait until the last shard holding one of them (the index's weight_map) is
    read, so at most the parts of the layers that a shard boundary cuts are kept beyond their
    shard (a layer's experts are adjacent in save_pretrained's order: in practice one layer).
    """
    from transformers.core_model_loading import dot_natural_key

    files = full_weight_files(folder)
    if not files:
        raise CheckpointError(f"{folder}: no model weights (model.safetensors or shards) to "
                              "resume from.")
    expected = model.state_dict()
    layout = _Layout(model)
    last_file = _last_file(model, folder, files, expected, layout)
    waiting: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}  # name -> key -> (pattern, t)
    loaded: set[str] = set()
    for number, path in enumerate(files):
        stored = _read_weights(path)
        names = model_names(model, stored, expected, layout)
        unexpected = [key for key, (name, _) in names.items() if name not in expected]
        reshaped = [f"{key} {tuple(stored[key].shape)} vs {tuple(expected[name].shape)}"
                    for key, (name, pattern) in names.items()
                    if name in expected and pattern is None
                    and stored[key].shape != expected[name].shape]
        if unexpected or reshaped:
            raise CheckpointError(
                f"{folder}: the checkpoint does not match the model: "
                + "; ".join(f"{what}: {_examples(items)}" for what, items in
                            (("tensors the model does not have", unexpected),
                             ("shapes differ", reshaped)) if items)
                + ". Resume with the model this run was started with, or start over with "
                "--overwrite_output_dir true.")
        direct = {name: stored[key] for key, (name, pattern) in names.items() if pattern is None}
        model.load_state_dict(direct, strict=False)
        loaded.update(direct)
        for key, (name, pattern) in names.items():
            if pattern is not None:
                waiting.setdefault(name, {})[key] = (pattern, stored[key])
        del stored, direct
        final = number == len(files) - 1
        for name in sorted(waiting, key=dot_natural_key):
            if final or last_file.get(name, len(files)) <= number:
                fused = _convert(model, layout, folder, name, waiting.pop(name), expected)
                model.load_state_dict(fused, strict=False)
                loaded.update(fused)
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
