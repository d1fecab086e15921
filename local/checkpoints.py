"""Run-folder bookkeeping: complete checkpoints, the policy's starting folder, the run record.

Example:
    >>> from local.checkpoints import complete_checkpoints
    >>> complete_checkpoints("exp/does-not-exist")
    []
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "adapter_model.safetensors")


def _is_complete(folder: Path, need_state: bool) -> bool:
    has_weights = any((folder / name).exists() for name in WEIGHT_FILES)
    # The HF Trainer writes trainer_state.json last: without it the save was interrupted.
    return has_weights and (not need_state or (folder / "trainer_state.json").exists())


def complete_checkpoints(run_dir: str | Path, *, resumable: bool = False) -> list[Path]:
    """`checkpoint-N` folders of a run whose save finished, oldest first.

    `resumable=True` keeps only those with the trainer state a resume needs.
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


def last_resumable_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint a run can resume from (interrupted saves are passed over)."""
    checkpoints = complete_checkpoints(run_dir, resumable=True)
    return checkpoints[-1] if checkpoints else None


def policy_source(name_or_path: str, cache_dir: str | Path, *, revision: str | None = None) -> str:
    """A folder or hub id whose config names the class TRL must rebuild the reference with.

    A whole Qwen2.5-Omni checkpoint (thinker + talker) is reduced once to its thinker, saved with
    the processor under `cache_dir` (written to a temporary folder, renamed when complete).
    Anything else is returned unchanged.
    """
    from local.models import load_config, load_model_and_processor

    config = load_config(name_or_path, revision=revision)
    if config.model_type != "qwen2_5_omni":
        return name_or_path
    target = Path(cache_dir)
    if (target / ".done").exists():
        return str(target)
    loaded = load_model_and_processor(name_or_path, dtype="auto", revision=revision)
    tmp = target.with_name(target.name + ".tmp")
    loaded.model.save_pretrained(tmp)
    loaded.processor.save_pretrained(tmp)
    (tmp / ".done").write_text(json.dumps({"source": name_or_path, "revision": revision}))
    if target.exists():
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)
    return str(target)


def write_run_record(run_dir: str | Path, config: Any, model_args: Any,
                     argv: list[str] | None = None) -> None:
    """The resolved configuration and the command line, next to the checkpoints."""
    import yaml

    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    resolved = {"training": config.to_dict(), "model": vars(model_args)}
    text = yaml.safe_dump(json.loads(json.dumps(resolved, default=str)), sort_keys=True)
    tmp = root / "resolved_config.yaml.tmp"
    tmp.write_text(text)
    os.replace(tmp, root / "resolved_config.yaml")
    command = " ".join(shlex.quote(a) for a in [sys.executable, *(argv or sys.argv)])
    with open(root / "command.txt", "a") as handle:
        handle.write(command + "\n")
