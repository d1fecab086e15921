"""Run-folder bookkeeping: complete checkpoints, the policy's starting folder, the run record,
and the exact reload of a checkpoint's weights when a run resumes.

The two rules on a `checkpoint-N` folder, defined here only:

- evaluable (`checkpoint_problem`, `is_evaluable`): a finished save (model weights and
  trainer_state.json, which the HF Trainer writes last, after the weights and the processor)
  whose weight files are whole. Evaluation (`local.eval.steps`, `evaluate_*.py --model`) takes
  these.
- resumable (`resume_problem`, `is_resumable`): evaluable, and it holds the states a resume
  needs (`states_problem`): optimizer.pt and scheduler.pt, or under DeepSpeed the global_stepN/
  folder its `latest` file names, with the model and optimizer states. Resume
  (`local.train.config_checks.resolve_resume`) takes the newest of these (`newest_resumable`:
  newer ones that are only evaluable are named) and refuses, by name, one that is only
  evaluable. `keep_optimizer_states newest` (`local.train.checkpoint_policy`) leaves the states
  (`STATE_FILES`) in the newest checkpoint only.

Size: the two rules, the discovery built on them and the exact reload of a checkpoint's
weights are what a checkpoint folder must hold, read in one place; the reload is a third of it.

Example:
    >>> from local.train.checkpoints import complete_checkpoints
    >>> complete_checkpoints("exp/does-not-exist")
    []
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.util.fsio import atomic_write_text, building, is_done
from local.util.gitinfo import code_version

if TYPE_CHECKING:
    import torch

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed exactly; the message names it and what is wrong."""


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "adapter_model.safetensors")
# A full model save (save_pretrained): one file, or shards listed by an index; safetensors first.
_FULL_WEIGHTS = (("model.safetensors", "model.safetensors.index.json"),
                 ("pytorch_model.bin", "pytorch_model.bin.index.json"))


def _is_complete(folder: Path, need_state: bool) -> bool:
    has_weights = any((folder / name).exists() for name in WEIGHT_FILES)
    # The HF Trainer writes trainer_state.json last: without it the save was interrupted.
    return has_weights and (not need_state or (folder / "trainer_state.json").exists())


def complete_checkpoints(run_dir: str | Path, *, resumable: bool = False) -> list[Path]:
    """`checkpoint-N` folders of a run holding model weights, oldest first.

    `resumable=True` keeps only the finished saves (trainer_state.json, written last): the
    candidates of evaluation and resume. `resumable_checkpoints` also wants the resume states.
    """
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir() and _is_complete(entry, resumable):
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def is_finished_save(folder: str | Path) -> bool:
    """Whether `folder` holds model weights and the trainer state (written last)."""
    folder = Path(folder)
    return folder.is_dir() and _is_complete(folder, need_state=True)


# The resume states of a Trainer save (transformers 5.24 Trainer._save_checkpoint:
# _save_optimizer_and_scheduler, _save_scaler, _save_rng_state; DeepSpeed's save_checkpoint:
# global_stepN/, `latest` and its conversion scripts). `keep_optimizer_states newest` removes
# these from older checkpoints, in this order: the files `states_problem` checks go first, so
# a removal cut short never leaves a folder that looks resumable.
STATE_FILES = ("latest", "optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt",
               "rng_state*.pth", "global_step*", "zero_to_fp32.py", "zero_to_torch.py")


def _deepspeed_problem(root: Path) -> str | None:
    latest = root / "latest"
    if not latest.is_file():
        return "no DeepSpeed `latest` file naming its global_stepN/ states"
    tag = latest.read_text().strip()
    match = _CHECKPOINT.match(root.name)
    if match and tag != f"global_step{match.group(1)}":
        return f"DeepSpeed's `latest` names {tag}, not global_step{match.group(1)}"
    states = root / tag
    if not any(states.glob("*model_states.pt")) or not any(states.glob("*optim_states.pt")):
        return f"{tag}/ lacks DeepSpeed's *model_states.pt or *optim_states.pt"
    return None


def states_problem(folder: str | Path) -> str | None:
    """What a finished save lacks to resume exactly, in a few words, or None.

    optimizer.pt and scheduler.pt (the Trainer loads the optimizer only when both are there, and
    goes on with a fresh one otherwise); under DeepSpeed (a `latest` file or a global_step*
    folder) the global_stepN/ folder `latest` names, N the checkpoint's step, with model and
    optimizer states (DeepSpeed loads what `latest` names), and scheduler.pt (the recipe's
    DeepSpeed configs leave the schedule to the Trainer, which saves it beside them).
    """
    root = Path(folder)
    deepspeed = (root / "latest").exists() or any(root.glob("global_step*"))
    if deepspeed and (problem := _deepspeed_problem(root)):
        return problem
    missing = [name for name in ("optimizer.pt", "scheduler.pt")
               if not (root / name).is_file() and not (deepspeed and name == "optimizer.pt")]
    if missing:
        return (f"no {' and no '.join(missing)} (optimizer states removed once a newer "
                "checkpoint was complete, keep_optimizer_states newest, or never saved, "
                "save_only_model true)")
    return None


def resume_problem(folder: str | Path) -> str | None:
    """Why a run cannot resume exactly from `folder`, in one line naming it, or None: the
    evaluable rule (`checkpoint_problem`), then the resume states (`states_problem`)."""
    problem = checkpoint_problem(folder)
    if problem is None and (missing := states_problem(folder)):
        problem = f"{folder} can be evaluated but not resumed: {missing}"
    return problem


def is_resumable(folder: str | Path) -> bool:
    """Whether a run can resume exactly from `folder` (`resume_problem` finds nothing)."""
    return resume_problem(folder) is None


def is_resumable_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` is a finished save holding the resume states (files present; the weight
    files are checked whole by `checkpoint_problem`, which resume runs next)."""
    return is_finished_save(folder) and states_problem(folder) is None


def resumable_checkpoints(run_dir: str | Path) -> list[Path]:
    """The finished saves of a run that hold the resume states, oldest first."""
    return [c for c in complete_checkpoints(run_dir, resumable=True) if states_problem(c) is None]


def newest_resumable(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint a run can resume from, and the newer finished saves passed over
    (each with what it lacks: only evaluable); interrupted saves are not finished saves."""
    passed = []
    for checkpoint in reversed(complete_checkpoints(run_dir, resumable=True)):
        problem = states_problem(checkpoint)
        if problem is None:
            return checkpoint, passed
        passed.append((checkpoint, problem))
    return None, passed


def last_resumable_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint a run can resume from (`newest_resumable`)."""
    return newest_resumable(run_dir)[0]


# ---------------------------------------------------------------------------------------------
# Evaluation: the one rule for which folders may be evaluated (local.eval.steps, evaluate_*.py)
# ---------------------------------------------------------------------------------------------

# Files only a Trainer save writes (transformers 5.24 Trainer._save, _save_checkpoint): a folder
# holding one is a training checkpoint whatever its name.
TRAINER_FILES = ("trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt",
                 "rng_state.pth")


def is_training_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` is a Trainer save: named `checkpoint-N`, or holding a file only a Trainer
    save writes (`TRAINER_FILES`)."""
    root = Path(folder)
    return root.is_dir() and (bool(_CHECKPOINT.match(root.name))
                              or any((root / name).exists() for name in TRAINER_FILES))


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why a training checkpoint cannot be evaluated, in one line, or None when it can.

    The one rule of `local.eval.steps` (which checkpoints a stage evaluates) and of
    `evaluate_*.py --model` (`model_problem`): weights and trainer_state.json (the HF Trainer
    writes it last: without it the save was interrupted or is still being written), as
    `complete_checkpoints(resumable=True)` finds them, and weight files that are whole
    (`local.core.models.weights_problem`: not cut short, every shard present). The optimizer
    states are not needed (`keep_optimizer_states newest` removes them from older checkpoints).
    """
    root = Path(folder)
    if not root.is_dir():
        return f"{root} not found"
    if not _is_complete(root, need_state=True):
        missing = " and ".join(
            what for what, present in (
                ("no weights", any((root / name).exists() for name in WEIGHT_FILES)),
                ("no trainer_state.json", (root / "trainer_state.json").exists()))
            if not present)
        return (f"{root} is incomplete ({missing}: its save was interrupted or is still being "
                "written; evaluate another step, or wait for the save to finish)")
    # Deferred: local.core.models loads torch and transformers, which checkpoint discovery
    # (complete_checkpoints, the report) does not need; every caller of this has them loaded.
    from local.core.models import weights_problem

    return weights_problem(root)


def is_evaluable(folder: str | Path) -> bool:
    """Whether a training checkpoint may be evaluated (`checkpoint_problem` finds nothing)."""
    return checkpoint_problem(folder) is None


def model_problem(name_or_path: str | Path) -> str | None:
    """Why `evaluate_*.py --model name_or_path` cannot be evaluated, in one line, or None.

    A training checkpoint (`is_training_checkpoint`) must pass `checkpoint_problem`, the rule
    the stages use; any other local folder (a base model) only needs whole weight files; a hub
    id (no such folder) is left to the loader.
    """
    root = Path(name_or_path)
    if not root.is_dir():
        return None
    if is_training_checkpoint(root):
        return checkpoint_problem(root)
    from local.core.models import weights_problem  # deferred: see checkpoint_problem

    return weights_problem(root)


def evaluable_checkpoints(run_dir: str | Path) -> tuple[dict[int, Path], dict[int, str]]:
    """({step: folder} of every `checkpoint-N` of a run that may be evaluated, {step: why not}
    of the others), by `checkpoint_problem`."""
    root = Path(run_dir)
    good: dict[int, Path] = {}
    bad: dict[int, str] = {}
    for entry in sorted(root.iterdir()) if root.is_dir() else ():
        match = _CHECKPOINT.match(entry.name)
        if not match or not entry.is_dir():
            continue
        problem = checkpoint_problem(entry)
        if problem is None:
            good[int(match.group(1))] = entry
        else:
            bad[int(match.group(1))] = problem
    return dict(sorted(good.items())), dict(sorted(bad.items()))


def policy_source(name_or_path: str, cache_dir: str | Path, *, revision: str | None = None) -> str:
    """A folder or hub id whose config names the class TRL must rebuild the reference with.

    A whole Qwen2.5-Omni checkpoint (thinker + talker) is reduced once to its thinker, saved with
    the processor under `cache_dir` (built aside and swapped in when complete, its `.done`
    recording the source: `local.util.fsio.building`); a finished `cache_dir` is reused.
    Anything else is returned unchanged.
    """
    # Deferred: local.core.models loads transformers, and evaluation imports this module for
    # checkpoint discovery alone.
    from local.core.models import load_config, load_model_and_processor

    config = load_config(name_or_path, revision=revision)
    if config.model_type != "qwen2_5_omni":
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
    atomic_write_text(root / "resolved_config.yaml", text)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *(argv or sys.argv)])
    with open(root / "command.txt", "a") as handle:
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
