"""AVQA (training): the hub dataset gijs/avqa-processed, its layout and its reader.

Layout: `DatasetDict.save_to_disk` folders `train/` and `val/` (or bare .arrow shards), columns
`question` ("text\\nChoices:\\nA. x\\nB. y"), `answer` ("B. y"), `audio` (embedded encoded bytes,
never decoded here) and `file_name`. Each record's id is "avqa-<split>-<row>".

Example:
    >>> from local.data.avqa import parse_avqa_question
    >>> parse_avqa_question("What is in the video?\\nChoices:\\nA. 3\\nB. One")
    ('What is in the audio?', ['3', 'One'])
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
HUB_ID = "gijs/avqa-processed"

_OPTION_LINE = re.compile(r"^[A-Z]\.\s*(.+)$")
_CHOICES_SPLIT = re.compile(r"\n\s*Choices:\s*\n")


def parse_avqa_question(text: str) -> tuple[str, list[str]]:
    """Split AVQA's "question\\nChoices:\\nA. x\\nB. y" into (question, ["x", "y"]) as the
    reference recipe (WeST's GRPO example) does.

    The question's word "video" becomes "audio" (plain, case-sensitive replace, as there).

    >>> parse_avqa_question("What is in the video?\\nChoices:\\nA. 3\\nB. One")
    ('What is in the audio?', ['3', 'One'])
    """
    parts = _CHOICES_SPLIT.split(text, maxsplit=1)
    if len(parts) != 2:
        raise RecordError("question has no 'Choices:' block; expected "
                          "'text\\nChoices:\\nA. ...\\nB. ...'.")
    choices = []
    for line in parts[1].strip().split("\n"):
        line = line.strip()
        if line:
            match = _OPTION_LINE.match(line)
            choices.append(match.group(1) if match else line)
    return parts[0].replace("video", "audio"), choices


def parse_avqa_answer(text: str) -> str:
    """AVQA's answer "B. text" -> "text" (the option text); other strings are kept (stripped)."""
    text = text.strip()
    match = _OPTION_LINE.match(text)
    return match.group(1) if match else text


_SPLIT_ALIASES = {"validation": "val", "val": "validation", "dev": "val"}


def resolve_split_dir(path: Path, split: str) -> Path:
    for name in (split, _SPLIT_ALIASES.get(split)):
        if name and (path / name).is_dir():
            return path / name
    available = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    raise FileNotFoundError(f"{path}: no split folder {split!r} (found {available}); expected "
                            "a DatasetDict.save_to_disk folder with train/ and val/. Run "
                            "`bash run.sh --stage prepare`, or pass the AVQA folder "
                            "(--train_data in training, --avqa in prepare).")


def open_saved(path: Path) -> Any:
    """Memory-map a save_to_disk split folder (state.json), or its bare .arrow shards."""
    import datasets

    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        return datasets.load_from_disk(str(path))
    shards = sorted(path.glob("*.arrow"))
    if not shards:
        raise FileNotFoundError(f"{path}: neither a save_to_disk folder (state.json) nor .arrow "
                                "shards; re-run `bash run.sh --stage prepare`.")
    return datasets.concatenate_datasets([datasets.Dataset.from_file(str(s)) for s in shards])


def open_avqa(path: str | Path | Any, split: str = "train") -> tuple[Any, str, str]:
    """(undecoded split dataset, split name, source label) for AVQA; memory-mapped, no copy."""
    if isinstance(path, (str, Path)):
        root = Path(path)
        folder = root if (root / "state.json").exists() else resolve_split_dir(root, split)
        split = folder.name if folder != root else split
        return undecoded(open_saved(folder)), split, f"AVQA {split} ({root})"
    ds = path
    if isinstance(ds, dict):  # a DatasetDict: pick the split, "validation" <-> "val"
        name = next((n for n in (split, _SPLIT_ALIASES.get(split)) if n in ds), None)
        if name is None:
            raise KeyError(f"AVQA DatasetDict has no split {split!r} (has {list(ds)}).")
        ds, split = ds[name], name
    return undecoded(ds), split, f"AVQA {split}"


def avqa_record(row: dict[str, Any], index: int, split: str,
                audio: str | bytes | None | Any = ...) -> Record:
    """The Record of AVQA row `index` (question parsed, answer as option text).

    `audio` defaults to the row's own cell; pass None to validate the text alone.
    """
    for key in ("question", "answer"):
        if key not in row:
            raise RecordError(f"column {key!r} missing; is this AVQA-processed?")
    if not isinstance(row["question"], str) or not isinstance(row["answer"], str):
        raise RecordError("question and answer must be strings.")
    if audio is ...:
        if "audio" not in row:
            raise RecordError("column 'audio' missing; is this AVQA-processed?")
        audio = audio_from_cell(row["audio"], None)
        if audio is None:
            raise RecordError("row carries no audio (neither bytes nor path).")
    question, choices = parse_avqa_question(row["question"])
    return Record(
        id=f"avqa-{split}-{index}", audio=audio, question=question, choices=choices,
        answer=parse_avqa_answer(row["answer"]),
        meta={"dataset": "avqa", "split": split, "row": index, "file_name": row.get("file_name")},
    )


def read_avqa(
    path: str | Path | Any,
    split: str = "train",
    *,
    errors: Errors = "skip",
    report: ReadReport | None = None,
) -> Iterator[Record]:
    """Yield AVQA records from the hub's save_to_disk folders (`path/train`, `path/val`).

    `split` "validation" is accepted for "val". `path` may also be a `datasets` object. Each
    record: `id` "avqa-<split>-<row>", audio as the embedded encoded bytes (never decoded),
    choices parsed from the question, answer as option text, meta `file_name`/`split`/`row`.

    Example:
        >>> report = ReadReport()
        >>> records = list(read_avqa("data/avqa", "train", report=report))  # doctest: +SKIP
    """
    check_errors(errors)
    report = report if report is not None else ReadReport()
    ds, split, source = open_avqa(path, split)
    report.source = report.source or source
    for index, row in enumerate(ds):
        try:
            record = avqa_record(row, index, split)
        except (RecordError, TypeError, KeyError) as err:
            skip_or_raise(report, errors, f"row {index} (file_name {row.get('file_name')!r})", err)
            continue
        report.read += 1
        yield record
    logger.info(report.summary())
