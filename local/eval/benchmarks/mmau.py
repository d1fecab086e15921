"""MMAU test-mini evaluation: predict, write the official-format file, score, tables.

Outputs in `--out_dir`:
  predictions.json  every original item in file order, each with all its fields plus
                    `model_output` (the `<answer>` content, DOTALL, else the whole response),
                    `response` (the full text) and `prediction_error`. An item without a
                    prediction gets `model_output: ""`, so the official `evaluation.py` scores it
                    wrong instead of dropping it from the denominator.
  results.json      `accuracy` (percent, MMAU official token rule), counts, tables by task,
                    difficulty and sub-category, and every unanswered id with its reason
                    (`--score_only` adds `question_check`: extra, duplicate, missing ids).
  results.md        the same tables in markdown.
  partial/          per-rank JSONL logs (resume), eval_settings.json (what they were made with).

Example:
    $ python evaluate_mmau.py --model exp/grpo/checkpoint-100 --out_dir exp/grpo/eval/mmau/100 \\
        --mmau_json data/mmau/mmau-test-mini.json --mmau_audio_dir data/mmau/test-mini-audios
    $ python evaluate_mmau.py --score_only predictions.json --out results.json

`--score_only` scores against the benchmark's question set (`--mmau_json`): each question gets
the first prediction with its id (answer and choices from the question file); predictions of
ids that are no question are listed and ignored, an id predicted twice is listed and counted
once, a question without a prediction is counted wrong. Without the question file it stops,
unless `--no_question_check` (named in the results) scores the file as it is.
Duplicate ids in the question file: the first item is the question, each later one is counted
wrong and listed as "<id> (item <index>)". An empty question or predictions file is an error.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.core.readers import read_mmau
from local.core.records import ReadReport, Record, RecordError
from local.eval.prediction_log import clear
from local.eval.report import (
    CHECK_SKIPPED,
    check_lines,
    checked_items,
    duplicate_question_reason,
    headline,
    item_id,
    markdown,
    public,
    score_items,
)
from local.eval.runner import (
    add_common_args,
    check_args,
    generator_factory,
    predict,
    prediction_fields,
    run_settings,
    setup_logging,
    truncated_count,
)
from local.util.dist import init_distributed
from local.util.fsio import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)
BENCHMARK = "MMAU test-mini"
FINAL_FILES = ["predictions.json", "results.json", "results.md"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate an audio LM on MMAU test-mini (official-format predictions, "
        "official token rule, items without a prediction counted wrong).")
    add_common_args(parser)
    parser.add_argument("--mmau_json", type=Path, default=Path("data/mmau/mmau-test-mini.json"),
                        help="MMAU question file (default: %(default)s)")
    parser.add_argument("--mmau_audio_dir", type=Path, default=None,
                        help="folder of the test-mini audio files (default: audio_id relative "
                        "to the question file's folder, i.e. data/mmau/test-mini-audios)")
    return parser


def score_predictions(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """MMAU results for official-format items (see `local.eval.report.score_items`)."""
    result = score_items(items, match="mmau")
    return {"benchmark": BENCHMARK, **result}


def write_results(result: dict[str, Any], out: Path, heading: str) -> None:
    atomic_write_json(out, public(result))
    atomic_write_text(out.with_suffix(".md"), markdown(result, heading))
    print(headline(BENCHMARK, result), flush=True)


def _read_list(path: Path, option: str, what: str, empty: str) -> list[Any]:
    """A non-empty JSON list of objects from `path`; anything else is a clear error."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SystemExit(f"{option} {path}: file not found.") from err
    except json.JSONDecodeError as err:
        raise SystemExit(f"{option} {path}: not valid JSON ({err}).") from err
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SystemExit(f"{option} {path}: expected a JSON list of MMAU items ({what}).")
    if not items:
        raise SystemExit(f"{option} {path}: {empty}")
    return items


NO_QUESTIONS = ("the question file holds no questions (an empty list): nothing to evaluate; "
                "re-download it with `bash run.sh --stage prepare`.")
NO_PREDICTIONS = ("the file holds no predictions (an empty list): nothing to score; point it at "
                  "the predictions.json of a finished evaluation.")


def _question_set(json_path: Path) -> list[dict[str, Any]]:
    """The benchmark's questions for --score_only, or a clear error naming the opt-out."""
    if not json_path.is_file():
        raise SystemExit(
            f"--score_only checks the predictions against the benchmark's question set, but "
            f"the question file {json_path} is not found. Pass --mmau_json PATH (`bash run.sh "
            "--stage prepare` writes data/mmau/mmau-test-mini.json), or --no_question_check to "
            "score the file as it is (extra, duplicated and missing items then go unnoticed).")
    return _read_list(json_path, "--mmau_json", "questions with id, answer, choices",
                      NO_QUESTIONS)


def score_only(pred_path: Path, out: Path | None, json_path: Path | None) -> dict[str, Any]:
    """Score an existing predictions file (official format); writes RESULTS.json and .md.

    With `json_path` the predictions are checked against the question set (`reconcile`: extra
    ids ignored, duplicates counted once, missing ids counted wrong); None scores the file as it
    is, and the results say so.
    """
    predictions = _read_list(pred_path, "--score_only",
                             "objects with id, answer, choices and model_output", NO_PREDICTIONS)
    if json_path is None:
        items, check = predictions, CHECK_SKIPPED
    else:
        items, check = checked_items(_question_set(json_path), predictions, pred_path,
                                     "--mmau_json")
    for line in check_lines(check):
        logger.warning("%s: %s", pred_path, line)
    result = {**score_predictions(items), "question_check": check}
    if json_path is not None:
        result["question_file"] = str(json_path)
    write_results(result, out or pred_path.with_name("results.json"), f"{BENCHMARK}: {pred_path}")
    return result


@dataclass(frozen=True)
class Question:
    """One item of the question file: its record, or None and why it is counted wrong."""

    index: int
    item: Any
    record: Record | None
    reason: str | None = None


def _load(args: argparse.Namespace) -> list[Question]:
    """The question file's items, each with its record (None: counted wrong, with the reason);
    the first --limit items of the file."""
    if args.mmau_audio_dir is not None and not args.no_audio and not args.mmau_audio_dir.is_dir():
        raise SystemExit(f"--mmau_audio_dir {args.mmau_audio_dir}: folder not found. Run `bash "
                         "run.sh --stage prepare` (it writes data/mmau/test-mini-audios), pass "
                         "the right folder, or use --no_audio for the text-only ablation.")
    report = ReadReport()
    try:
        records = list(read_mmau(args.mmau_json, args.mmau_audio_dir, report=report))
        raw = json.loads(Path(args.mmau_json).read_text(encoding="utf-8"))
    except (FileNotFoundError, RecordError) as err:
        raise SystemExit(f"--mmau_json: {err}") from err
    if not raw:
        raise SystemExit(f"--mmau_json {args.mmau_json}: {NO_QUESTIONS}")
    questions = align(raw, records, [reason for _, reason in report.reasons])
    if args.limit is not None:
        questions = questions[:args.limit]
    records = [q.record for q in questions if q.record is not None]
    missing = set(report.missing_audio)
    if records and all(r.id in missing for r in records) and not args.no_audio:
        raise SystemExit(f"none of the {len(records)} audio files was found (e.g. "
                         f"{records[0].audio}). Run `bash run.sh --stage prepare`, pass "
                         "--mmau_audio_dir, or use --no_audio for the text-only ablation.")
    unusable = [q for q in questions if q.record is None]
    if unusable:
        logger.warning("%d items in %s are counted wrong: %s", len(unusable), args.mmau_json,
                       [f"item {q.index}: {q.reason}" for q in unusable[:5]])
    return questions


def _same(record: Record, item: Any) -> bool:
    """Whether `record` was read from `item` (the reader keeps a deep copy of it as meta)."""
    return isinstance(item, dict) and record.id == item.get("id") and (
        json.dumps(record.meta, sort_keys=True, default=str)
        == json.dumps(item, sort_keys=True, default=str))


def align(raw: Sequence[Any], records: Sequence[Record], skipped: Sequence[str]
          ) -> list[Question]:
    """Each item of the question file with the record `read_mmau` made of it, in file order.

    The reader yields records in file order and skips the rest, each skip with a reason
    (`skipped`, in order). The first item with an id is the question; every later item with the
    same id is a duplicate, counted wrong (`duplicate_question_reason`) even if it is readable.
    """
    pending, reasons = iter(records), iter(skipped)
    record = next(pending, None)
    first_at: dict[str, int] = {}
    questions = []
    for index, item in enumerate(raw):
        mine = record if record is not None and _same(record, item) else None
        if mine is not None:
            record = next(pending, None)
        reason = None if mine is not None else next(reasons, "skipped by the reader")
        ident = item_id(item, index)
        if ident in first_at:
            mine, reason = None, duplicate_question_reason(first_at[ident])
        first_at.setdefault(ident, index)
        questions.append(Question(index, item, mine, reason))
    return questions


def official_items(questions: Sequence[Question],
                   by_id: dict[str, dict[str, Any]]) -> list[dict]:
    """Every original item with model_output / response / prediction_error (official format)."""
    items = []
    for q in questions:
        item = dict(q.item) if isinstance(q.item, dict) else {"id": f"item-{q.index}",
                                                              "raw": q.item}
        if q.record is None:
            fields = {"model_output": None, "response": None, "prediction_error": q.reason}
        else:
            fields = prediction_fields(by_id.get(q.record.id))
        if fields["model_output"] is None:  # the official script drops items lacking the key
            fields["model_output"] = ""
            fields["prediction_error"] = fields["prediction_error"] or "no prediction"
        items.append({**item, **fields})
    return items


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the evaluation (or --score_only); rank 0 returns the results dict."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    if args.score_only is not None:
        logging.basicConfig(level=logging.INFO)
        return score_only(args.score_only, args.out,
                          None if args.no_question_check else args.mmau_json)
    dist = init_distributed()
    setup_logging(dist)
    out_dir: Path = args.out_dir
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            clear(out_dir, FINAL_FILES)
    dist.barrier()  # no rank reads the folder before rank 0 has cleared it
    questions = _load(args)
    records = [q.record for q in questions if q.record is not None]
    generator = generator_factory(args, dist)
    by_id = predict(generator, records, out_dir, dist, batch_size=args.batch_size,
                    template=args.template, desc="MMAU",
                    settings=run_settings(args, mmau_json=str(args.mmau_json)))
    if by_id is None:
        return None
    items = official_items(questions, by_id)
    atomic_write_json(out_dir / "predictions.json", items)
    result = score_predictions(items)
    result["settings"] = run_settings(args, mmau_json=str(args.mmau_json), limit=args.limit)
    result["audio_truncated"] = truncated_count(by_id)
    write_results(result, out_dir / "results.json", f"{BENCHMARK}: {args.model}")
    return public(result)


if __name__ == "__main__":
    main()
