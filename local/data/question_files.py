"""The reading loop of the benchmarks released as a question file (MMAU's JSON, MMAR's JSONL).

Each item of the parsed file becomes a `Record` through its dataset's `make_record` (which
refuses what is not an object); an item that cannot (a field missing, an answer that is no
choice) or that repeats an earlier
id is skipped into `report.reasons` with its reason (`errors="raise"`: stop there), and the
evaluators count it wrong; an item whose audio file is missing is kept and listed in
`report.missing_audio`, one warning line for all of them.

Example:
    >>> from local.core.records import ReadReport, Record
    >>> make = lambda item: Record(id=item["id"], audio=None, question="q?",
    ...                            choices=["a", "b"], answer="a")
    >>> report = ReadReport(source="toy")
    >>> [r.id for r in records_of([{"id": "x"}, {"id": "x"}], make, report, check_audio=False)]
    ['x']
    >>> report.reasons[0][0]
    "item 1 (id 'x')"
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from local.core.records import Errors, ReadReport, Record, RecordError, check_errors, skip_or_raise

logger = logging.getLogger(__name__)


def records_of(items: Sequence[Any], make_record: Callable[[Any], Record], report: ReadReport,
               errors: Errors = "skip", *, check_audio: bool = True,
               fetch: str = "bash run.sh --stage prepare") -> Iterator[Record]:
    """Yield the records of `items` in file order (see the module docstring); `fetch` is the
    command the missing-audio warning names."""
    check_errors(errors)
    seen: set[Any] = set()
    for index, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        row_id = f"item {index} (id {item_id!r})"
        try:
            if item_id is not None and item_id in seen:
                raise RecordError("duplicate id; ids must be unique to write results back.")
            record = make_record(item)
        except (RecordError, TypeError) as err:
            skip_or_raise(report, errors, row_id, err)
            continue
        seen.add(item_id)
        if check_audio and not Path(str(record.audio)).exists():
            report.missing_audio.append(record.id)
        report.read += 1
        yield record
    if report.missing_audio:
        logger.warning("%s: %d audio files not found (e.g. %s); those items will be scored "
                       "wrong. Run `%s` to fetch the audio.", report.source,
                       len(report.missing_audio), report.missing_audio[0], fetch)
    logger.info(report.summary())
