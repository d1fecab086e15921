"""What the report could not use: each input file (or part of one) left out, with the reason.

A run file can be missing, half written, or parse and still not be what the report expects (a
list where an object belongs, a text where a number belongs, NaN). Readers raise
`ReportInputError` for a file they cannot use at all; `LeftOutList` turns that into an entry
(path + reason), logs it as one warning line, and the report lists every entry in its "Left out"
section, so nothing is dropped silently and no bad value reaches a table or a plot.

Example:
    >>> left_out = LeftOutList(Path("exp/grpo"))
    >>> with left_out.reading(Path("exp/grpo/eval/mmau/10/results.json")):
    ...     raise ReportInputError("a JSON array, not an object")
    >>> [entry.line() for entry in left_out]
    ['exp/grpo/eval/mmau/10/results.json: a JSON array, not an object; left out']
    >>> left_out[0].relative(Path("exp/grpo"))
    'eval/mmau/10/results.json'
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("local.run_report")

MAX_EXAMPLES = 3  # parts named in one entry; the others are counted
VALUE = ("value", "values")  # what `add_parts` counts: values, parts (of results), settings
PART = ("part", "parts")
SETTING = ("setting", "settings")


class ReportInputError(ValueError):
    """A run file the report cannot use: unreadable, or parsed but of the wrong shape."""


@dataclass(frozen=True)
class LeftOut:
    """One file (or part of one) the report left out, and why."""

    path: Path
    reason: str

    def line(self) -> str:
        """The one-line warning: the file, what is wrong, that it was left out."""
        return f"{self.path}: {self.reason}; left out"

    def relative(self, run: Path) -> str:
        """The path as the report shows it: relative to the run folder when inside it."""
        try:
            return self.path.relative_to(run).as_posix()
        except ValueError:
            return str(self.path)


class LeftOutList(list[LeftOut]):
    """The entries of one report, in the order found; each is logged once when added."""

    def __init__(self, run: Path) -> None:
        super().__init__()
        self.run = run

    def add(self, path: Path, reason: str) -> None:
        record(self, path, reason)

    def add_parts(self, path: Path, parts: Sequence[str], noun: tuple[str, str] = VALUE) -> None:
        """One entry for the parts of a usable file that were left out (none: nothing added)."""
        if parts:
            self.add(path, summarize(parts, noun))

    @contextlib.contextmanager
    def reading(self, path: Path) -> Iterator[None]:
        """Record a `ReportInputError` raised in the block as `path` left out (and go on)."""
        try:
            yield
        except ReportInputError as err:
            self.add(path, str(err))


def record(entries: list[LeftOut], path: Path, reason: str) -> None:
    """Add `path` left out for `reason` to `entries` and log it as one warning line."""
    entry = LeftOut(Path(path), reason)
    entries.append(entry)
    logger.warning("%s", entry.line())


def summarize(parts: Sequence[str], noun: tuple[str, str] = VALUE) -> str:
    """`parts` as one reason: how many, the first `MAX_EXAMPLES` named.

    >>> summarize(["step 3 'kl' is NaN"])
    "1 value not usable (step 3 'kl' is NaN)"
    >>> summarize(["a", "b", "c", "d"], ("row", "rows"))
    '4 rows not usable (a; b; c; and 1 more)'
    """
    named = "; ".join(parts[:MAX_EXAMPLES])
    more = f"; and {len(parts) - MAX_EXAMPLES} more" if len(parts) > MAX_EXAMPLES else ""
    return f"{len(parts)} {noun[len(parts) != 1]} not usable ({named}{more})"
