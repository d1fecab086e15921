"""MMSU under two protocols, each number printed with the protocol that produced it.

Options are MMSU's by position everywhere ('None' padding of two-choice items kept, see
`local.data.mmsu`), so option i is letter "ABCD"[i] in both protocols.

* ``exact`` (the reference recipe's, WeST's GRPO example): the `--template` prompt (options as
  a list repr); correct iff the `<answer>` content equals the option text exactly.
* ``letter`` (MMSU's official protocol): the official prompt (`local.core.prompts.
  build_letter_prompt`), the letter read from the raw response by the official rule
  (`local.core.answers.mmsu_official_letter`). Two figures, each labelled: `accuracy` (strict:
  every item in the denominator, a response with no readable letter counted wrong) and
  `official_accuracy` / `official_denominator` (what the official `mmsu_evaluation.py` prints:
  unreadable and null responses left out of the denominator; `local.eval.benchmarks.
  mmsu_official`).

Each protocol is its own generation pass (different prompts), resumable under
`<out_dir>/<protocol>/partial/` (see `local.eval.runner` for the flow). Outputs:
`predictions_<protocol>.json`, `predictions_letter.jsonl` (the official scorer's input format:
run the official script on it to check us), `results.json` (`accuracy` = the first protocol's,
named by `accuracy_protocol`; every protocol under `protocols`) and `results.md`.
`--score_only` reads our predictions JSON (checked against the question set, `--mmsu_path`) or
the official JSONL format, scored by the letter protocol alone (it is the headline: the file
holds letters, no option text, so `exact` is named as not scorable from it rather than 0%), not
checked against the question set, row by row: bad rows and rows without a known `answer_gt` are
counted wrong and listed by line and id, a repeated id is counted once, and both figures say
what their denominator holds (`file_check` in results.json; `mmsu_official.read_official`). A
file with no usable row, or mixing both formats, stops with one line saying which rows.

Example:
    >>> from local.eval.runner import evaluate                               # doctest: +SKIP
    >>> evaluate(MMSU, ["--model", "ckpt", "--out_dir", "out"])              # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from local.core.answers import extract_answer
from local.core.prompts import build_letter_prompt
from local.core.records import ReadReport, Record
from local.data.mmsu import read_mmsu
from local.eval.benchmarks.base import Benchmark, register
from local.eval.benchmarks.mmsu_official import (
    BAD,
    FILE_KEY,
    ROW_PROBLEM,
    OfficialFile,
    UnusableFile,
    check_one_format,
    count,
    file_check_lines,
    official_rows,
    official_score,
    read_official,
    read_rows,
    row_format,
)
from local.eval.judge import Row, level_breakdown
from local.util.fsio import atomic_write_text

CATEGORY_LEVELS = 4  # MMSU's `category` is a path "L1-L2-L3-L4"
OFFICIAL_AS_IS = ("the official scorer's format: scored by the official letter rule, not "
                  "checked against the question set")
NOT_PREDICTIONS = ("expected this tool's predictions_<protocol>.json (a JSON list of MMSU "
                   "items with answer, choices and model_output/response) or the official "
                   "scorer's JSONL (one row per line with choice_a..choice_d, answer_gt, "
                   "response)")
EXACT_NOT_SCORABLE = ("not scorable from this file: it has no option text (the official "
                      "scorer's format holds the letter protocol's responses); score "
                      "predictions_exact.json for exact")
HEADLINE_REASON = f"exact is {EXACT_NOT_SCORABLE}"


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


def load_predictions(pred_path: Path) -> tuple[list[dict[str, Any]], OfficialFile | None]:
    """(items, what reading the official format found, or None for our predictions JSON) from
    our predictions JSON or the official JSONL; anything else is a one-line error naming the
    file (and, for the official format, the rows at fault)."""
    try:
        text = pred_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"--score_only {pred_path}: cannot read it ({err}).") from err
    if not text.strip():
        raise SystemExit(f"--score_only {pred_path}: the file is empty; {NOT_PREDICTIONS}.")
    rows = read_rows(text)
    try:
        check_one_format(rows)
        if any(row_format(row.value) == "official" for row in rows.rows):
            found = read_official(rows, pred_path)
            return found.items, found
    except UnusableFile as err:
        raise SystemExit(f"--score_only {pred_path}: {err}") from err
    data = rows.whole
    if data and all(isinstance(i, dict) for i in data) and any(
            "answer" in i and ("model_output" in i or "response" in i) for i in data):
        return data, None
    broken = [f"{rows.where(row.number)}: {row.not_json}" for row in rows.rows if row.not_json]
    seen = f" ({'; '.join(broken[:3])}{'; ...' if len(broken) > 3 else ''})" if broken else ""
    raise SystemExit(f"--score_only {pred_path}: not an MMSU predictions file{seen}; "
                     f"{NOT_PREDICTIONS}.")


def official_file(items: Sequence[dict[str, Any]]) -> OfficialFile | None:
    """The official-format file `items` were read from (`load_predictions`), or None."""
    found = items[0].get(FILE_KEY) if items else None
    return found if isinstance(found, OfficialFile) else None


class MMSUBenchmark(Benchmark):
    """MMSU (see the module docstring)."""

    name = "mmsu"
    title = "MMSU"
    protocols = {
        "exact": ("reference recipe protocol (WeST's GRPO example): <answer> content equals the "
                  "option text exactly"),
        "letter": ("MMSU letter protocol, strict: the official prompt and letter rule on the raw "
                   "response, every item in the denominator, no readable letter counted wrong "
                   "(official_accuracy: the official scorer's figure)"),
    }
    question_option = "--mmsu_path"
    description = ("Evaluate an audio LM on MMSU with the reference recipe's exact-text "
                   "protocol and the official letter protocol; every number is printed with "
                   "its protocol.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--mmsu_path", type=Path, default=Path("data/mmsu"),
                            help="MMSU hub snapshot folder (yuantuo666/MMSU-full_5k_hf_format."
                            "v0), a save_to_disk folder or a parquet file (default: "
                            "%(default)s)")
        parser.add_argument("--protocols", default="exact,letter",
                            help="comma-separated, from: exact (the reference recipe's), letter "
                            "(MMSU's official prompt and letter rule; strict and official "
                            "figures); the first gives the top-level accuracy (default: "
                            "%(default)s; --score_only of an official-format file: letter, the "
                            "one protocol it can be scored by)")

    def chosen_protocols(self, args: argparse.Namespace) -> list[str]:
        chosen = [p.strip() for p in args.protocols.split(",") if p.strip()]
        if not chosen or any(p not in self.protocols for p in chosen):
            raise SystemExit(f"--protocols {args.protocols!r}: choose from "
                             f"{', '.join(self.protocols)}.")
        path = getattr(args, "score_only", None)
        if path is not None and "exact" in chosen and load_predictions(path)[1] is not None:
            return self._without_exact(path, chosen)
        return chosen

    @staticmethod
    def _without_exact(path: Path, chosen: list[str]) -> list[str]:
        """An official-format file is scored by the letter protocol alone (it is the headline):
        exact has no option text to judge there, so it is named as not scorable, not 0%."""
        if chosen == ["exact"]:
            raise SystemExit(f"--score_only {path}: --protocols exact: {EXACT_NOT_SCORABLE}; use "
                             "--protocols letter.")
        return [p for p in chosen if p != "exact"]

    def read(self, args: argparse.Namespace, report: ReadReport) -> Iterable[Record]:
        return read_mmsu(args.mmsu_path, report=report)

    def prompt_text(self, protocol: str) -> Callable[[Record], str] | None:
        return letter_prompt if protocol == "letter" else None

    def model_output(self, protocol: str, fields: dict[str, Any]) -> Any:
        return model_output_for(protocol, fields)

    def tables(self, items: Sequence[dict[str, Any]]) -> dict[str, list[Row]]:
        """Overall, then one table per level of the category path."""
        return level_breakdown(items, "category", CATEGORY_LEVELS)

    def score(self, items: Sequence[dict[str, Any]], protocol: str) -> dict[str, Any]:
        """What the protocol judges (`model_output_for`) by its matcher; the letter protocol
        also gets the official scorer's figures (`mmsu_official.official_score`, on the rows
        the official script can read). Items of an official-format file add what reading it
        found (`file_check`), why letter is the headline and that exact is not scored."""
        found = official_file(items)
        if found is not None and protocol == "exact":
            self._without_exact(found.path, [protocol])
        judged = [{**{k: v for k, v in item.items() if k != FILE_KEY},
                   "model_output": model_output_for(protocol, item)} for item in items]
        result = super().score(judged, protocol)
        if protocol == "letter":
            readable = [item for item in judged if item.get(ROW_PROBLEM) != BAD]
            result.update(official_score(official_rows(readable)))
        if found is not None:
            result.update(headline_reason=HEADLINE_REASON, not_scored={"exact":
                                                                         EXACT_NOT_SCORABLE},
                          file_check=found.summary())
        return result

    def notes(self, result: dict[str, Any]) -> list[str]:
        """Why this protocol is the headline (an official-format file), the letter protocol's
        official figure, labelled, and what reading an official-format file found."""
        lines = []
        if "headline_reason" in result:
            lines.append(f"Headline: {result['protocol']}; {result['headline_reason']}.")
        check = result.get("file_check")
        if "official_accuracy" in result:
            scope = ", ".join(count(len(check[key]), noun, rest) for key, noun, rest in (
                ("bad_rows", "bad row", " left out"),
                ("duplicate_rows", "repeated row", " not counted again")) if check and check[key])
            scope = f"; each id once, on the rows the script can read: {scope}" if scope else ""
            lines.append(f"{self.title} accuracy [letter, as the official mmsu_evaluation.py "
                         f"computes it: unreadable responses left out of the denominator]: "
                         f"{result['official_accuracy']:.2f}% ({result['official_correct']}/"
                         f"{result['official_denominator']}; "
                         f"{len(result['official_left_out'])} left out{scope})")
        if check:
            lines += file_check_lines(check)
        return lines

    def prediction_files(self, protocol: str) -> list[str]:
        # predictions_letter.jsonl: the official scorer's input (`mmsu_evaluation.py FILE`)
        return super().prediction_files(protocol) + (
            ["predictions_letter.jsonl"] if protocol == "letter" else [])

    def write_predictions(self, out_dir: Path, protocol: str,
                          items: list[dict[str, Any]]) -> None:
        super().write_predictions(out_dir, protocol, items)
        if protocol == "letter":
            atomic_write_text(out_dir / "predictions_letter.jsonl", "".join(
                json.dumps(row, ensure_ascii=False) + "\n" for row in official_rows(items)))

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], str | None]:
        items, official = load_predictions(path)
        return items, OFFICIAL_AS_IS if official is not None else None


MMSU = register(MMSUBenchmark())
