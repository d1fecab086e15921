"""MMSU evaluation under two protocols, each number printed with the protocol that produced it.

* ``exact`` (the seed's): the `--template` prompt (options as a list repr, 'None' padding kept);
  correct iff the `<answer>` content equals the option text exactly.
* ``letter`` (the official MMSU scorer's): a letter prompt (options listed as "A. ...", padding
  'None' options left out); correct iff the response names the answer's letter
  (`local.answers.match_letter`).

Each protocol is its own generation pass (different prompts), resumable under
`<out_dir>/<protocol>/partial/`. Outputs: `predictions_<protocol>.json`, `results.json`
(`accuracy` = the first protocol's, named by `accuracy_protocol`; every protocol under
`protocols`) and `results.md`.

Example:
    $ python evaluate_mmsu.py --model Qwen/Qwen2.5-Omni-7B --mmsu_path data/mmsu \\
        --out_dir exp/grpo/eval/mmsu/0
    $ python evaluate_mmsu.py --score_only exp/grpo/eval/mmsu/0/predictions_exact.json \\
        --protocols exact --out results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
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
from local.prompts import build_letter_prompt
from local.readers import read_mmsu
from local.records import ReadReport, Record
from local.scoring import mmsu_breakdown

logger = logging.getLogger(__name__)
BENCHMARK = "MMSU"
PROTOCOLS = ("exact", "letter")
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate an audio LM on MMSU with the seed's exact-text protocol and the "
        "official letter protocol; every number is printed with its protocol.")
    add_common_args(parser)
    parser.add_argument("--mmsu_path", type=Path, default=Path("data/mmsu"),
                        help="MMSU hub snapshot folder (yuantuo666/MMSU-full_5k_hf_format.v0), "
                        "a save_to_disk folder or a parquet file (default: %(default)s)")
    parser.add_argument("--protocols", default="exact,letter",
                        help="comma-separated, from: exact (seed), letter (official MMSU); the "
                        "first gives the top-level accuracy (default: %(default)s)")
    return parser


def letter_record(record: Record) -> Record:
    """The record as the letter protocol asks it: 'None' padding options removed."""
    choices = [c for c in record.choices if c != "None" or c == record.answer]
    return dataclasses.replace(record, choices=choices)


def letter_prompt(record: Record) -> str:
    """The official MMSU letter-answer prompt for a record (see `local.prompts`)."""
    return build_letter_prompt(record.question, record.choices)


def score_protocol(items: Sequence[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """One protocol's results: overall and per category level (see local.scoring)."""
    return score_items(items, match=protocol, tables_fn=mmsu_breakdown)


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
        markdown(r, f"{heading} [{p}]") for p, r in results.items()))
    for result in results.values():
        print(headline(BENCHMARK, result), flush=True)
    return combined


def score_only(pred_path: Path, out: Path | None, protocols: list[str]) -> dict[str, Any]:
    """Score a predictions file (MMSU items with model_output) under each protocol."""
    try:
        items = json.loads(pred_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as err:
        raise SystemExit(f"--score_only {pred_path}: cannot read it as JSON ({err}).") from err
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SystemExit(f"--score_only {pred_path}: expected a JSON list of MMSU items.")
    results = {p: score_protocol(items, p) for p in protocols}
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
        shown = letter_record(record) if protocol == "letter" else record
        row = {k: v for k, v in shown.to_json().items() if k not in ("meta",)}
        items.append({**record.meta, **row, **prediction_fields(by_id.get(record.id))})
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
        return score_only(args.score_only, args.out, protocols)
    dist = init_distributed()
    setup_logging(dist)
    out_dir: Path = args.out_dir
    finals = ["results.json", "results.md", *(f"predictions_{p}.json" for p in PROTOCOLS)]
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
        asked = [letter_record(r) for r in records] if letter else records
        settings = run_settings(args, mmsu_path=str(args.mmsu_path), protocol=protocol)
        by_id = predict(generator, asked, out_dir / protocol, dist, batch_size=args.batch_size,
                        template=args.template, settings=settings, desc=f"MMSU [{protocol}]",
                        text_fn=letter_prompt if letter else None)
        if by_id is not None:
            items = protocol_items(records, report, protocol, by_id)
            atomic_write_json(out_dir / f"predictions_{protocol}.json", items)
            results[protocol] = score_protocol(items, protocol)
            results[protocol]["audio_truncated"] = truncated_count(by_id)
    if not dist.is_main:
        return None
    return write_all(results, out_dir / "results.json", f"{BENCHMARK}: {args.model}",
                     run_settings(args, mmsu_path=str(args.mmsu_path), limit=args.limit))


if __name__ == "__main__":
    main()
