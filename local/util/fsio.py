"""Files that readers never see half-written, and folders built once and then skipped.

Two rules, each written once here and used by every stage:

* A file is written to a temporary name beside it and renamed over it (`os.replace`, atomic on
  one filesystem): `atomic_write_text` / `atomic_write_json` for text, `atomic_path` for writers
  that want a path (matplotlib, a download, a copy that is checked before it counts).
* A folder is built under a hidden `.NAME.partial` beside it, gets its `.done` marker last, and
  is then renamed to `NAME` (`building`). An interrupted build leaves `NAME` as it was (absent,
  or the previous complete version) and its partial folder, which the next build clears first;
  a re-run skips a folder whose marker records the same settings (`is_done`).

The `.done` marker has one format: a JSON object of what the folder was made from (source,
revision, settings: whatever the caller passes) plus `finished`, the local time it was written.
`is_done(folder, wanted)` is true when the marker exists and agrees with every key of `wanted`.

Standard library only.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from local.util.fsio import building, is_done
    >>> dest = Path(tempfile.mkdtemp()) / "model"
    >>> with building(dest, {"seed": 0}) as tmp:
    ...     _ = (tmp / "weights.bin").write_bytes(b"...")
    >>> is_done(dest, {"seed": 0}), is_done(dest, {"seed": 1})
    (True, False)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

DONE = ".done"  # the marker a finished folder holds, written last


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`.

    The temporary name is unique to this process and thread; the file gets the permissions a
    plain `open` would give it (the umask applies).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """`atomic_write_text` of pretty-printed JSON (UTF-8, keys in insertion order)."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` for a writer; renamed over `path` when the block succeeds.

    The temporary name is `.NAME.partial` (+ `suffix`, for writers that pick the format from the
    name, e.g. ".png"). When the block raises, the temporary file is removed and `path` is left
    as it was.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "plot.png"
    >>> with atomic_path(target, suffix=".png") as tmp:
    ...     _ = tmp.write_bytes(b"png")
    >>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
    (b'png', ['plot.png'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Folders: built aside, marked done, swapped into place
# ---------------------------------------------------------------------------------------------

def partial_dir(dest: str | Path) -> Path:
    """Where `building(dest)` builds: the hidden folder `.NAME.partial` beside `dest`."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.partial")


def replace_dir(built: str | Path, dest: str | Path) -> None:
    """Put the finished folder `built` at `dest`, removing an older `dest` (or link) first."""
    built, dest = Path(built), Path(dest)
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    os.replace(built, dest)


def read_done(folder: str | Path, marker: str | None = None) -> dict[str, Any] | None:
    """The `.done` marker of `folder` (a dict), or None when absent or not a marker.

    `marker`: another marker name, for a folder holding several parts (data/mmau: test-mini's
    `.done`, the full test's `.done-test`)."""
    try:
        done = json.loads((Path(folder) / (marker or DONE)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def is_done(folder: str | Path, wanted: Mapping[str, Any] | None = None,
            marker: str | None = None) -> bool:
    """True when `folder` holds a `.done` marker that agrees with every key of `wanted`."""
    done = read_done(folder, marker)
    return done is not None and all(done.get(k) == v for k, v in (wanted or {}).items())


def mark_done(folder: str | Path, info: Mapping[str, Any] | None = None,
              marker: str | None = None) -> Path:
    """Write `folder/.done` (the JSON of `info` plus `finished`) atomically; call it last."""
    content = {**(info or {}), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return atomic_write_json(Path(folder) / (marker or DONE), content)


@contextlib.contextmanager
def building(dest: str | Path, done: Mapping[str, Any] | None = None) -> Iterator[Path]:
    """Build a folder for `dest`: yields an empty `.NAME.partial` folder to fill.

    When the block succeeds, its `.done` marker (recording `done`; none when `done` is None, for
    folders whose readers take every file, such as a folder of audio clips) is written last and
    the folder replaces `dest`. When the block raises (or the process dies), `dest` is untouched
    and the partial folder stays where no reader looks; the next `building(dest)` clears it.
    """
    dest = Path(dest)
    tmp = partial_dir(dest)
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted build
    tmp.mkdir(parents=True)
    yield tmp
    if done is not None:
        mark_done(tmp, done)
    replace_dir(tmp, dest)
