"""Evaluation files: resumable per-rank prediction logs and the run's settings guard.

Each rank appends one JSON line per prediction to ``<out_dir>/partial/rank<R>.jsonl`` and flushes
it, so a killed run loses at most the line being written. On restart every rank reads all the
logs (any world size), skips the items already done, and first cuts a torn last line off its own
log. Rank 0 merges the logs once at the end. Final files are written to a temporary name and
renamed (`local.util.fsio`), so a reader never sees half a file.

Example:
    >>> import tempfile
    >>> from local.eval.prediction_log import PredictionLog, read_logs
    >>> folder = tempfile.mkdtemp()
    >>> with PredictionLog(folder, rank=0) as log:
    ...     log.append({"id": "q1", "response": "<answer>Man</answer>"})
    >>> sorted(read_logs(folder))
    ['q1']
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

from local.util.dist import DistContext, shard
from local.util.fsio import atomic_write_json

logger = logging.getLogger(__name__)

PARTIAL_DIR = "partial"
SETTINGS_FILE = "eval_settings.json"


def _repair_tail(path: Path) -> int:
    """Cut a torn last line (no trailing newline) off `path`; return the bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as handle:
        handle.truncate(keep)
    return len(data) - keep


class PredictionLog:
    """Append-only JSONL of one rank's predictions; each line is flushed as soon as written."""

    def __init__(self, out_dir: str | Path, rank: int) -> None:
        self.path = Path(out_dir) / PARTIAL_DIR / f"rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        removed = _repair_tail(self.path)
        if removed:
            logger.warning("%s: dropped a torn last line (%d bytes) left by an interrupted run.",
                           self.path, removed)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def append(self, entry: dict[str, Any]) -> None:
        if "id" not in entry:
            raise ValueError(f"prediction {entry!r} has no id.")
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_logs(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every logged prediction under `out_dir`, by id (first wins); unreadable lines skipped."""
    done: dict[str, dict[str, Any]] = {}
    bad = 0
    for path in sorted((Path(out_dir) / PARTIAL_DIR).glob("rank*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    done.setdefault(str(entry["id"]), entry)
                except (json.JSONDecodeError, KeyError, TypeError):
                    bad += 1
    if bad:
        logger.warning("%s: skipped %d unreadable log lines (an interrupted write); those items "
                       "are predicted again.", out_dir, bad)
    return done


def clear(out_dir: str | Path, names: list[str]) -> None:
    """Remove the logs, the settings file and the named final files (for --overwrite)."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / PARTIAL_DIR, ignore_errors=True)
    for name in [SETTINGS_FILE, *names]:
        (out_dir / name).unlink(missing_ok=True)


def check_settings(out_dir: str | Path, settings: dict[str, Any], write: bool = True) -> None:
    """Refuse to mix predictions made with different settings; record them (if `write`).

    Every rank checks (so all stop together); only rank 0 writes.
    """
    path = Path(out_dir) / SETTINGS_FILE
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
        if changed and read_logs(out_dir):
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise SystemExit(f"{out_dir} holds predictions made with other settings ({details}). "
                             "Pass --overwrite to start over, or another --out_dir.")
    if write:
        atomic_write_json(path, settings)


T = TypeVar("T")


@dataclass
class ShardRun(Generic[T]):
    """This rank's part of a resumable run: what is left, its backend, its log and bar."""

    todo: list[Any]
    backend: T | None
    log: PredictionLog
    bar: Any  # tqdm


@contextlib.contextmanager
def resumable_shard(records: Sequence[Any], work_dir: Path, dist: DistContext,
                    make_backend: Callable[[], T], *, settings: dict[str, Any] | None,
                    desc: str, verb: str) -> Iterator[ShardRun[T]]:
    """The settings guard, this rank's shard (`items[rank::world_size]`) minus what any rank
    logged before, the backend (made only if something is left, so a finished step loads no
    model), this rank's log and rank 0's progress bar. Evaluation (`local.eval.runner.predict`)
    and curation (`local.curate.scoring.score_pass`) share it."""
    if settings is not None:
        check_settings(work_dir, settings, write=dist.is_main)
    dist.barrier()
    mine = shard(records, dist.rank, dist.world_size)
    done = read_logs(work_dir)
    todo = [r for r in mine if r.id not in done]
    if dist.is_main:
        logger.info("%s: %d items, %d done by an earlier run, %d to %s on %d rank(s)",
                    desc, len(records), sum(r.id in done for r in records), len(todo), verb,
                    dist.world_size)
    backend = make_backend() if todo else None
    share = f" (rank 0 of {dist.world_size})" if dist.world_size > 1 else ""
    with PredictionLog(work_dir, dist.rank) as log, tqdm(
            total=len(mine), initial=len(mine) - len(todo), desc=desc + share, unit="item",
            disable=not dist.is_main) as bar:  # rank 0's share: about 1/world_size of the run
        yield ShardRun(todo, backend, log, bar)
