"""Where the report goes: a place it cannot be written is one line naming the path.

`check` runs before anything is read (an unwritable `--out` fails at once, not after the
plots); `writing` turns an OSError while writing (disk full, a folder removed meanwhile) into
the same `ReportOutputError`, which `python -m local.run_report` prints as its only line.

Example:
    >>> check(Path("/dev/null/report.md"))
    Traceback (most recent call last):
    ...
    local.run_report.output.ReportOutputError: /dev/null/report.md: cannot write the report there \
(/dev/null is not a folder)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class ReportOutputError(Exception):
    """The report (or its plots) cannot be written at a path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: cannot write the report there ({reason})")
        self.path = path


def _existing(folder: Path) -> Path:
    """`folder` or its nearest parent that exists (the one new folders would be made in)."""
    return next((p for p in [folder, *folder.parents] if p.exists() or p.is_symlink()),
                Path("."))


def check(path: Path, folder: bool = False) -> None:
    """Raise `ReportOutputError` unless a file `path` (or, with `folder`, files inside the
    folder `path`) can be written: no file stands where a folder must be, and the folder that
    exists (or would hold the new ones) is writable. Makes nothing."""
    where = path if folder else path.parent
    if not folder and path.is_dir():
        raise ReportOutputError(path, "it is a folder")
    existing = _existing(where)
    if not existing.is_dir():
        raise ReportOutputError(path, f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ReportOutputError(path, f"{existing} is not writable")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError of the block (writing `path`) into a `ReportOutputError`."""
    try:
        yield
    except OSError as err:
        raise ReportOutputError(Path(err.filename or path), err.strerror or str(err)) from err
