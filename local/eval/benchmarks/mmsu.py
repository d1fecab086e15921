"""MMSU evaluation under two protocols, each number printed with the protocol that produced it.

Options are MMSU's by position everywhere ('None' padding of two-choice items kept, see
`local.core.readers`), so option i is letter "ABCD"[i] in both protocols.

* ``exact`` (the reference recipe's, WeST's GRPO example): the `--template` prompt (options as
  a list repr); correct iff the `<answer>` content equals the option text exactly.
* ``letter`` (MMSU's official protocol): the official prompt (`local.core.prompts.
  build_letter_prompt`), the letter read from the raw response by the official rule
  (`local.core.answers.mmsu_official_letter`). Two figures, each labelled: `accuracy` (strict: every
  item in the denominator, a response with no readable letter counted wrong) and
  `official_accuracy` / `official_denominator` (what the official `mmsu_evaluation.py` prints:
  unreadable and null responses left out of the denominator; `local.eval.benchmarks.mmsu_official`).

Each protocol is its own generation pass (different prompts), resumable under
`<out_dir>/<protocol>/partial/`. Outputs: `predictions_<protocol>.json`,
`predictions_letter.jsonl` (the official scorer's input format: run the official script on it
to check us), `results.json` (`accuracy` = the first protocol's, named by `accuracy_protocol`;
every protocol under `protocols`) and `results.md`. `--score_only` reads our predictions JSON
or the official JSONL format.

Example:
    $ python evaluate_mmsu.py --model Qwen/Qwen2.5-Omni-7B --mmsu_path data/mmsu \\
        --out_dir exp/grpo/eval/mmsu/0
    $ python evaluate_mmsu.py --score_only exp/grpo/eval/mmsu/0/predictions_exact.json \\
        --protocols exact --out results.json
    $ python evaluate_mmsu.py --score_only official_format.jsonl --protocols letter
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.core.answers import extract_answer
from local.core.prompts import build_letter_prompt
from local.core.readers import read_mmsu
from local.core.records import ReadReport, Record
from local.eval.benchmarks.mmsu_official import (
    is_official_format,
    items_from_official,
    official_rows,
    official_score,
    read_jsonl,
)
from local.eval.prediction_log import clear
from local.eval.report import (
    CHECK_SKIPPED,
    check_lines,
    checked_items,
    headline,
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
from local.eval.scoring import mmsu_breakdown
from local.util.dist import init_distributed
from local.util.fsio import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)
BENCHMARK = "MMSU"
PROTOCOLS = ("exact", "letter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate an audio LM on MMSU with the reference recipe's exact-text "
        "protocol and the official letter protocol; every number is printed with its protocol.")
    add_common_args(parser)
    parser.add_argument("--mmsu_path", type=Path, default=Path("data/mmsu"),
                        help="MMSU hub snapshot folder (yuantuo666/MMSU-full_5k_hf_format.v0), "
                        "a save_to_disk folder or a parquet file (default: %(default)s)")
    parser.add_argument("--protocols", default="exact,letter",
                        help="comma-separated, from: exact (the reference recipe's), letter "
                        "(MMSU's official prompt and letter rule; strict and official figures); "
                        "the first gives the top-level accuracy (default: %(default)s)")
    return parser


def letter_prompt(record: Record) -> str:
    """The official MMSU letter prompt for a record (see `local.core.prompts`)."""
    return build_letter_prompt(record.question, record.choices)


def model_output_for(protocol: str, item: dict[str, Any]) -> Any:
    """What a protocol judges: `letter` the raw response (the official scorer reads it whole),
    `exact` its `<answer>` content; an item without a raw response keeps its `model_output`."""
    if "response" not in item:
        return item.get("model_output")
    response = item["response"]
    if protocol == "letter" or not isinstance(response, str):
        return response
    return extract_answer(response, "eval")


def score_protocol(items: Sequence[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """One protocol's results: overall and per category level (see local.eval.scoring); the letter
    protocol also gets the official scorer's figures (`local.eval.benchmarks.mmsu_official`)."""
    judged = [{**item, "model_output": model_output_for(protocol, item)} for item in items]
    result = score_items(judged, match=protocol, tables_fn=mmsu_breakdown)
    if protocol == "letter":
        result.update(official_score(official_rows(judged)))
    return result


def official_line(result: dict[str, Any]) -> str:
    """The letter protocol's official figure, labelled, for the log and results.md."""
    return (f"{BENCHMARK} accuracy [letter, as the official mmsu_evaluation.py computes it: "
            f"unreadable responses left out of the denominator]: "
            f"{result['official_accuracy']:.2f}% ({result['official_correct']}/"
            f"{result['official_denominator']}; {len(result['official_left_out'])} left out)")


def _protocols(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in chosen if p not in PROTOCOLS]
    if not chosen or bad:
        raise SystemExit(f"--protocols {text!r}: choose from {', '.join(PROTOCOLS)}.")
    return chosen


def combine(results: dict[str, dict[str, Any]], settings: dict | None = None) -> dict[str, Any]:
    first = next(iter(results))
    combined: dict[str, Any] = {"benchmark": BENCHMARK, "accuracy": results[first]["accuracy"],
                                "accuracy_protocol": first,
                                "protocols": {p: public(r) for p, r in results.items()}}
    if settings is not None:
        combined["settings"] = settings
    return combined


def write_all(results: dict[str, dict[str, Any]], out: Path, heading: str,
              settings: dict | None = None) -> dict[str, Any]:
    combined = combine(results, settings)
    atomic_write_json(out, combined)
    atomic_write_text(out.with_suffix(".md"), "\n".join(
        markdown(r, f"{heading} [{p}]")
        + (f"\n**{official_line(r)}**\n" if "official_accuracy" in r else "")
        for p, r in results.items()))
    for result in results.values():
        print(headline(BENCHMARK, result), flush=True)
        if "official_accuracy" in result:
            print(official_line(result), flush=True)
    return combined


NOT_PREDICTIONS = ("expected this tool's predictions_<protocol>.json (a JSON list of MMSU "
                   "items with answer, choices and model_output/response) or the official "
                   "scorer's JSONL (one row per line with choice_a..choice_d, answer_gt, "
                   "response)")


def load_predictions(pred_path: Path) -> tuple[list[dict[str, Any]], bool]:
    """(items, is the official format) from our predictions JSON or the official JSONL;
    anything else is a clear error."""
    try:
        text = pred_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"--score_only {pred_path}: cannot read it ({err}).") from err
    if not text.strip():
        raise SystemExit(f"--score_only {pred_path}: the file is empty; {NOT_PREDICTIONS}.")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, list):
        if data and all(isinstance(i, dict) for i in data) and any(
                "answer" in i and ("model_output" in i or "response" in i) for i in data):
            return data, False
        if is_official_format(data):
            return items_from_official(data), True
    else:
        try:
            rows = read_jsonl(pred_path)
        except ValueError as err:
            raise SystemExit(f"--score_only {pred_path}: {err} {NOT_PREDICTIONS}.") from err
        if is_official_format(rows):
            return items_from_official(rows), True
    raise SystemExit(f"--score_only {pred_path}: not an MMSU predictions file; "
                     f"{NOT_PREDICTIONS}.")


OFFICIAL_AS_IS = ("the official scorer's format, scored as the official script scores it: as "
                  "it is, not checked against the question set")


def _question_set(mmsu_path: Path) -> list[dict[str, Any]]:
    """MMSU's questions for --score_only (no audio decoded), or a clear error naming the opt-out."""
    report = ReadReport()
    try:
        records = list(read_mmsu(mmsu_path, report=report))
    except FileNotFoundError as err:
        raise SystemExit(
            f"--score_only checks the predictions against MMSU's question set, but {err} Pass "
            "--mmsu_path PATH, or --no_question_check to score the file as it is (extra, "
            "duplicated and missing items then go unnoticed).") from err
    questions = [{**r.meta, **{k: v for k, v in r.to_json().items() if k != "meta"}}
                 for r in records]
    questions += [{"id": row_id, "prediction_error": f"malformed row: {reason}"}
                  for row_id, reason in report.reasons]
    if not questions:
        raise SystemExit(f"--mmsu_path {mmsu_path}: no MMSU questions; nothing to score.")
    return questions


def score_only(pred_path: Path, out: Path | None, protocols: list[str],
               mmsu_path: Path | None) -> dict[str, Any]:
    """Score a predictions file (ours, or the official JSONL format) under each protocol.

    Our format is checked against the question set read from `mmsu_path` (extra ids ignored,
    duplicates counted once, missing ids counted wrong; None: scored as it is, and the results
    say so). The official format is scored as the official script scores it, as it is.
    """
    items, official = load_predictions(pred_path)
    if official:
        check: dict[str, Any] | str = OFFICIAL_AS_IS
    elif mmsu_path is None:
        check = CHECK_SKIPPED
    else:
        items, check = checked_items(_question_set(mmsu_path), items, pred_path, "--mmsu_path")
    for line in check_lines(check):
        logger.warning("%s: %s", pred_path, line)
    results = {p: {**score_protocol(items, p), "question_check": check} for p in protocols}
    return write_all(results, out or pred_path.with_name("results.json"),
                     f"{BENCHMARK}: {pred_path}")


def _records(args: argparse.Namespace) -> tuple[list[Record], ReadReport]:
    report = ReadReport()
    try:
        reader = read_mmsu(args.mmsu_path, report=report)
        records = list(itertools.islice(reader, args.limit) if args.limit else reader)
    except FileNotFoundError as err:
        raise SystemExit(f"--mmsu_path: {err}") from err
    if not records:
        raise SystemExit(f"--mmsu_path {args.mmsu_path}: no usable MMSU rows ({report.summary()}).")
    return records, report


def protocol_items(records: Sequence[Record], report: ReadReport, protocol: str,
                   by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Items to score and save: record fields + prediction; malformed rows kept, as wrong."""
    items = []
    for record in records:
        row = {k: v for k, v in record.to_json().items() if k not in ("meta",)}
        fields = prediction_fields(by_id.get(record.id))
        fields["model_output"] = model_output_for(protocol, fields)
        items.append({**record.meta, **row, **fields})
    items += [{"id": row_id, "prediction_error": f"malformed row: {reason}"}
              for row_id, reason in report.reasons]
    return items


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the evaluation (or --score_only); rank 0 returns the combined results."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    protocols = _protocols(args.protocols)
    if args.score_only is not None:
        logging.basicConfig(level=logging.INFO)
        return score_only(args.score_only, args.out, protocols,
                          None if args.no_question_check else args.mmsu_path)
    dist = init_distributed()
    setup_logging(dist)
    out_dir: Path = args.out_dir
    finals = ["results.json", "results.md", "predictions_letter.jsonl",
              *(f"predictions_{p}.json" for p in PROTOCOLS)]
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            clear(out_dir, finals)
            for p in PROTOCOLS:
                clear(out_dir / p, [])
    dist.barrier()  # no rank reads the folder before rank 0 has cleared it
    records, report = _records(args)
    generator = generator_factory(args, dist)
    results: dict[str, dict[str, Any]] = {}
    for protocol in protocols:
        letter = protocol == "letter"
        settings = run_settings(args, mmsu_path=str(args.mmsu_path), protocol=protocol)
        by_id = predict(generator, records, out_dir / protocol, dist, batch_size=args.batch_size,
                        template=args.template, settings=settings, desc=f"MMSU [{protocol}]",
                        text_fn=letter_prompt if letter else None)
        if by_id is not None:
            items = protocol_items(records, report, protocol, by_id)
            atomic_write_json(out_dir / f"predictions_{protocol}.json", items)
            if letter:  # the official scorer's input: `python mmsu_evaluation.py FILE` checks us
                atomic_write_text(out_dir / "predictions_letter.jsonl", "".join(
                    json.dumps(row, ensure_ascii=False) + "\n" for row in official_rows(items)))
            results[protocol] = score_protocol(items, protocol)
            results[protocol]["audio_truncated"] = truncated_count(by_id)
    if not dist.is_main:
        return None
    return write_all(results, out_dir / "results.json", f"{BENCHMARK}: {args.model}",
                     run_settings(args, mmsu_path=str(args.mmsu_path), limit=args.limit))


if __name__ == "__main__":
    main()
