"""Readers of the real dataset layouts (AVQA, MMSU, MMAU) into `local.core.records.Record`s.

Readers are generators, so a 55 GB dataset is never decoded (or even fully read) to get one
record. Bad rows follow the recipe's policy: ``errors="skip"`` logs a warning, counts the row in a
`ReadReport` and goes on; ``errors="raise"`` stops with a `RecordError` naming the row.

Size: over 300 lines on purpose: three readers (AVQA, MMSU, MMAU, about 100 lines each) sharing
the bad-row policy and the split and audio-cell helpers, kept side by side so the three source
layouts read as one contract.

Example:
    >>> from local.core.readers import parse_avqa_question
    >>> parse_avqa_question("What is in the video?\\nChoices:\\nA. 3\\nB. One")
    ('What is in the audio?', ['3', 'One'])
"""

from __future__ import annotations

import copy
import json
import logging
import re
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


# ---------------------------------------------------------------------------------------------
# AVQA (gijs/avqa-processed): DatasetDict.save_to_disk folders train/ and val/
# ---------------------------------------------------------------------------------------------

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
    check_errors(errors)
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
                          f"{type(items).__name__}; is this mmau-test-mini.json? Re-download "
                          "it with `bash run.sh --stage prepare --sources mmau`, or pass the "
                          "right file.")
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
            skip_or_raise(report, errors, row_id, err)
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
