"""`--train_selection`: train on the rows a curation kept (`selection.json` of `python -m
local.curate`), by id, with no copy of the data.

The file names the training data it was made from (`train_data`) and the ids its rule kept
(`ids`, the training rows' own ids: `avqa-train-<row>`). Refused, in one line: a file that is
not such a selection, a selection made from other training data, and ids the data does not
have (the selection would then train on less than it says). A kept id whose row turns out bad
at training time is skipped by the bad-records policy like any other row.

Example:
    >>> from local.train.selection import read_selection                      # doctest: +SKIP
    >>> ids = read_selection("data/curate/Qwen2.5-Omni-7B/1a2b/selection.json", "data/avqa")
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from pathlib import Path

from local.core.records import RecordError


class SelectionError(RecordError):
    """A selection file training cannot use; the message says which and what to do."""


def _same_data(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def read_selection(path: str | Path, train_data: str | Path) -> frozenset[str]:
    """The ids `path` keeps, checked against the training data it is used with."""
    path = Path(path)
    redo = "Run `bash run.sh --stage curate` (or `python -m local.curate`) for this data."
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SelectionError(f"--train_selection {path}: not found. {redo}") from None
    except (OSError, ValueError) as err:
        raise SelectionError(f"--train_selection {path}: not a selection file "
                             f"({type(err).__name__}: {err}). {redo}") from None
    ids = content.get("ids") if isinstance(content, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise SelectionError(f"--train_selection {path}: no list of row ids under 'ids' (a "
                             f"selection.json of local.curate has one). {redo}")
    if not ids:
        raise SelectionError(f"--train_selection {path}: its rule ({content.get('rule')!r}) "
                             "kept no row; pick another with `python -m local.curate --rule`.")
    made_from = content.get("train_data")
    if made_from and not _same_data(made_from, train_data):
        raise SelectionError(f"--train_selection {path} was made from {made_from}, not from "
                             f"--train_data {train_data}; curate this data, or train on that.")
    return frozenset(ids)


def check_found(selection: Collection[str], found: Iterable[str]) -> None:
    """Refuse a selection naming ids the training data does not have (rows skipped as bad
    records are found: they are ids of this data)."""
    missing = sorted(set(selection) - set(found))
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5
                                          else "")
        raise SelectionError(f"--train_selection: {len(missing)} of its {len(selection)} "
                             f"ids are not rows of the training data ({shown}); it was made "
                             "from other data or another split. Curate this data again.")
