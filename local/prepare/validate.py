"""Check prepared datasets before training/evaluation: report everything, fail only if unusable.

For each dataset (AVQA train/val, MMSU, MMAU test-mini, and where prepared the full MMAU test
and MMAR) the records are read with the dataset readers (`local.data`) and their audio probed
with the one decoder (`local.core.audio`): counts, unreadable, missing or truncated audio (a WAV
shorter than its header says, which libsndfile reads without a word), durations (how many clips
exceed each model family's window: 30 s Qwen2-Audio, 300 s the Omni models), sampling rates and
channels, malformed questions, answers not among the choices, duplicate choices and 'None'
options (both legal, only counted). A short markdown report (and a JSON twin) is written.

A dataset is UNUSABLE, and the exit status non-zero, when nothing in it can be read, no audio
decodes, or more than `--max_bad_fraction` (default 5%) of the checked rows are broken (skipped
by the reader, or audio missing/unreadable/truncated). Below that, training skips bad rows and
evaluation scores them wrong (the recipe's bad-record policy); above it the download or
conversion went wrong.

AVQA is ~55 GB, so by default 2,000 evenly spaced rows per split are checked (text and audio),
`--avqa_max_items 0` checks all; MMSU and MMAU are checked in full (`--max_items` caps the
clips decoded: MMAU evenly spaced, MMSU the first N, as it is streamed). Each dataset shows a
progress bar with rate and ETA (MMSU's total from its parquet footers: `mmsu_row_count`).

Example:
    python -m local.prepare.validate --avqa data/avqa --mmsu data/mmsu \\
        --mmau_json data/mmau/mmau-test-mini.json --mmau_audio_dir data/mmau/test-mini-audios \\
        --model_family qwen2_5_omni --report data/validation.md
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from local.core.audio import AudioError, decode_audio
from local.core.families import FAMILIES as MODEL_FAMILIES
from local.core.families import FAMILY_NAMES
from local.core.records import ReadReport, Record, RecordError
from local.data.avqa import open_avqa, read_avqa
from local.data.mmar import read_mmar
from local.data.mmau import read_mmau
from local.data.mmsu import mmsu_row_count, read_mmsu
from local.prepare.validation_report import DatasetCheck, write_report

logger = logging.getLogger("validate")
AVQA_DEFAULT_ITEMS = 2000
FAMILIES = FAMILY_NAMES


def windows() -> dict[str, float]:
    """Each model family's audio window in seconds (`local.core.families`)."""
    return {f.name: f.max_audio_seconds for f in MODEL_FAMILIES}


def probe(item: tuple[str, Any]) -> tuple[str, Any]:
    """(id, (rate, channels, seconds, incomplete)) or (id, error text) for one record's audio;
    `incomplete` says what a WAV shorter than its header lacks (else None)."""
    ident, audio = item
    try:
        clip = decode_audio(audio, name=ident)
    except AudioError as err:
        return ident, str(err)
    return ident, (clip.original_sampling_rate, clip.original_channels, clip.original_duration_s,
                   clip.incomplete)


def sample_indices(total: int, limit: int | None) -> list[int] | None:
    """Evenly spaced row numbers (first and last included), or None to take every row."""
    if not limit or limit >= total:
        return None
    return sorted({int(i) for i in np.linspace(0, total - 1, limit).round()})


def _classify(reason: str) -> str:
    if "not one of the choices" in reason or "answer_index" in reason:
        return "answer_not_in_choices"
    if "no audio" in reason or "carries no audio" in reason:
        return "missing_audio"
    return "malformed"


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def check_records(check: DatasetCheck, records: Iterable[Record], report: ReadReport,
                  decode_ids: set[str] | None, num_workers: int, total: int | None,
                  rename: Callable[[str], str] = str, max_decoded: int | None = None) -> None:
    """Fill `check` from the records a reader yields (and its ReadReport, once exhausted).

    `rename` maps the reader's row names to the ones reported (e.g. sampled -> real rows);
    `max_decoded` caps how many clips are decoded (the first ones).
    """
    win = windows()

    def to_probe() -> Iterator[tuple[str, Any]]:
        for rec in tqdm(records, desc=check.name, unit="row", total=total):
            check.read += 1
            if len(set(rec.choices)) < len(rec.choices):
                check.add("duplicate_choices", rec.id)
            if "None" in rec.choices:
                check.add("none_option", rec.id)
            if decode_ids is not None and rec.id not in decode_ids:
                continue
            if max_decoded is not None and check.read > max_decoded:
                continue
            if rec.audio is None or (isinstance(rec.audio, str) and not Path(rec.audio).exists()):
                check.add("missing_audio", rec.id)
                check.audio_bad += 1
                continue
            yield rec.id, rec.audio

    pool = ProcessPoolExecutor(num_workers) if num_workers > 1 else None
    try:
        for batch in _batches(to_probe(), 64):
            results = pool.map(probe, batch) if pool else map(probe, batch)
            for ident, result in results:
                if isinstance(result, str):
                    check.add("unreadable_audio", ident, result)
                    check.audio_bad += 1
                    continue
                rate, channels, seconds, incomplete = result
                if incomplete:  # decodes, but part of the clip is missing: a broken row
                    check.add("truncated_audio", ident, incomplete)
                    check.audio_bad += 1
                    continue
                check.audio_ok += 1
                check.rates[rate] = check.rates.get(rate, 0) + 1
                check.channels[channels] = check.channels.get(channels, 0) + 1
                check.durations.append(seconds)
                for family, limit in win.items():
                    if seconds > limit:
                        check.add(f"beyond_window_{family}", ident)
    finally:
        if pool:
            pool.shutdown()
    for row_id, reason in report.reasons:
        check.add(_classify(reason), rename(row_id), reason)
    check.skipped = report.skipped


def check_avqa(root: Path, split: str, max_items: int | None, num_workers: int) -> DatasetCheck:
    """AVQA split: `max_items` evenly spaced rows (None or 0: all), text and audio."""

    check = DatasetCheck(f"avqa/{split}")
    ds, split, _ = open_avqa(root, split)
    check.rows = len(ds)
    picked = sample_indices(len(ds), max_items)
    if picked is not None:
        ds = ds.select(picked)
        check.sampled = True
    check.checked = len(ds)
    report = ReadReport()
    records = read_avqa(ds, split, report=report)

    def real_row(row_id: str) -> str:  # the reader numbers rows of the selection
        if picked is None:
            return row_id
        return re.sub(r"^row (\d+)", lambda m: f"row {picked[int(m.group(1))]}", row_id)

    check_records(check, _renumber(records, picked, split), report, None, num_workers, len(ds),
                  real_row)
    return check


def _renumber(records: Iterable[Record], picked: list[int] | None, split: str
              ) -> Iterator[Record]:
    for rec in records:
        if picked is not None:
            rec.meta["row"] = picked[rec.meta["row"]]
            rec.id = f"avqa-{split}-{rec.meta['row']}"
        yield rec


def check_mmsu(path: Path, max_items: int | None, num_workers: int) -> DatasetCheck:
    """MMSU, streamed (its clips are not all held in memory); `max_items`: the first N decoded."""

    check = DatasetCheck("mmsu")
    report = ReadReport()
    records = read_mmsu(path, report=report)
    check_records(check, records, report, None, num_workers, mmsu_row_count(path),
                  max_decoded=max_items)
    check.rows = check.read + check.skipped
    check.sampled = bool(max_items) and check.read > max_items
    check.checked = min(check.rows, max_items) if check.sampled and max_items else check.rows
    return check


def check_mmau(json_path: Path, audio_dir: Path | None, max_items: int | None,
               num_workers: int, split: str = "test-mini") -> DatasetCheck:
    """MMAU test-mini, or the full test (`split="test"`: answers withheld, not required)."""
    check = DatasetCheck("mmau-test-mini" if split == "test-mini" else "mmau_test")
    report = ReadReport()
    records = list(read_mmau(json_path, audio_dir, withheld=split == "test", report=report))
    return _check_list(check, records, report, max_items, num_workers)


def check_mmar(question_file: Path, audio_dir: Path | None, max_items: int | None,
               num_workers: int) -> DatasetCheck:
    """MMAR: every item's `audio_path` clip decoded (or a sample of `max_items`)."""
    report = ReadReport()
    records = list(read_mmar(question_file, audio_dir, report=report))
    return _check_list(DatasetCheck("mmar"), records, report, max_items, num_workers)


def _check_list(check: DatasetCheck, records: list[Record], report: ReadReport,
                max_items: int | None, num_workers: int) -> DatasetCheck:
    check.rows = len(records) + report.skipped
    picked = sample_indices(len(records), max_items)
    decode_ids = None if picked is None else {records[i].id for i in picked}
    check.sampled = picked is not None
    check.checked = check.rows if picked is None else len(picked)
    check_records(check, records, report, decode_ids, num_workers, len(records))
    return check


def run(avqa: Path | None = None, mmsu: Path | None = None, mmau_json: Path | None = None,
        mmau_audio_dir: Path | None = None, *, report: Path, mmau_test_json: Path | None = None,
        mmar_json: Path | None = None, model_family: str | None = None,
        avqa_max_items: int | None = AVQA_DEFAULT_ITEMS, max_items: int | None = None,
        max_bad_fraction: float = 0.05, num_workers: int = 1) -> list[DatasetCheck]:
    """Check the given datasets, write `report` (+ .json); the checks (see `.usable`)."""
    jobs: list[tuple[str, Any]] = []
    if avqa is not None:
        splits = [s for s in ("train", "val") if (Path(avqa) / s).is_dir()] or ["train"]
        for split in splits:
            limit = max_items if max_items else avqa_max_items
            jobs.append((f"avqa/{split}", lambda s=split, n=limit: check_avqa(
                Path(avqa), s, n, num_workers)))
    if mmsu is not None:
        jobs.append(("mmsu", lambda: check_mmsu(Path(mmsu), max_items, num_workers)))
    if mmau_json is not None:
        # None: each audio_id relative to the question file's folder, as evaluation reads it
        # (data/mmau/test-mini-audios/<id>.wav); a folder: each clip by file name under it.
        audio_dir = Path(mmau_audio_dir) if mmau_audio_dir else None
        jobs.append(("mmau-test-mini", lambda: check_mmau(Path(mmau_json), audio_dir, max_items,
                                                          num_workers)))
    if mmau_test_json is not None:  # audio by audio_id, beside the question file
        jobs.append(("mmau_test", lambda: check_mmau(Path(mmau_test_json), None, max_items,
                                                     num_workers, split="test")))
    if mmar_json is not None:  # audio by audio_path, beside the question file
        jobs.append(("mmar", lambda: check_mmar(Path(mmar_json), None, max_items, num_workers)))
    checks = []
    for name, job in jobs:
        try:
            check = job()
        except (FileNotFoundError, RecordError, OSError, ValueError) as err:
            check = DatasetCheck(name)
            check.fatal = str(err).splitlines()[0]
        check.judge(max_bad_fraction)
        checks.append(check)
    write_report(checks, Path(report), model_family, windows())
    return checks


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (1 if any dataset is unusable)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avqa", type=Path, help="AVQA save_to_disk folder (train/, val/)")
    parser.add_argument("--mmsu", type=Path, help="MMSU snapshot folder (parquet) or save_to_disk")
    parser.add_argument("--mmau_json", type=Path, help="mmau-test-mini.json")
    parser.add_argument("--mmau_audio_dir", type=Path,
                        help="MMAU audio folder (default: beside the JSON, by audio_id)")
    parser.add_argument("--mmau_test_json", type=Path,
                        help="mmau-test.json, the full test (audio by audio_id beside it)")
    parser.add_argument("--mmar_json", type=Path,
                        help="MMAR-meta.jsonl (audio by audio_path beside it)")
    parser.add_argument("--model_family", choices=FAMILIES,
                        help="the family you will train/evaluate (highlights its window)")
    parser.add_argument("--report", type=Path, required=True, help="markdown report (+ .json)")
    parser.add_argument("--avqa_max_items", type=int, default=AVQA_DEFAULT_ITEMS,
                        help="AVQA rows checked per split, evenly spaced (0: all)")
    parser.add_argument("--max_items", type=int, default=0,
                        help="cap on rows checked per dataset, AVQA included (0: no cap)")
    parser.add_argument("--max_bad_fraction", type=float, default=0.05,
                        help="a dataset with more broken rows than this is unusable")
    parser.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes decoding audio")
    args = parser.parse_args(argv)
    if not (args.avqa or args.mmsu or args.mmau_json or args.mmau_test_json or args.mmar_json):
        parser.error("give at least one of --avqa, --mmsu, --mmau_json, --mmau_test_json, "
                     "--mmar_json")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [validate] %(message)s")
    checks = run(args.avqa, args.mmsu, args.mmau_json, args.mmau_audio_dir, report=args.report,
                 mmau_test_json=args.mmau_test_json, mmar_json=args.mmar_json,
                 model_family=args.model_family, avqa_max_items=args.avqa_max_items or None,
                 max_items=args.max_items or None, max_bad_fraction=args.max_bad_fraction,
                 num_workers=args.num_workers)
    for check in checks:
        logger.info(check.one_line())
    bad = [c for c in checks if not c.usable]
    for check in bad:
        logger.error("UNUSABLE %s", check.verdict)
    logger.info("report: %s", args.report)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
