"""Which `checkpoint-N` folders of a run count: the two rules, and the discovery built on them.

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

Standard library at import; `checkpoint_problem` loads `local.core.models` (torch) for its
weight check when called. The exact reload of a checkpoint's weights when a run resumes is
`local.train.checkpoints`; the folder names are `local.runs.layout`'s.

Example:
    >>> from local.runs.checkpoints import complete_checkpoints
    >>> complete_checkpoints("exp/does-not-exist")
    []
"""

from __future__ import annotations

from pathlib import Path

from local.runs.layout import CHECKPOINT_NAME, TRAINER_STATE

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "adapter_model.safetensors")


def _is_complete(folder: Path, need_state: bool) -> bool:
    has_weights = any((folder / name).exists() for name in WEIGHT_FILES)
    # The HF Trainer writes trainer_state.json last: without it the save was interrupted.
    return has_weights and (not need_state or (folder / TRAINER_STATE).exists())


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
        match = CHECKPOINT_NAME.match(entry.name)
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
    match = CHECKPOINT_NAME.match(root.name)
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
TRAINER_FILES = (TRAINER_STATE, "training_args.bin", "optimizer.pt", "scheduler.pt",
                 "rng_state.pth")


def is_training_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` is a Trainer save: named `checkpoint-N`, or holding a file only a Trainer
    save writes (`TRAINER_FILES`)."""
    root = Path(folder)
    return root.is_dir() and (bool(CHECKPOINT_NAME.match(root.name))
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
                ("no trainer_state.json", (root / TRAINER_STATE).exists()))
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
        match = CHECKPOINT_NAME.match(entry.name)
        if not match or not entry.is_dir():
            continue
        problem = checkpoint_problem(entry)
        if problem is None:
            good[int(match.group(1))] = entry
        else:
            bad[int(match.group(1))] = problem
    return dict(sorted(good.items())), dict(sorted(bad.items()))
