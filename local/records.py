"""One record format for every dataset, and readers for the real layouts (AVQA, MMSU, MMAU).

A `Record` is one multiple-choice audio question: `answer` is the option TEXT and is always one
of `choices` (duplicates are legal: MMAU has 27 such items). Audio stays undecoded here (a path,
encoded bytes, or a waveform with its rate); `local.audio` decodes it when a batch needs it.

Readers are generators, so a 55 GB dataset is never decoded (or even fully read) to get one
record. Bad rows follow DESIGN.md's policy: ``errors="skip"`` logs a warning, counts the row in a
`ReadReport` and goes on; ``errors="raise"`` stops with a `RecordError` naming the row.

Example:
    >>> from local.records import Record, from_row
    >>> rec = Record(id="q1", audio="clip.wav", question="Who speaks?",
    ...              choices=["Man", "Woman"], answer="Woman", meta={"task": "speech"})
    >>> from_row(rec.to_row()) == rec
    True
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Errors = Literal["skip", "raise"]
MAX_LOGGED_SKIPS = 20  # individual warnings per read; the rest are only counted


class RecordError(ValueError):
    """A record or source row that cannot be used; the message names it and says what to do."""


@dataclass
class Record:
    """One audio multiple-choice question, the same shape for every dataset.

    `audio` is a file path, encoded bytes (WAV/FLAC/...), a waveform (`sampling_rate` then
    required) or None (evaluation keeps items whose audio is missing and scores them wrong).
    """

    id: str
    audio: str | bytes | np.ndarray | None
    question: str
    choices: list[str]
    answer: str
    sampling_rate: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        label = f"record {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise RecordError(f"record id {self.id!r}: ids must be non-empty strings.")
        if isinstance(self.audio, Path):
            self.audio = str(self.audio)
        if isinstance(self.audio, bytearray):
            self.audio = bytes(self.audio)
        if not (self.audio is None or isinstance(self.audio, (str, bytes, np.ndarray))):
            raise RecordError(f"{label}: audio of type {type(self.audio).__name__} is not a "
                              "path, encoded bytes or a numpy waveform.")
        if isinstance(self.audio, (str, bytes)) and len(self.audio) == 0:
            raise RecordError(f"{label}: audio is empty; give a path, bytes, or None.")
        if isinstance(self.audio, np.ndarray) and not self.sampling_rate:
            raise RecordError(f"{label}: a waveform needs its sampling_rate.")
        if self.sampling_rate is not None and (
            not isinstance(self.sampling_rate, (int, np.integer)) or self.sampling_rate <= 0
        ):
            raise RecordError(f"{label}: sampling_rate {self.sampling_rate!r} must be a "
                              "positive integer.")
        if not isinstance(self.question, str) or not self.question.strip():
            raise RecordError(f"{label}: the question is empty.")
        if not isinstance(self.choices, (list, tuple)) or len(self.choices) < 2:
            raise RecordError(f"{label}: needs at least two choices, got {self.choices!r}.")
        self.choices = list(self.choices)
        bad = [c for c in self.choices if not isinstance(c, str)]
        if bad:
            raise RecordError(f"{label}: choices must be strings; {bad!r} are not.")
        if not isinstance(self.answer, str) or self.answer not in self.choices:
            raise RecordError(f"{label}: answer {self.answer!r} is not one of the choices "
                              f"{self.choices!r}; the answer must be the option text exactly.")
        if not isinstance(self.meta, dict):
            raise RecordError(f"{label}: meta must be a dict, got {type(self.meta).__name__}.")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        same_audio = (
            np.array_equal(self.audio, other.audio)
            if isinstance(self.audio, np.ndarray) or isinstance(other.audio, np.ndarray)
            else self.audio == other.audio
        )
        return same_audio and (self.id, self.question, self.choices, self.answer,
                               self.sampling_rate, self.meta) == (
            other.id, other.question, other.choices, other.answer, other.sampling_rate,
            other.meta)

    def to_row(self) -> dict[str, Any]:
        """A flat dict for `datasets.Dataset.from_list` (see `from_row` for the way back).

        Audio goes to exactly one of `audio_path` / `audio_bytes` / `audio_array` (the others
        None); `meta` is a JSON string so rows with different meta keys share one schema.
        """
        audio = self.audio
        return {
            "id": self.id,
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "audio_path": audio if isinstance(audio, str) else None,
            "audio_bytes": audio if isinstance(audio, bytes) else None,
            "audio_array": (np.asarray(audio, dtype=np.float32).tolist()
                            if isinstance(audio, np.ndarray) else None),
            "sampling_rate": int(self.sampling_rate) if self.sampling_rate else None,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict for JSONL: audio only as a path (bytes and arrays left out)."""
        return {
            "id": self.id,
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "audio_path": self.audio if isinstance(self.audio, str) else None,
            "meta": copy.deepcopy(self.meta),
        }


def from_row(row: dict[str, Any]) -> Record:
    """Rebuild a `Record` from `Record.to_row()` (or `to_json()`) output, e.g. a dataset row."""
    missing = [k for k in ("id", "question", "choices", "answer") if k not in row]
    if missing:
        raise RecordError(f"row {row.get('id', '?')!r}: missing keys {missing}; rows must come "
                          "from Record.to_row().")
    audio: str | bytes | np.ndarray | None = None
    if row.get("audio_path") is not None:
        audio = row["audio_path"]
    elif row.get("audio_bytes") is not None:
        audio = row["audio_bytes"]
    elif row.get("audio_array") is not None:
        audio = np.asarray(row["audio_array"], dtype=np.float32)
    meta = row.get("meta") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    return Record(id=row["id"], audio=audio, question=row["question"],
                  choices=list(row["choices"]), answer=row["answer"],
                  sampling_rate=row.get("sampling_rate"), meta=meta)


@dataclass
class ReadReport:
    """What a reader did: records yielded, rows skipped (with reasons), audio files not found."""

    source: str = ""
    read: int = 0
    skipped: int = 0
    reasons: list[tuple[str, str]] = field(default_factory=list)
    missing_audio: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.source}: read {self.read} records, skipped {self.skipped}"
        if self.missing_audio:
            text += f", {len(self.missing_audio)} with missing audio (scored wrong in evaluation)"
        return text


def _check_errors(errors: str) -> None:
    if errors not in ("skip", "raise"):
        raise ValueError(f"errors={errors!r}: use 'skip' (warn, count, go on) or 'raise'.")


def _skip_or_raise(report: ReadReport, errors: Errors, row_id: str, err: Exception) -> None:
    if errors == "raise":
        raise RecordError(f"{report.source} {row_id}: {err}") from err
    report.skipped += 1
    report.reasons.append((row_id, str(err)))
    if report.skipped <= MAX_LOGGED_SKIPS:
        logger.warning("%s: skipping %s: %s", report.source, row_id, err)
    elif report.skipped == MAX_LOGGED_SKIPS + 1:
        logger.warning("%s: more rows skipped; see the ReadReport for all reasons.",
                       report.source)


def _audio_from_cell(cell: Any, audio_dir: Path | None) -> str | bytes | None:
    """Undecoded audio from a dataset cell: {'bytes', 'path'} dict, a path string, or None."""
    if cell is None:
        return None
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
        if not cell:
            return None
    if isinstance(cell, (str, Path)):
        path = Path(cell)
        if audio_dir is not None and not path.is_absolute():
            path = audio_dir / path
        return str(path)
    raise RecordError(f"audio cell of type {type(cell).__name__} is neither a path nor a "
                      "{'bytes', 'path'} dict; was it decoded? Read with Audio(decode=False).")


def _undecoded(ds: Any) -> Any:
    """Make sure the `audio` column (if an Audio feature) yields bytes/paths, never arrays."""
    import datasets

    features = getattr(ds, "features", None) or {}
    if isinstance(features.get("audio"), datasets.Audio):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
    return ds


# ---------------------------------------------------------------------------------------------
# AVQA (gijs/avqa-processed): DatasetDict.save_to_disk folders train/ and val/
# ---------------------------------------------------------------------------------------------

_OPTION_LINE = re.compile(r"^[A-Z]\.\s*(.+)$")
_CHOICES_SPLIT = re.compile(r"\n\s*Choices:\s*\n")


def parse_avqa_question(text: str) -> tuple[str, list[str]]:
    """Split AVQA's "question\\nChoices:\\nA. x\\nB. y" into (question, ["x", "y"]) as the seed.

    The question's word "video" becomes "audio" (plain, case-sensitive replace, as the seed).

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


def _resolve_split_dir(path: Path, split: str) -> Path:
    for name in (split, _SPLIT_ALIASES.get(split)):
        if name and (path / name).is_dir():
            return path / name
    available = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    raise FileNotFoundError(f"{path}: no split folder {split!r} (found {available}); expected "
                            "a DatasetDict.save_to_disk folder with train/ and val/. Run "
                            "`bash run.sh --stage prepare` or pass the right --avqa path.")


def _open_saved(path: Path) -> Any:
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
        folder = root if (root / "state.json").exists() else _resolve_split_dir(root, split)
        split = folder.name if folder != root else split
        return _undecoded(_open_saved(folder)), split, f"AVQA {split} ({root})"
    ds = path
    if isinstance(ds, dict):  # a DatasetDict: pick the split, "validation" <-> "val"
        name = next((n for n in (split, _SPLIT_ALIASES.get(split)) if n in ds), None)
        if name is None:
            raise KeyError(f"AVQA DatasetDict has no split {split!r} (has {list(ds)}).")
        ds, split = ds[name], name
    return _undecoded(ds), split, f"AVQA {split}"


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
        audio = _audio_from_cell(row["audio"], None)
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
    _check_errors(errors)
    report = report if report is not None else ReadReport()
    ds, split, source = open_avqa(path, split)
    report.source = report.source or source
    for index, row in enumerate(ds):
        try:
            record = avqa_record(row, index, split)
        except (RecordError, TypeError, KeyError) as err:
            _skip_or_raise(report, errors, f"row {index} (file_name {row.get('file_name')!r})", err)
            continue
        report.read += 1
        yield record
    logger.info(report.summary())


# ---------------------------------------------------------------------------------------------
# MMSU: hf-format (options + answer_index) or official columns (choice_a..d + answer_gt)
# ---------------------------------------------------------------------------------------------

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
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{path}: no save_to_disk folder and no .parquet files; expected "
                                "the yuantuo666/MMSU-full_5k_hf_format.v0 snapshot.")
    chosen = [f for f in files if f.name.startswith(f"{split}-") or f.parent.name == split]
    files = chosen or files
    # streaming: rows are read from the parquet files on demand, no cache copy is built
    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train",
                               streaming=True)
    return ds, f"MMSU ({path})"


def _mmsu_choices_answer(row: dict[str, Any], drop_none_options: bool) -> tuple[list[str], str]:
    if "options" in row and "answer_index" in row:
        options, index = row["options"], row["answer_index"]
        if not isinstance(options, (list, tuple)) or not options:
            raise RecordError(f"options {options!r} is not a non-empty list.")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index < len(options):
            raise RecordError(f"answer_index {index!r} is not a valid index into "
                              f"{len(options)} options.")
        choices, answer = list(options), options[index]
        if drop_none_options:
            choices = [c for i, c in enumerate(choices) if c != "None" or i == index]
        return choices, answer
    if "answer_gt" in row and any(k in row for k in _MMSU_CHOICE_KEYS):
        choices = [row[k] for k in _MMSU_CHOICE_KEYS
                   if row.get(k) is not None and str(row[k]).strip() != ""]
        return choices, row["answer_gt"]
    raise RecordError("neither hf-format columns (options, answer_index) nor official MMSU "
                      "columns (choice_a..choice_d, answer_gt) are present.")


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


def read_mmsu(
    path_or_dataset: str | Path | Any,
    drop_none_options: bool = False,
    *,
    split: str = "train",
    audio_dir: str | Path | None = None,
    errors: Errors = "skip",
    report: ReadReport | None = None,
) -> Iterator[Record]:
    """Yield MMSU records (hf-format or official columns) without decoding any audio.

    Sources: a `datasets` object, a save_to_disk folder, or a hub snapshot of parquet files
    (streamed). Choices are `options` as stored, 'None' padding of two-choice items kept (seed
    parity) unless `drop_none_options`. `id` is `key` (else `id`, else the row number); every
    other column (category, linguistics_sub_discipline, ...) goes to meta. Relative audio paths
    resolve under `audio_dir`. Items without audio are kept (audio None, listed in
    `report.missing_audio`) so evaluation scores them wrong instead of dropping them.

    Example:
        >>> records = list(read_mmsu("data/mmsu"))  # doctest: +SKIP
    """
    _check_errors(errors)
    report = report if report is not None else ReadReport()
    ds, source = _open_mmsu(path_or_dataset, split)
    report.source = report.source or source
    ds = _undecoded(ds)
    root = Path(audio_dir) if audio_dir is not None else None
    for index, row in enumerate(ds):
        key = row.get("key", row.get("id"))
        row_id = f"row {index} (key {key!r})"
        try:
            choices, answer = _mmsu_choices_answer(row, drop_none_options)
            audio = _audio_from_cell(row.get("audio", row.get("audio_path")), root)
            meta = {k: v for k, v in row.items() if k not in _MMSU_CONSUMED and _jsonable(v)}
            meta.setdefault("dataset", "mmsu")
            if "answer_index" in row:
                meta["answer_index"] = int(row["answer_index"])
            record = Record(id=str(key) if key not in (None, "") else f"mmsu-{index}",
                            audio=audio, question=row.get("question"), choices=choices,
                            answer=answer, meta=meta)
        except (RecordError, TypeError, KeyError) as err:
            _skip_or_raise(report, errors, row_id, err)
            continue
        if audio is None:
            report.missing_audio.append(record.id)
            logger.warning("%s: %s has no audio; kept, it will be scored wrong.", source, row_id)
        report.read += 1
        yield record
    logger.info(report.summary())


# ---------------------------------------------------------------------------------------------
# MMAU test-mini: mmau-test-mini.json + its audio folder
# ---------------------------------------------------------------------------------------------

def read_mmau(
    json_path: str | Path,
    audio_dir: str | Path | None = None,
    *,
    errors: Errors = "skip",
    report: ReadReport | None = None,
) -> Iterator[Record]:
    """Yield MMAU test-mini records; every original field is kept in `meta` (a deep copy).

    Audio resolves by file name under `audio_dir` (default: `audio_id` relative to the JSON's
    folder). A missing audio file keeps the record (path set, listed in
    `report.missing_audio`): evaluation scores it wrong rather than dropping it. Rows skipped
    for bad questions are in `report.reasons`; evaluators must count them wrong too.

    Example:
        >>> recs = list(read_mmau("data/mmau/mmau-test-mini.json", "data/mmau/test-mini-audios"))
        ... # doctest: +SKIP
    """
    _check_errors(errors)
    report = report if report is not None else ReadReport()
    json_path = Path(json_path)
    report.source = report.source or f"MMAU ({json_path})"
    try:
        items = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{json_path}: MMAU question file not found; run "
                                "`bash run.sh --stage prepare`.") from err
    except json.JSONDecodeError as err:
        raise RecordError(f"{json_path}: not valid JSON ({err}); re-download it.") from err
    if not isinstance(items, list):
        raise RecordError(f"{json_path}: expected a JSON list of questions, got "
                          f"{type(items).__name__}.")
    root = Path(audio_dir) if audio_dir is not None else None
    seen: set[str] = set()
    for index, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        row_id = f"item {index} (id {item_id!r})"
        try:
            if not isinstance(item, dict):
                raise RecordError(f"item is a {type(item).__name__}, not an object.")
            if item_id in seen:
                raise RecordError("duplicate id; ids must be unique to write results back.")
            audio_id = item.get("audio_id")
            if not isinstance(audio_id, str) or not audio_id:
                raise RecordError("audio_id is missing.")
            audio = (root / Path(audio_id).name) if root is not None \
                else (json_path.parent / audio_id)
            record = Record(id=item_id, audio=str(audio), question=item.get("question"),
                            choices=item.get("choices"), answer=item.get("answer"),
                            meta=copy.deepcopy(item))
        except (RecordError, TypeError) as err:
            _skip_or_raise(report, errors, row_id, err)
            continue
        seen.add(item_id)
        if not Path(record.audio).exists():
            report.missing_audio.append(record.id)
        report.read += 1
        yield record
    if report.missing_audio:
        logger.warning("%s: %d audio files not found (e.g. %s); those items will be scored "
                       "wrong. Run `bash run.sh --stage prepare` to fetch the audio.",
                       report.source, len(report.missing_audio), report.missing_audio[0])
    logger.info(report.summary())


def to_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    """`Record.to_row()` for many records, e.g. for `datasets.Dataset.from_list`."""
    return [r.to_row() for r in records]
