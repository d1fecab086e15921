"""The training dataset: records -> rows TRL's GRPOTrainer consumes, lazily, bad records skipped.

A training row: `id`, `prompt` (chat messages from `local.core.prompts`), its audio in one of
`local.core.records.AUDIO_COLUMNS` (`audio_path` / `audio_bytes` / `audio_array`, written by
`audio_columns`, read back by `row_audio`) + `sampling_rate`, and the reward columns `answer`,
`choices`.

Bad records follow the one policy of `local.core.records.skip_or_raise` (`bad_records`): skipped
with a warning and a count (`errors="skip"`), or the run stops naming the row (`errors="raise"`).
A record whose audio file is missing is such a record.

AVQA (55 GB of embedded audio) is never copied: the text columns are checked once, rows without
audio bytes are found from the Arrow column lengths without reading the audio, and the rows are
built on access with `Dataset.with_transform`.

Example:
    >>> ds, report = build_train_dataset("data/avqa", "avqa", template="default")  # doctest: +SKIP
    >>> sorted(ds[0])                                                             # doctest: +SKIP
    ['answer', 'audio_bytes', 'audio_path', 'choices', 'id', 'prompt', 'sampling_rate']
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from tqdm.auto import tqdm

from local.core.prompts import build_messages, build_prompt
from local.core.records import (
    ReadReport,
    Record,
    RecordError,
    audio_columns,
    check_errors,
    skip_or_raise,
)
from local.data.avqa import avqa_record, open_avqa
from local.data.mmau import read_mmau
from local.data.mmsu import read_mmsu
from local.train.selection import check_found

logger = logging.getLogger(__name__)
FORMATS = ("avqa", "mmau", "mmsu")
FIX_OR_SKIP = " Fix the data, or set bad_records: skip to train without it."


def training_row(record: Record, template: str) -> dict[str, Any]:
    """The row TRL gets for one record (the audio travels beside the prompt, never inside it).

    A record whose answer is withheld (the full MMAU test) has nothing to reward: RecordError.
    """
    if record.answer is None:
        raise RecordError(f"record {record.id!r}: its answer is withheld (a test split); "
                          "nothing to reward, so it cannot be trained on.")
    return {
        "id": record.id,
        "prompt": build_messages(build_prompt(record.question, record.choices, template)),
        **audio_columns(record.audio),
        "sampling_rate": record.sampling_rate,
        "answer": record.answer,
        "choices": list(record.choices),
    }


def _has_audio(ds: datasets.Dataset) -> np.ndarray:
    """Per row: does the undecoded audio cell carry audio bytes, or a path to an existing file?

    Byte lengths are read chunk by chunk from the memory-mapped Arrow column, so a 55 GB audio
    column is never copied into memory; only rows without bytes have their path looked at.
    """
    if ds._indices is not None:  # a selection of rows: make the table match its row order
        ds = ds.flatten_indices()
    parts = []
    for chunk in ds.data.column("audio").chunks:
        names = [f.name for f in chunk.type] if hasattr(chunk.type, "__iter__") else []
        present = np.zeros(len(chunk), dtype=bool)
        if "bytes" in names:
            lengths = pc.fill_null(pc.binary_length(chunk.field("bytes")), 0)
            present |= np.asarray(lengths.to_numpy(zero_copy_only=False)) > 0
        if "path" in names:
            paths = chunk.field("path")
            for i in np.flatnonzero(~present):  # AVQA embeds bytes; a bare name is no audio
                path = paths[int(i)].as_py()
                present[i] = bool(path) and Path(path).is_file()
        parts.append(present)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _avqa_dataset(path: str | Path, split: str, template: str, errors: str,
                  report: ReadReport, limit: int | None,
                  selection: Collection[str] | None = None) -> datasets.Dataset:
    ds, split, source = open_avqa(path, split)
    report.source = source
    if selection is not None:  # the row ids are avqa_record's: avqa-<split>-<row>
        check_found(selection, (f"avqa-{split}-{i}" for i in range(len(ds))))
    rows = len(ds) if limit is None else min(limit, len(ds))
    text = ds.select_columns([c for c in ("question", "answer", "file_name")
                              if c in ds.column_names])
    has_audio = (_has_audio(ds) if "audio" in ds.column_names
                 else np.zeros(len(ds), dtype=bool))
    keep = []
    for index, row in enumerate(tqdm(itertools.islice(text, rows), total=rows,
                                     desc=f"checking {source}", unit="row", mininterval=5)):
        if selection is not None and f"avqa-{split}-{index}" not in selection:
            continue
        try:
            avqa_record(row, index, split, audio=None)
            if not has_audio[index]:
                raise RecordError("row carries no audio (neither bytes nor path).")
        except (RecordError, TypeError, KeyError) as err:
            skip_or_raise(report, errors, f"avqa-{split}-{index}", err,  # type: ignore[arg-type]
                          label=f"row {index} (file_name {row.get('file_name')!r})",
                          advice=FIX_OR_SKIP)
            continue
        keep.append(index)
    report.read = len(keep)
    # The row number rides along as a small in-memory column; select() is an index mapping over
    # the memory-mapped audio: nothing is copied.
    subset = ds.add_column("__row__", list(range(len(ds)))).select(keep)

    def to_rows(batch: dict[str, list]) -> dict[str, list]:
        rows = [training_row(avqa_record({k: batch[k][i] for k in batch}, row, split), template)
                for i, row in enumerate(batch["__row__"])]
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}

    return subset.with_transform(to_rows)


def build_train_dataset(
    path: str | Path,
    data_format: str = "avqa",
    *,
    template: str = "default",
    split: str = "train",
    audio_dir: str | Path | None = None,
    errors: str = "skip",
    limit: int | None = None,
    selection: Collection[str] | None = None,
) -> tuple[datasets.Dataset, ReadReport]:
    """Training rows from `path` in `data_format` (avqa | mmau | mmsu), and what was skipped;
    with `selection` (ids, `local.train.selection`) only those rows, and every id must be a row
    of the data."""
    if data_format not in FORMATS:
        raise ValueError(f"unknown train data format {data_format!r}; choose one of {FORMATS}")
    check_errors(errors, "bad_records")
    report = ReadReport()
    _check_path(path, data_format)
    try:
        ds = _read_rows(path, data_format, template=template, split=split, audio_dir=audio_dir,
                        errors=errors, report=report, limit=limit, selection=selection)
    except (RecordError, FileNotFoundError):
        raise  # the readers' messages name the file and what to do
    except (ValueError, OSError) as err:  # a truncated or corrupt file (JSON, Arrow, state.json)
        raise RecordError(
            f"{path}: cannot read it as {data_format} training data ({type(err).__name__}: "
            f"{err}). Re-create it (`bash run.sh --stage prepare`) or check it with "
            "`python -m local.validate`.") from err
    if report.skipped:
        logger.warning("%s: skipped %d bad record(s), e.g. %s", report.source or path,
                       report.skipped, report.reasons[:3])
    if len(ds) == 0:
        raise RecordError(f"{path}: no usable training records ({report.skipped} skipped: "
                          f"{report.reasons[:3]}). Check the data with `python -m local.validate`.")
    return ds, report


def _check_path(path: str | Path | Any, data_format: str) -> None:
    """A missing path, or a file where AVQA needs its folder: say so before reading anything."""
    if not isinstance(path, (str, Path)):
        return  # a datasets object
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: training data not found. Run `bash run.sh --stage "
                                "prepare`, or pass the right --train_data.")
    if data_format == "avqa" and Path(path).is_file():
        raise RecordError(f"{path}: is a file; train_format avqa reads a save_to_disk folder "
                          "(train/, val/). For a MMAU-style question list give --train_format "
                          "mmau (and --train_audio_dir).")


def _read_rows(path: str | Path, data_format: str, *, template: str, split: str,
               audio_dir: str | Path | None, errors: str, report: ReadReport,
               limit: int | None, selection: Collection[str] | None) -> datasets.Dataset:
    if data_format == "avqa":
        ds = _avqa_dataset(path, split, template, errors, report, limit, selection)
    else:
        reader = (read_mmau(path, audio_dir, errors=errors, report=report)  # type: ignore[arg-type]
                  if data_format == "mmau" else
                  read_mmsu(path, split=split, errors=errors, report=report))  # type: ignore
        records: Any = reader  # read lazily: a --max_train_samples run stops early
        if selection is not None:
            read = list(reader)
            check_found(selection, [r.id for r in read] + [i for i, _ in report.reasons])
            records = [r for r in read if r.id in selection]
        rows = []
        for record in records:
            if record.audio is None or (isinstance(record.audio, str)
                                        and not Path(record.audio).is_file()):
                missing = RecordError(f"audio file not found ({record.audio or 'no path'})")
                skip_or_raise(report, errors, record.id, missing,  # type: ignore[arg-type]
                              advice=FIX_OR_SKIP)
                continue
            rows.append(training_row(record, template))
            if limit is not None and len(rows) >= limit:
                break
        ds = datasets.Dataset.from_list(rows)
    return ds
