"""MMAU test-mini for `local.prepare.cli`: the question file and the audio folder.

`data/mmau/mmau-test-mini.json` is downloaded from the MMAU project's GitHub repository (or
copied from --mmau_json), checked to be the question list, and its sha256 recorded in
`data/mmau/manifest.json`. `data/mmau/test-mini-audios` comes from the hub dataset
gamma-lab-umd/MMAU-test-mini (or a local archive/folder, --mmau_audio): the hub's
`test_mini.parquet` is converted, each clip written as the file the question file's `audio_id`
names for its id (`local.prepare.unpack`); an archive is extracted, loose audio files are
symlinked. Then the two halves are joined: items whose audio file is missing, and audio files
no item names, are counted and logged (and kept in the manifest). Each half is atomic and
skipped when present; `data/mmau/.done` is written after both.

Example:
    >>> from local.prepare.mmau import prepare_mmau
    >>> errors = []
    >>> prepare_mmau(args, SOURCES["mmau"], errors)                    # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from local.prepare.hub import (
    Source,
    SourceError,
    already_prepared,
    fetch_url,
    hub_snapshot,
    local_path,
    sha256_of,
)
from local.prepare.unpack import UnpackError, build_audio_dir
from local.util.fsio import atomic_path, atomic_write_json, mark_done

logger = logging.getLogger("prepare")
MMAU_JSON_URL = "https://raw.githubusercontent.com/Sakshi113/MMAU/main/mmau-test-mini.json"
# sha256 of question files this recipe was checked against (others are used, with a warning).
KNOWN_MMAU_JSON = {"9f18fda99f8dbc2bc5ecd6323fb5063309f54969810b5c6f1caeb3b8d904cf1c":
                   "MMAU-v05.15.25 test-mini (file of 2025-08-09, 1000 items)"}


def prepare_mmau(args: argparse.Namespace, src: Source, errors: list[str]) -> None:
    """data/mmau: the question file (sha256 in manifest.json), then the audio folder."""
    dest = Path(args.data_dir) / "mmau"
    audio_dir, json_path = dest / "test-mini-audios", dest / "mmau-test-mini.json"
    wanted = {"source": str(Path(args.mmau_audio).resolve()) if args.mmau_audio else src.repo_id,
              "revision": src.revision,
              "questions": str(Path(args.mmau_json).resolve()) if args.mmau_json else args.mmau_url}
    if already_prepared(dest, wanted, args.overwrite):
        return
    manifest: dict[str, Any] = {}
    failed = False
    try:
        if args.overwrite or not json_path.is_file():
            manifest["questions"] = fetch_questions(args, json_path)
    except SourceError as err:
        errors.append(str(err))
        failed = True
    names = audio_names(json_path) if json_path.is_file() else {}
    try:
        if args.overwrite or not audio_dir.is_dir():
            folder = (local_path(args.mmau_audio, src.option, "mmau audio") if args.mmau_audio
                      else hub_snapshot(src, args.cache_dir))
            manifest["audio"] = {"source": str(folder),
                                 "how": build_audio_dir(folder, audio_dir, names)}
            logger.info("mmau audio: %s -> %s", manifest["audio"]["how"], audio_dir)
    except (SourceError, UnpackError) as err:
        errors.append(f"mmau audio: {err}" if isinstance(err, UnpackError) else str(err))
        failed = True
    if failed:
        return
    manifest["join"] = join_report(names, audio_dir)
    old = json.loads((dest / "manifest.json").read_text()) if (dest / "manifest.json").is_file() \
        else {}
    atomic_write_json(dest / "manifest.json", {**old, **manifest})
    mark_done(dest, {**wanted, "how": "audio folder + question file (see manifest.json)"})


def audio_names(json_path: Path) -> dict[str, str]:
    """{item id: audio file name} from the question file (`audio_id`'s base name)."""
    try:
        items = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(item["id"]): Path(item["audio_id"]).name for item in items
            if isinstance(item, dict) and isinstance(item.get("audio_id"), str) and "id" in item}


def join_report(names: dict[str, str], audio_dir: Path, shown: int = 5) -> dict[str, Any]:
    """Questions without an audio file and audio files no question names, counted and logged."""
    files = {p.name for p in audio_dir.iterdir()} if audio_dir.is_dir() else set()
    named = set(names.values())
    no_audio = sorted(i for i, name in names.items() if name not in files)
    unused = sorted(files - named)
    if no_audio:
        logger.warning("mmau: %d of %d questions have no audio file (e.g. %s); validation lists "
                       "them and evaluation scores them wrong", len(no_audio), len(names),
                       ", ".join(no_audio[:shown]))
    if unused:
        logger.warning("mmau: %d audio files are named by no question (e.g. %s); they are kept "
                       "but never used", len(unused), ", ".join(unused[:shown]))
    logger.info("mmau: %d of %d questions have their audio file", len(names) - len(no_audio),
                len(names))
    return {"questions": len(names), "audio_files": len(files),
            "questions_without_audio": no_audio, "audio_without_question": unused}


def fetch_questions(args: argparse.Namespace, json_path: Path) -> dict[str, Any]:
    """Copy --mmau_json or download the URL to json_path (atomic); check it; its manifest."""
    what = "mmau questions (mmau-test-mini.json, from the MMAU project's GitHub repository)"
    with atomic_path(json_path) as tmp:  # in place only once checked
        if args.mmau_json:
            local = local_path(args.mmau_json, "--mmau_json", what)
            shutil.copyfile(local, tmp)
            digest, origin, how = sha256_of(tmp), str(local.resolve()), "copied"
        else:
            digest = fetch_url(args.mmau_url, tmp, "--mmau_json", what)
            origin, how = args.mmau_url, "downloaded"
        try:
            items = json.loads(tmp.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            items = None
        if not (isinstance(items, list) and items and isinstance(items[0], dict)
                and "audio_id" in items[0]):
            raise SourceError(f"{what}: {origin} is not the MMAU question list (JSON list of "
                              "items with audio_id); pass the right file with --mmau_json PATH.")
    known = KNOWN_MMAU_JSON.get(digest)
    if known is None:
        logger.warning("mmau questions: sha256 %s is not a version this recipe was checked "
                       "against (%s); using it anyway", digest, ", ".join(KNOWN_MMAU_JSON.values()))
    logger.info("mmau questions: %s %d items from %s (sha256 %s)", how, len(items), origin, digest)
    return {"source": origin, "how": how, "sha256": digest, "items": len(items),
            "bytes": json_path.stat().st_size, "known_version": known}


