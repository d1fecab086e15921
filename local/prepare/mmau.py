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

The full test (`--sources mmau_test`, `prepare_mmau(..., split=SPLITS["test"])`) is the same
flow on its own files (`local.data.mmau.SPLITS`): `mmau-test.json` from the same repository
(or --mmau_test_json), `test-audios/` extracted from the hub's `test-audios.tar.gz` alone
(gamma-lab-umd/MMAU-test; or --mmau_test_audio), its `.done` marker `data/mmau/.done-test`.

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

from local.data.mmau import QUESTIONS_URL, SPLITS, Split, audio_names, parse_question_file
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
from local.util.fsio import DONE, atomic_path, atomic_write_json, mark_done

logger = logging.getLogger("prepare")
MMAU_JSON_URL = QUESTIONS_URL.format(file=SPLITS["test-mini"].question_file)
MMAU_TEST_JSON_URL = QUESTIONS_URL.format(file=SPLITS["test"].question_file)
# sha256 of question files this recipe was checked against (others are used, with a warning).
KNOWN_MMAU_JSON = {"9f18fda99f8dbc2bc5ecd6323fb5063309f54969810b5c6f1caeb3b8d904cf1c":
                   "MMAU-v05.15.25 test-mini (file of 2025-08-09, 1000 items)"}


def _options(args: argparse.Namespace, split: Split) -> tuple[str | None, str | None, str]:
    """(local audio, local question file, question URL) given for `split`'s part."""
    if split.has_answers:
        return args.mmau_audio, args.mmau_json, args.mmau_url
    return args.mmau_test_audio, args.mmau_test_json, args.mmau_test_url


def prepare_mmau(args: argparse.Namespace, src: Source, errors: list[str],
                 split: Split = SPLITS["test-mini"]) -> None:
    """data/mmau: the question file (sha256 in manifest.json), then the audio folder."""
    dest = Path(args.data_dir) / "mmau"
    audio_dir, json_path = dest / split.audio_dir, dest / split.question_file
    local_audio, local_json, url = _options(args, split)
    wanted = {"source": str(Path(local_audio).resolve()) if local_audio else src.repo_id,
              "revision": src.revision,
              "questions": str(Path(local_json).resolve()) if local_json else url}
    marker = None if split.has_answers else f"{DONE}-{split.name}"
    if already_prepared(dest, wanted, args.overwrite, marker=marker):
        return
    manifest: dict[str, Any] = {}
    failed = False
    try:
        if args.overwrite or not json_path.is_file():
            manifest["questions"] = fetch_questions(local_json, url, json_path, split)
    except SourceError as err:
        errors.append(str(err))
        failed = True
    names = names_of(json_path) if json_path.is_file() else {}
    try:
        if args.overwrite or not audio_dir.is_dir():
            folder = (local_path(local_audio, src.option, src.label) if local_audio
                      else hub_snapshot(src, args.cache_dir))
            if not local_audio and src.allow_patterns:  # the files asked for, not the others
                folder = _only(folder, src.allow_patterns)
            manifest["audio"] = {"source": str(folder),
                                 "how": build_audio_dir(folder, audio_dir, names)}
            logger.info("mmau audio: %s -> %s", manifest["audio"]["how"], audio_dir)
    except (SourceError, UnpackError) as err:
        errors.append(f"mmau audio: {err}" if isinstance(err, UnpackError) else str(err))
        failed = True
    if failed:
        return
    manifest["join"] = join_report(names, audio_dir)
    name = "manifest.json" if split.has_answers else f"manifest-{split.name}.json"
    old = json.loads((dest / name).read_text()) if (dest / name).is_file() else {}
    atomic_write_json(dest / name, {**old, **manifest})
    mark_done(dest, {**wanted, "how": f"audio folder + question file (see {name})"},
              marker=marker)


def _only(snapshot: Path, patterns: tuple[str, ...]) -> Path:
    """The one file of `snapshot` that `patterns` name (a cached snapshot may hold others)."""
    found = sorted(p for pattern in patterns for p in snapshot.glob(pattern))
    if len(found) != 1:
        raise SourceError(f"{snapshot}: expected one file matching {list(patterns)}, found "
                          f"{[p.name for p in found]}; re-run prepare with --overwrite.")
    return found[0]


def names_of(json_path: Path) -> dict[str, str]:
    """{item id: audio file name} from the question file (`local.data.mmau.audio_names`)."""
    try:
        return audio_names(parse_question_file(json_path))
    except (OSError, ValueError):
        return {}


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


def fetch_questions(local_json: str | None, url: str, json_path: Path,
                    split: Split = SPLITS["test-mini"]) -> dict[str, Any]:
    """Copy `local_json` or download `url` to json_path (atomic); check it; its manifest."""
    option = "--mmau_json" if split.has_answers else "--mmau_test_json"
    key = "mmau" if split.has_answers else "mmau_test"  # the --sources name
    what = f"{key} questions ({split.question_file}, from the MMAU project's GitHub repository)"
    with atomic_path(json_path) as tmp:  # in place only once checked
        if local_json:
            local = local_path(local_json, option, what)
            shutil.copyfile(local, tmp)
            digest, origin, how = sha256_of(tmp), str(local.resolve()), "copied"
        else:
            digest = fetch_url(url, tmp, option, what)
            origin, how = url, "downloaded"
        try:
            items = json.loads(tmp.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            items = None
        if not (isinstance(items, list) and items and isinstance(items[0], dict)
                and "audio_id" in items[0]):
            raise SourceError(f"{what}: {origin} is not the MMAU question list (JSON list of "
                              f"items with audio_id); pass the right file with {option} PATH.")
    known = KNOWN_MMAU_JSON.get(digest)
    if known is None and split.has_answers:
        logger.warning("mmau questions: sha256 %s is not a version this recipe was checked "
                       "against (%s); using it anyway", digest, ", ".join(KNOWN_MMAU_JSON.values()))
    logger.info("%s questions: %s %d items from %s (sha256 %s)", key, how, len(items), origin,
                digest)
    return {"source": origin, "how": how, "sha256": digest, "items": len(items),
            "bytes": json_path.stat().st_size, "known_version": known}


