"""MMAU test-mini evaluation: predict, write the official-format file, score, tables.

Outputs in `--out_dir`:
  predictions.json  every original item in file order, each with all its fields plus
                    `model_output` (the `<answer>` content, DOTALL, else the whole response),
                    `response` (the full text) and `prediction_error`. An item without a
                    prediction gets `model_output: ""`, so the official `evaluation.py` scores it
                    wrong instead of dropping it from the denominator.
  results.json      `accuracy` (percent, MMAU official token rule), counts, tables by task,
                    difficulty and sub-category, and every unanswered id with its reason.
  results.md        the same tables in markdown.
  partial/          per-rank JSONL logs (resume), eval_settings.json (what they were made with).

Example:
    $ python evaluate_mmau.py --model exp/grpo/checkpoint-100 --out_dir exp/grpo/eval/mmau/100 \\
        --mmau_json data/mmau/mmau-test-mini.json --mmau_audio_dir data/mmau/test-mini-audios
    $ python evaluate_mmau.py --score_only predictions.json --out results.json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.eval_io import atomic_write_json, atomic_write_text, clear
from local.eval_report import headline, markdown, public, score_items
from local.eval_run import (
    add_common_args,
    check_args,
    generator_factory,
    predict,
    prediction_fields,
    run_settings,
    setup_logging,
    truncated_count,
)
from local.inference import init_distributed
from local.readers import read_mmau
from local.records import ReadReport, RecordError

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
    """MMAU results for official-format items (see `local.eval_report.score_items`)."""
    result = score_items(items, match="mmau")
    return {"benchmark": BENCHMARK, **result}


def write_results(result: dict[str, Any], out: Path, heading: str) -> None:
    atomic_write_json(out, public(result))
    atomic_write_text(out.with_suffix(".md"), markdown(result, heading))
    print(headline(BENCHMARK, result), flush=True)


def score_only(pred_path: Path, out: Path | None) -> dict[str, Any]:
    """Score an existing predictions file (official format); writes RESULTS.json and .md."""
    try:
        items = json.loads(pred_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SystemExit(f"--score_only {pred_path}: file not found.") from err
    except json.JSONDecodeError as err:
        raise SystemExit(f"--score_only {pred_path}: not valid JSON ({err}).") from err
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SystemExit(f"--score_only {pred_path}: expected a JSON list of MMAU items "
                         "(objects with answer, choices and model_output).")
    result = score_predictions(items)
    write_results(result, out or pred_path.with_name("results.json"), f"{BENCHMARK}: {pred_path}")
    return result


def _load(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """(raw items, records) for the run: limited to the first --limit items of the file."""
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
    if args.limit is not None:
        raw = raw[:args.limit]
        keep = {item.get("id") for item in raw if isinstance(item, dict)}
        records = [r for r in records if r.id in keep]
    missing = [r.id for r in records if r.id in set(report.missing_audio)]
    if records and len(missing) == len(records) and not args.no_audio:
        raise SystemExit(f"none of the {len(records)} audio files was found (e.g. "
                         f"{records[0].audio}). Run `bash run.sh --stage prepare`, pass "
                         "--mmau_audio_dir, or use --no_audio for the text-only ablation.")
    if report.skipped:
        logger.warning("%d malformed items in %s are counted wrong: %s", report.skipped,
                       args.mmau_json, report.reasons[:5])
    return raw, records


def official_items(raw: Sequence[Any], by_id: dict[str, dict[str, Any]]) -> list[dict]:
    """Every original item with model_output / response / prediction_error (official format)."""
    items = []
    for index, item in enumerate(raw):
        item = dict(item) if isinstance(item, dict) else {"id": f"item-{index}", "raw": item}
        fields = prediction_fields(by_id.get(str(item.get("id"))))
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
        return score_only(args.score_only, args.out)
    dist = init_distributed()
    setup_logging(dist)
    out_dir: Path = args.out_dir
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            clear(out_dir, FINAL_FILES)
    dist.barrier()  # no rank reads the folder before rank 0 has cleared it
    raw, records = _load(args)
    generator = generator_factory(args, dist)
    by_id = predict(generator, records, out_dir, dist, batch_size=args.batch_size,
                    template=args.template, desc="MMAU",
                    settings=run_settings(args, mmau_json=str(args.mmau_json)))
    if by_id is None:
        return None
    items = official_items(raw, by_id)
    atomic_write_json(out_dir / "predictions.json", items)
    result = score_predictions(items)
    result["settings"] = run_settings(args, mmau_json=str(args.mmau_json), limit=args.limit)
    result["audio_truncated"] = truncated_count(by_id)
    write_results(result, out_dir / "results.json", f"{BENCHMARK}: {args.model}")
    return public(result)


if __name__ == "__main__":
    main()
