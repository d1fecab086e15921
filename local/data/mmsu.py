"""MMSU (evaluation): yuantuo666/MMSU-full_5k_hf_format.v0, or the official columns; its reader.

Layouts read: a `datasets` object, a save_to_disk folder, or a hub snapshot of parquet files
(streamed, never copied). Columns: hf-format `options` + `answer_index`, or the official
`choice_a`..`choice_d` + `answer_gt`; `key` (else `id`) is the record id; every other column
(category, sub-category, ...) goes to meta. Options are kept by position ('None' padding of
two-choice items kept), so option i is letter "ABCD"[i] in every protocol.

Example:
    >>> records = list(read_mmsu("data/mmsu"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from local.core.records import (
    Errors,
    ReadReport,
    Record,
    RecordError,
    audio_from_cell,
    check_errors,
    skip_or_raise,
    undecoded,
)

logger = logging.getLogger(__name__)
HUB_ID = "yuantuo666/MMSU-full_5k_hf_format.v0"

_MMSU_CHOICE_KEYS = ("choice_a", "choice_b", "choice_c", "choice_d")
_MMSU_CONSUMED = {"audio", "question", "options", "answer_index", "answer_gt", *_MMSU_CHOICE_KEYS}


def _open_mmsu(source: str | Path | Any, split: str) -> tuple[Any, str]:
    """A row iterable for MMSU from a datasets object, a save_to_disk folder or parquet files."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        names = list(source)
        return source[split if split in source else names[0]], f"MMSU ({names})"
    if not isinstance(source, (str, Path)):
        return source, "MMSU"
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: MMSU not found; run `bash run.sh --stage prepare` or "
                                "pass the folder holding the MMSU snapshot.")
    if path.is_dir() and ((path / "state.json").exists()
                          or (path / "dataset_dict.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        return _open_mmsu(loaded, split)[0], f"MMSU ({path})"
    files = _mmsu_parquet_files(path, split)
    # streaming: rows are read from the parquet files on demand, no cache copy is built
    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train",
                               streaming=True)
    return ds, f"MMSU ({path})"


def _mmsu_parquet_files(path: Path, split: str) -> list[Path]:
    """The parquet files of `split` in an MMSU snapshot folder (or `path` itself, a file)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{path}: no save_to_disk folder and no .parquet files; expected "
                                "the yuantuo666/MMSU-full_5k_hf_format.v0 snapshot.")
    chosen = [f for f in files if f.name.startswith(f"{split}-") or f.parent.name == split]
    return chosen or files


def mmsu_row_count(source: str | Path | Any, split: str = "train") -> int | None:
    """How many rows `read_mmsu(source, split=split)` goes through, from metadata alone (parquet
    footers, a saved dataset's length), for a progress bar's total; None where not known."""
    try:
        ds, _ = _open_mmsu(source, split)
        if hasattr(ds, "__len__"):
            return len(ds)
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows
                   for f in _mmsu_parquet_files(Path(source), split))
    except (OSError, ValueError, TypeError):  # unreadable: read_mmsu itself says why
        return None


def _mmsu_choices_answer(row: dict[str, Any]) -> tuple[list[str], str, int]:
    """(choices, answer text, answer index): MMSU's options by position, the one definition.

    hf-format rows: `options` as stored, 'None' padding of two-choice items kept, so option i
    is letter "ABCD"[i] in every protocol and a real "None" option stays. Official rows:
    `choice_a`..`choice_d` by position (trailing blank ones dropped, the letter prompt writes
    them back as blanks, as the official script does) and `answer_gt`, the answer's text.
    """
    if "options" in row and "answer_index" in row:
        options, index = row["options"], row["answer_index"]
        if not isinstance(options, (list, tuple)) or not options:
            raise RecordError(f"options {options!r} is not a non-empty list.")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index < len(options):
            raise RecordError(f"answer_index {index!r} is not a valid index into "
                              f"{len(options)} options.")
        return list(options), options[index], int(index)
    if "answer_gt" in row and any(k in row for k in _MMSU_CHOICE_KEYS):
        choices = ["" if row.get(k) is None else str(row[k]) for k in _MMSU_CHOICE_KEYS]
        while choices and not choices[-1].strip():
            choices.pop()
        answer = row["answer_gt"]
        if answer not in choices:
            raise RecordError(f"answer_gt {answer!r} is not one of the choices {choices}.")
        return choices, answer, choices.index(answer)
    raise RecordError("neither hf-format columns (options, answer_index) nor official MMSU "
                      "columns (choice_a..choice_d, answer_gt) are present.")


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


def read_mmsu(
    path_or_dataset: str | Path | Any,
    *,
    split: str = "train",
    audio_dir: str | Path | None = None,
    errors: Errors = "skip",
    report: ReadReport | None = None,
) -> Iterator[Record]:
    """Yield MMSU records (hf-format or official columns) without decoding any audio.

    Sources: a `datasets` object, a save_to_disk folder, or a hub snapshot of parquet files
    (streamed). Choices are `options` by position, 'None' padding of two-choice items kept
    (`_mmsu_choices_answer`); `meta["answer_index"]` is the answer's position. `id` is `key`
    (else `id`, else the row number); every
    other column (category, linguistics_sub_discipline, ...) goes to meta. Relative audio paths
    resolve under `audio_dir`. Items without audio are kept (audio None, listed in
    `report.missing_audio`) so evaluation scores them wrong instead of dropping them.

    Example:
        >>> records = list(read_mmsu("data/mmsu"))  # doctest: +SKIP
    """
    check_errors(errors)
    report = report if report is not None else ReadReport()
    ds, source = _open_mmsu(path_or_dataset, split)
    report.source = report.source or source
    ds = undecoded(ds)
    root = Path(audio_dir) if audio_dir is not None else None
    for index, row in enumerate(ds):
        key = row.get("key", row.get("id"))
        row_id = f"row {index} (key {key!r})"
        try:
            choices, answer, answer_index = _mmsu_choices_answer(row)
            audio = audio_from_cell(row.get("audio", row.get("audio_path")), root)
            meta = {k: v for k, v in row.items() if k not in _MMSU_CONSUMED and _jsonable(v)}
            meta.setdefault("dataset", "mmsu")
            meta["answer_index"] = answer_index
            record = Record(id=str(key) if key not in (None, "") else f"mmsu-{index}",
                            audio=audio, question=row.get("question"), choices=choices,
                            answer=answer, meta=meta)
        except (RecordError, TypeError, KeyError) as err:
            skip_or_raise(report, errors, row_id, err)
            continue
        if audio is None:
            report.missing_audio.append(record.id)
        report.read += 1
        yield record
    if report.missing_audio:  # one line, not one per row (MMSU has 5,000)
        logger.warning("%s: %d rows without audio (e.g. %s); kept, they will be scored wrong.",
                       source, len(report.missing_audio), report.missing_audio[0])
    logger.info(report.summary())
