"""MMAR for `local.prepare.cli`: data/mmar/MMAR-meta.jsonl and data/mmar/audio/.

From the hub dataset BoJack/MMAR (only its two files: `MMAR-meta.json`, the question list, and
`mmar-audio.tar.gz`, about 3 GB, which extracts to `audio/<file>.wav`), or from a local folder
(`--mmar_dir`: the question file, `MMAR-meta.jsonl` from github ddlBoJack/MMAR or the hub's
`MMAR-meta.json`, and `audio/` or the archive). The data is licensed CC BY-NC 4.0 (the hub
card): the log says so before anything is fetched, and manifest.json records it.

The question file lands as `data/mmar/MMAR-meta.jsonl` (copied, or the hub's JSON list written
one item per line; the source's sha256 recorded); the archive is extracted safely (no absolute
paths, no `..`, no links leaving the folder: `local.prepare.unpack`) into a flat `audio/`, or a
local `audio/` folder is symlinked file by file. Then the two are joined as evaluation joins
them (`local.data.mmar.read_mmar`: the file `audio_path` names, not `<id>.wav`): questions
without their audio file, unusable rows and audio files no question names are counted, logged
and kept in `data/mmar/manifest.json`. `data/mmar/.done` is written last; a re-run skips it.

Example:
    >>> prepare_mmar(args, SOURCES["mmar"], errors)                    # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from local.core.records import ReadReport, RecordError
from local.data.mmar import (
    AUDIO_ARCHIVE,
    AUDIO_DIR,
    GITHUB,
    HUB_ID,
    HUB_QUESTION_FILE,
    LICENCE,
    QUESTION_FILE,
    audio_names,
    parse_question_file,
    parse_text,
    read_mmar,
)
from local.prepare.hub import (
    Source,
    SourceError,
    already_prepared,
    check_disk,
    hub_snapshot,
    local_path,
    sha256_of,
)
from local.prepare.unpack import UnpackError, build_audio_dir
from local.util.fsio import atomic_path, atomic_write_json, mark_done, read_done

logger = logging.getLogger("prepare")
LICENCE_NOTE = (f"MMAR ({HUB_ID} on the hub, questions from {GITHUB}) is licensed {LICENCE}: "
                f"non-commercial use only (https://huggingface.co/datasets/{HUB_ID})")
SUPPLY = (f"pass --mmar_dir DIR holding {QUESTION_FILE} (or {HUB_QUESTION_FILE}) and {AUDIO_DIR}/ "
          f"(or {AUDIO_ARCHIVE})")


def prepare_mmar(args: argparse.Namespace, src: Source, errors: list[str]) -> None:
    """data/mmar: the question file and the audio folder, from the hub or --mmar_dir."""
    dest = Path(args.data_dir) / "mmar"
    local = getattr(args, "mmar_dir", None)
    wanted = {"source": str(Path(local).resolve()) if local else src.repo_id,
              "revision": src.revision}
    if already_prepared(dest, wanted, args.overwrite):
        return
    redo = args.overwrite or read_done(dest) is not None  # made from another source before
    logger.info("%s", LICENCE_NOTE)
    try:
        folder = (local_path(local, src.option, "MMAR") if local
                  else hub_snapshot(src, args.cache_dir))
        manifest: dict[str, Any] = {"source": str(folder), "licence": LICENCE}
        manifest["questions"] = write_questions(folder, dest / QUESTION_FILE)
        audio_dir = dest / AUDIO_DIR
        if redo or not audio_dir.is_dir():
            audio = audio_source(folder)
            if audio.is_file():
                check_disk(dest, audio.stat().st_size, "MMAR audio (extracting "
                           f"{audio.name})", src.option)  # a lower bound: WAV barely compresses
            manifest["audio"] = {"source": str(audio), "how": build_audio_dir(audio, audio_dir)}
            logger.info("MMAR audio: %s -> %s", manifest["audio"]["how"], audio_dir)
    except (SourceError, UnpackError) as err:
        errors.append(f"MMAR audio: {err}" if isinstance(err, UnpackError) else str(err))
        return
    manifest["join"] = join_report(dest / QUESTION_FILE)
    atomic_write_json(dest / "manifest.json", manifest)
    mark_done(dest, {**wanted, "licence": LICENCE,
                     "how": "question file + audio folder (see manifest.json)"})


def question_source(folder: Path) -> Path:
    """The question file a source folder holds: MMAR-meta.jsonl, else the hub's MMAR-meta.json."""
    for name in (QUESTION_FILE, HUB_QUESTION_FILE):
        if (folder / name).is_file():
            return folder / name
    raise SourceError(f"MMAR: {folder} holds neither {QUESTION_FILE} nor {HUB_QUESTION_FILE}; "
                      f"{SUPPLY}.")


def audio_source(folder: Path) -> Path:
    """What the audio comes from: the folder's audio/ (linked), else the archive (extracted)."""
    if (folder / AUDIO_DIR).is_dir():
        return folder / AUDIO_DIR
    if (folder / AUDIO_ARCHIVE).is_file():
        return folder / AUDIO_ARCHIVE
    raise SourceError(f"MMAR: {folder} has neither {AUDIO_DIR}/ nor {AUDIO_ARCHIVE}; {SUPPLY}.")


def write_questions(folder: Path, dest: Path) -> dict[str, Any]:
    """Write the source's question file to `dest` as JSON lines (atomic); its manifest entry."""
    source = question_source(folder)
    digest = sha256_of(source)
    try:
        items = parse_text(source.read_text(encoding="utf-8-sig"))
    except (RecordError, UnicodeDecodeError) as err:
        raise SourceError(f"MMAR: {source} is not the MMAR question file ({err}); {SUPPLY}.") \
            from None
    if not items or not isinstance(items[0], dict) or "audio_path" not in items[0]:
        raise SourceError(f"MMAR: {source} is not the MMAR question file (items with "
                          f"audio_path); {SUPPLY}.")
    with atomic_path(dest) as tmp:
        if source.name == QUESTION_FILE:
            shutil.copyfile(source, tmp)
            how = "copied"
        else:
            tmp.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n"
                                   for item in items), encoding="utf-8")
            how = f"written one item per line from {source.name} (a JSON list)"
    logger.info("MMAR questions: %s, %d items from %s (sha256 %s)", how, len(items), source,
                digest)
    return {"source": str(source), "sha256": digest, "items": len(items), "how": how}


def join_report(question_file: Path, shown: int = 5) -> dict[str, Any]:
    """Questions without their audio file, unusable rows, and audio files no question names."""
    report = ReadReport()
    items = parse_question_file(question_file)  # the one parse (utf-8-sig, JSON or lines)
    list(read_mmar(question_file, items=items, report=report))
    audio_dir = question_file.parent / AUDIO_DIR
    files = {p.name for p in audio_dir.iterdir()} if audio_dir.is_dir() else set()
    unused = sorted(files - set(audio_names(items).values()))
    if report.missing_audio:
        logger.warning("MMAR: %d of %d questions have no audio file (e.g. %s); evaluation scores "
                       "them wrong", len(report.missing_audio), len(items),
                       ", ".join(report.missing_audio[:shown]))
    if report.reasons:
        logger.warning("MMAR: %d rows cannot be used (e.g. %s); evaluation counts them wrong",
                       len(report.reasons), "; ".join(f"{r}: {w}" for r, w in report.reasons[:2]))
    if unused:
        logger.warning("MMAR: %d audio files are named by no question (e.g. %s); kept, never "
                       "used", len(unused), ", ".join(unused[:shown]))
    logger.info("MMAR: %d of %d questions have their audio file", report.read - len(
        report.missing_audio), len(items))
    return {"questions": len(items), "audio_files": len(files),
            "questions_without_audio": report.missing_audio,
            "unusable_rows": [f"{r}: {w}" for r, w in report.reasons],
            "audio_without_question": unused}
