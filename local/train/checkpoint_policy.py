"""What a run's checkpoints keep on disk, and what they will take.

A checkpoint holds the model weights (and processor: evaluation needs them) and the resume
states: optimizer.pt, scheduler.pt and rng_state*.pth, or under DeepSpeed a global_stepN/ folder
with its 16-bit module copy (ZeRO-1/2) and each rank's optimizer partition (fp32 master weights,
Adam's m and v: 12 bytes per trained parameter). For a 7B model under ZeRO-1 the states are
about 117 GB of a 135 GB checkpoint.

`KeepNewestStates` (train.py registers it under `keep_optimizer_states newest`, the default)
runs after each save: once the new checkpoint is complete and resumable
(`local.runs.checkpoints.resume_problem`), the older checkpoints lose their states
(`local.runs.checkpoints.STATE_FILES`) and keep everything else, so each still evaluates. A
save cut short leaves the previous checkpoint's states in place; a removal cut short leaves the
new checkpoint whole. The folders keep their mtime: transformers' `rotate_checkpoints`
(save_total_limit) sorts by it.

`estimate_disk` / `check_disk`: train.py's free-disk check at start, before the weights load.

Example:
    >>> prune_older_states("exp/does-not-exist", 100)
    []
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from local.core.families import family_for_model_type
from local.runs.checkpoints import STATE_FILES, complete_checkpoints, resume_problem
from local.runs.layout import checkpoint_dir
from local.train.plan import DTYPE_BYTES, read_deepspeed, settings_from
from local.train.plan_memory import split_parameters
from local.train.plan_model import PlanError, model_shape

logger = logging.getLogger(__name__)
GB = 1e9


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def remove_states(checkpoint: Path) -> int:
    """Delete the resume states of `checkpoint` (`STATE_FILES`, in order); bytes freed. The
    folder's mtime is put back."""
    stat = os.stat(checkpoint)
    freed = 0
    for pattern in STATE_FILES:
        for path in sorted(checkpoint.glob(pattern)):
            freed += _size(path)
            _remove(path)
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return freed


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def prune_older_states(run_dir: str | Path, step: int) -> list[tuple[Path, int]]:
    """Remove the resume states of the finished checkpoints before `checkpoint-{step}` once that
    one is resumable; [(checkpoint, bytes freed)]. Newer checkpoints (an earlier attempt beyond
    the resume point) and interrupted saves are left as they are."""
    newest = checkpoint_dir(run_dir, step)
    older = [c for c in complete_checkpoints(run_dir, resumable=True) if _step(c) < step]
    if not older:
        return []
    problem = resume_problem(newest)
    if problem is not None:
        logger.warning("%s is not resumable (%s): %s keep their optimizer states", newest,
                       problem, ", ".join(c.name for c in older))
        return []
    pruned = [(checkpoint, remove_states(checkpoint)) for checkpoint in older]
    pruned = [(checkpoint, freed) for checkpoint, freed in pruned if freed]
    if pruned:
        logger.info("%s complete: optimizer states removed from %s (%.3g GB freed; "
                    "keep_optimizer_states all keeps them)", newest.name,
                    ", ".join(c.name for c, _ in pruned), sum(f for _, f in pruned) / GB)
    return pruned


class KeepNewestStates(TrainerCallback):
    """Only the newest checkpoint keeps its resume states (`prune_older_states`).

    The Trainer calls `on_save` on every rank after its save; the ranks meet first (each wrote
    its own RNG state), then the process that saves (`args.should_save`: rank 0, or each node's
    first with save_on_each_node) removes.
    """

    def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            torch.distributed.barrier()
        if args.should_save:
            prune_older_states(args.output_dir, state.global_step)


# ---------------------------------------------------------------------------------------------
# The free-disk check at train start
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiskEstimate:
    """Bytes one checkpoint and the run take (estimates from the model's config)."""

    weights: int  # model.safetensors (or the LoRA adapter) + processor
    states: int  # optimizer, scheduler, DeepSpeed's states
    saves: int  # checkpoints the run writes from its start step (save_total_limit applied)
    keep: str  # keep_optimizer_states
    init_thinker: int  # a whole Omni model: the thinker train.py extracts once into the run folder
    states_kept: int  # sets of states on disk at once (newest: 2 while a save completes)

    @property
    def checkpoint(self) -> int:
        return self.weights + self.states

    @property
    def run(self) -> int:
        return self.weights * self.saves + self.states * self.states_kept + self.init_thinker


def _saves(config: Any, start_step: int) -> int:
    """Checkpoints written from `start_step` to max_steps (the last step is always saved)."""
    if str(getattr(config.save_strategy, "value", config.save_strategy)) != "steps" \
            or config.max_steps <= 0:
        return 1
    every = config.save_steps if config.save_steps >= 1 else \
        math.ceil(config.max_steps * config.save_steps)
    every = max(1, int(every))
    count = config.max_steps // every - start_step // every + (config.max_steps % every > 0)
    count = max(1, count)
    return min(count, config.save_total_limit) if config.save_total_limit else count


def estimate_disk(config: Any, model_args: Any, start_step: int = 0) -> DiskEstimate | None:
    """One checkpoint and the run, from the model's config (`plan_model.model_shape`: no
    weights read); None when the config cannot be read here (a hub id offline)."""
    try:
        shape = model_shape(model_args.model_name_or_path, model_args.model_revision)
        deepspeed = read_deepspeed(config.deepspeed)
        settings = settings_from(config, model_args, deepspeed, 1, 1, card_gib=1.0)
        trained = sum(split_parameters(shape, settings)[0].values())
    except PlanError:
        return None
    w = DTYPE_BYTES.get(str(config.model_dtype), 2)
    lora = settings.peft is not None
    weights = trained * 4 if lora else shape.total * w  # PEFT saves fp32 adapters only
    if deepspeed is not None:  # fp32 master + m + v per trained parameter, over the ranks
        w16 = 2 if settings.mixed16 else w
        module = trained if lora else shape.total if (settings.zero or 0) < 3 else \
            shape.total - trained  # ZeRO-1/2: the whole module; ZeRO-3: frozen fragments
        states = 12 * trained + w16 * module
    else:  # torch AdamW: m and v in the parameters' dtype
        states = 2 * trained * (4 if lora else w)
    saves = _saves(config, start_step)
    keep = config.keep_optimizer_states
    kept = saves if keep == "all" else min(saves, 2 if start_step == 0 else 1)
    thinker = 0
    family = family_for_model_type(shape.model_type)
    if family is not None and shape.model_type == family.full_model_type and start_step == 0:
        thinker = 2 * shape.total
    return DiskEstimate(weights=weights, states=states, saves=saves, keep=keep,
                        init_thinker=thinker, states_kept=kept)


def check_disk(config: Any, model_args: Any, start_step: int = 0, *, log: bool = True
               ) -> str | None:
    """train.py's check: one line to stop with when output_dir's disk cannot hold two
    checkpoints; a warning when it may not hold the run; else the estimate, logged (`log`: on
    the main process only)."""
    estimate = estimate_disk(config, model_args, start_step)
    if estimate is None:
        return None
    run_dir = Path(config.output_dir).absolute()
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    one = (f"one checkpoint ~{estimate.checkpoint / GB:.3g} GB (weights "
           f"{estimate.weights / GB:.3g} + optimizer states {estimate.states / GB:.3g})")
    if free < 2 * estimate.checkpoint:
        return (f"train.py: {existing} has {free / GB:.3g} GB free, which cannot hold two "
                f"checkpoints ({one}; a save completes before the previous one's states go): "
                f"free space or choose another --output_dir; --check_disk false to go on anyway")
    run = (f"this run ~{estimate.run / GB:.3g} GB at most ({estimate.saves} checkpoints, "
           f"keep_optimizer_states {estimate.keep}"
           + (f", init_thinker {estimate.init_thinker / GB:.3g}" if estimate.init_thinker
              else "") + ")")
    if log and free < estimate.run:
        logger.warning("disk: %s free in %s may not hold this run: %s; %s (estimates; "
                       "save_total_limit or keep_optimizer_states newest make it smaller)",
                       f"{free / GB:.3g} GB", existing, one, run)
    elif log:
        logger.info("disk: %s; %s; %.3g GB free in %s (estimates)", one, run, free / GB,
                    existing)
    return None
