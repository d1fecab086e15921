"""MMAR (evaluation): its layout facts, the one parse of its question file, and its reader.

MMAR ("MMAR: A Challenging Benchmark for Deep Reasoning in Speech, Audio, Music, and Their
Mix") is 1,000 multiple-choice questions over real audio. Layout (one folder, `data/mmar/` by
default), from the MMAR repository (github ddlBoJack/MMAR, checked at commit 3bce090a) and its
hub dataset (`BoJack/MMAR`):

    MMAR-meta.jsonl   the question file (GitHub): one JSON object per line
    MMAR-meta.json    the same items as one JSON list (the hub dataset's copy)
    audio/<file>.wav  the clips; the hub holds them as mmar-audio.tar.gz (about 3 GB), which
                      extracts to audio/<file>.wav (public loaders call `hf_hub_download(
                      repo_id="BoJack/MMAR", filename="mmar-audio.tar.gz", repo_type="dataset")`
                      and read `<dir>/audio/<name>.wav`)

An item has `id`, `audio_path` ("./audio/<file>.wav"), `question`, `choices` (2 to 6 option
texts), `answer` (one of them), `modality` (7 values: `MODALITIES`), `category` (4 layers:
`CATEGORIES`), `sub-category`, `language`, `source`, `url`, `timestamp`, `thinking`, `cue` and
`rubric`. The audio file is the one `audio_path` names, NOT `<id>.wav`: in 46 of the 1,000 items
they differ (id `BV1kx411m7UN_2-45_3-15` has `./audio/BV1kx411m7UN_00-02-45_00-03-15.wav`; some
name `..._multi_segment.wav`). Licence of the dataset (its hub card): CC BY-NC 4.0.

`parse_question_file` is the one parse of a question file (JSON lines or a JSON list, told by
content): evaluation parses it once and hands the items to `read_mmar(items=...)` and to its
alignment of items and records. A line that is not JSON is kept as an `UnparsedLine`, which the
reader skips with its reason (so it is counted wrong, never dropped).

Example:
    >>> from local.data.mmar import audio_file
    >>> str(audio_file("data/mmar/MMAR-meta.jsonl", "./audio/a_multi_segment.wav"))
    'data/mmar/audio/a_multi_segment.wav'
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from local.core.records import (
    Errors,
    ReadReport,
    Record,
    RecordError,
)
from local.data.question_files import records_of

logger = logging.getLogger(__name__)

QUESTION_FILE = "MMAR-meta.jsonl"  # GitHub's, and what prepare writes under data/mmar
HUB_QUESTION_FILE = "MMAR-meta.json"  # the hub dataset's copy: a JSON list
AUDIO_DIR = "audio"
HUB_ID = "BoJack/MMAR"
HUB_REPO_TYPE = "dataset"
AUDIO_ARCHIVE = "mmar-audio.tar.gz"
ARCHIVE_GB = 3.0  # about, for messages when the hub cannot be asked
LICENCE = "CC BY-NC 4.0"
GITHUB = "github ddlBoJack/MMAR"
FETCH = "bash run.sh --stage prepare --sources mmar"  # what fetches the audio
# The official scorer's fixed tables (code/evaluation.py): an item outside them stops it.
MODALITIES = ("sound", "music", "speech", "mix-sound-music", "mix-sound-speech",
              "mix-music-speech", "mix-sound-music-speech")
CATEGORIES = ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")


class UnparsedLine(str):
    """A line of a JSON-lines question file that is not JSON: its text, `line` and `error`."""

    line: int
    error: str

    def __new__(cls, text: str, line: int, error: str) -> UnparsedLine:
        made = super().__new__(cls, text)
        made.line, made.error = line, error
        return made


def parse_text(text: str) -> list[Any]:
    """The items of an MMAR file's text: a JSON list, or JSON lines (blank lines skipped; a line
    that is not JSON kept as an `UnparsedLine`). RecordError when no line is JSON."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError:
        whole = None
    else:
        if isinstance(whole, list):
            return whole
    items: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as err:
                items.append(UnparsedLine(line, number, str(err)))
    if all(isinstance(item, UnparsedLine) for item in items):
        raise RecordError("neither a JSON list nor JSON lines (line 1: "
                          f"{items[0].error}).")
    return items


def parse_question_file(path: str | Path) -> list[Any]:
    """The items of an MMAR question file (`MMAR-meta.jsonl` or the hub's `MMAR-meta.json`),
    parsed once; FileNotFoundError / RecordError, each one line, for anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: MMAR question file not found; run `bash run.sh "
                                "--stage prepare --sources mmar` (it writes data/mmar/"
                                f"{QUESTION_FILE}) or pass the file.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: cannot read it ({err}).") from err
    try:
        return parse_text(text)
    except RecordError as err:
        raise RecordError(f"{path}: {err} Expected {QUESTION_FILE} (one question per line) or "
                          f"{HUB_QUESTION_FILE} (a JSON list).") from err


def audio_file(question_file: str | Path, audio_path: str,
               audio_dir: str | Path | None = None) -> Path:
    """Where an item's clip is: `audio_path` relative to the question file's folder, or, with
    `audio_dir`, the file of `audio_path`'s name there (never `<id>.wav`: they can differ)."""
    name = PurePosixPath(audio_path)
    if audio_dir is not None:
        return Path(audio_dir) / name.name
    return Path(question_file).parent / Path(*[p for p in name.parts if p != "."])


def audio_names(items: Sequence[Any]) -> dict[str, str]:
    """{item id: audio file name} (`audio_path`'s base name) of the items that name one."""
    return {str(item["id"]): PurePosixPath(item["audio_path"]).name for item in items
            if isinstance(item, dict) and isinstance(item.get("audio_path"), str)
            and item.get("id") is not None}


def _record(item: Any, question_file: Path, audio_dir: Path | None) -> Record:
    """The Record of one parsed item (RecordError / TypeError when it cannot be one)."""
    if isinstance(item, UnparsedLine):
        raise RecordError(f"line {item.line} is not JSON ({item.error}).")
    if not isinstance(item, dict):
        raise RecordError(f"item is a {type(item).__name__}, not an object.")
    audio_path = item.get("audio_path")
    if not isinstance(audio_path, str) or not audio_path.strip():
        raise RecordError("audio_path is missing.")
    if item.get("answer") is None:  # MMAR's answers are public: a record never lacks one
        raise RecordError("answer is missing.")
    return Record(id=item.get("id"), audio=str(audio_file(question_file, audio_path, audio_dir)),
                  question=item.get("question"), choices=item.get("choices"),
                  answer=item.get("answer"), meta=copy.deepcopy(item))


def read_mmar(
    question_file: str | Path,
    audio_dir: str | Path | None = None,
    *,
    items: Sequence[Any] | None = None,
    check_audio: bool = True,
    errors: Errors = "skip",
    report: ReadReport | None = None,
) -> Iterator[Record]:
    """Yield MMAR records in file order; every original field is kept in `meta` (a deep copy).

    `items`: the question file already parsed (`parse_question_file`), so it is not read again;
    `question_file` still names the source and anchors `audio_path`. Audio is the file
    `audio_path` names (`audio_file`). A missing audio file keeps the record (listed in
    `report.missing_audio`): evaluation scores it wrong rather than dropping it. Rows that
    cannot be used (not JSON, not an object, no audio_path, an answer that is not one of the
    choices, a repeated id) are skipped into `report.reasons` (`errors="raise"`: stop there);
    evaluators count them wrong too. `check_audio=False` (scoring a predictions file) looks for
    no audio file.

    Example:
        >>> records = list(read_mmar("data/mmar/MMAR-meta.jsonl"))  # doctest: +SKIP
    """
    report = report if report is not None else ReadReport()
    question_file = Path(question_file)
    report.source = report.source or f"MMAR ({question_file})"
    if items is None:
        items = parse_question_file(question_file)
    root = Path(audio_dir) if audio_dir is not None else None
    yield from records_of(items, lambda item: _record(item, question_file, root), report, errors,
                          check_audio=check_audio, fetch=FETCH)
