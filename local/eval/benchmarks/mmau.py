"""MMAU test-mini: its question file, the official token rule, and the official predictions format.

One protocol, `mmau`: the `--template` prompt (as in training) and MMAU's official rule on the
`<answer>` content (word-token sets, `local.core.answers`). Tables by task, difficulty and
sub-category. Outputs in `--out_dir` (see `local.eval.runner` for the flow):

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

Every item of the question file is scored: the first item with an id is the question; an item
the reader cannot use (malformed row, missing or unreadable audio) and every later item with an
already used id ("<id> (item <index>)") is counted wrong and listed. `--score_only` scores
against the question file (`--mmau_json`; answers and choices taken from it). An empty question
or predictions file is an error.

Example:
    >>> from local.eval.runner import evaluate                               # doctest: +SKIP
    >>> evaluate(MMAU, ["--model", "exp/grpo/checkpoint-100", "--out_dir", "out"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.core.records import ReadReport, Record, RecordError
from local.data.mmau import SPLITS, Split, parse_question_file, read_mmau
from local.eval.benchmarks.base import (
    Benchmark,
    QuestionSet,
    prediction_fields,
    register,
)
from local.eval.judge import duplicate_question_reason, item_id

logger = logging.getLogger(__name__)

OUTPUT_KEY = "model_output"  # the key MMAU's official evaluation.py reads
NO_QUESTIONS = ("the question file holds no questions (an empty list): nothing to evaluate; "
                "re-download it with `bash run.sh --stage prepare`.")


@dataclass(frozen=True)
class Question:
    """One item of the question file: its record, or None and why it is counted wrong."""

    index: int
    item: Any
    record: Record | None
    reason: str | None = None


@dataclass
class MMAUQuestions(QuestionSet):
    """The records to ask, and every item of the question file in order (`Question`)."""

    questions: list[Question] = field(default_factory=list)


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


def asked(questions: list[Question], report: ReadReport, args: argparse.Namespace, *,
          source: Path, audio_option: str, fetch: str) -> MMAUQuestions:
    """The first --limit items of a question file (aligned: `align`) as the set a run asks;
    every audio file missing (without --no_audio) stops in one line naming `fetch`, and the
    items counted wrong are logged (MMAU, MMAR)."""
    questions = questions[:args.limit] if args.limit is not None else questions
    records = [q.record for q in questions if q.record is not None]
    if questions and not records:  # e.g. another benchmark's file: refuse, not a 0% result
        first = questions[0]
        raise SystemExit(f"{source}: none of its {len(questions)} items is a usable question "
                         f"(e.g. item {first.index}: {first.reason}); is it another benchmark's "
                         "question file, or the full MMAU test without --split test?")
    missing = set(report.missing_audio)
    if records and all(r.id in missing for r in records) and not args.no_audio:
        raise SystemExit(f"none of the {len(records)} audio files was found (e.g. "
                         f"{records[0].audio}). Run `{fetch}`, pass {audio_option}, or use "
                         "--no_audio for the text-only ablation.")
    unusable = [q for q in questions if q.record is None]
    if unusable:
        logger.warning("%d items in %s are counted wrong: %s", len(unusable), source,
                       [f"item {q.index}: {q.reason}" for q in unusable[:5]])
    return MMAUQuestions(records, questions=questions)


class MMAUBenchmark(Benchmark):
    """MMAU test-mini (see the module docstring)."""

    name = "mmau"
    title = "MMAU test-mini"
    split: Split = SPLITS["test-mini"]  # the question set's files (local.data.mmau)
    prepare_sources = ""  # what `--stage prepare` needs to fetch it (default --sources)
    prepare_part = "mmau"  # its --sources name
    protocols = {"mmau": "MMAU official token rule (word-token sets of the <answer> content)"}
    question_option = "--mmau_json"
    table_keys = ("task", "difficulty", "sub-category")
    description = ("Evaluate an audio LM on MMAU test-mini (official-format predictions, "
                   "official token rule, items without a prediction counted wrong).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        split = self.split
        parser.add_argument("--split", choices=sorted(SPLITS), default=split.name,
                            help="MMAU question set: test-mini (answers given: scored here) or "
                            "test (9,000 questions, answers withheld: a submission file for "
                            "the MMAU evaluation Space; evaluate_mmau.py picks the benchmark "
                            "by it) (default: %(default)s)")
        parser.add_argument("--mmau_json", type=Path,
                            default=Path("data/mmau") / split.question_file,
                            help="MMAU question file (default: %(default)s)")
        parser.add_argument("--mmau_audio_dir", type=Path, default=None,
                            help="folder of the audio files (default: audio_id relative to the "
                            f"question file's folder, i.e. data/mmau/{split.audio_dir})")

    def questions(self, args: argparse.Namespace) -> list[Any]:
        """The question file's items: its one parse in an evaluation (`--split` checked)."""
        if args.split != self.split.name:
            raise SystemExit(f"--split {args.split}: this is the {self.title} benchmark; run "
                             "evaluate_mmau.py (it picks the benchmark by --split) or "
                             f"`--bench {'mmau' if args.split == 'test-mini' else 'mmau_test'}`.")
        return parse_question_file(args.mmau_json, self.prepare_part)

    def read(self, args: argparse.Namespace, report: ReadReport,
             items: Sequence[Any] | None = None) -> Iterable[Record]:
        return read_mmau(args.mmau_json, args.mmau_audio_dir, report=report,
                         items=self.questions(args) if items is None else items,
                         withheld=not self.split.has_answers)

    def load(self, args: argparse.Namespace) -> MMAUQuestions:
        """Every item of the question file with its record (None: counted wrong, with the
        reason); the first --limit items of the file."""
        if args.mmau_audio_dir is not None and not args.no_audio and \
                not args.mmau_audio_dir.is_dir():
            raise SystemExit(f"--mmau_audio_dir {args.mmau_audio_dir}: folder not found. Run "
                             f"`bash run.sh --stage prepare{self.prepare_sources}` (it writes "
                             f"data/mmau/{self.split.audio_dir}), pass the right folder, or "
                             "use --no_audio for the text-only ablation.")
        report = ReadReport()
        raw = self.questions(args)  # parsed once, for the reader and the alignment
        records = list(self.read(args, report, raw))
        if not raw:
            raise SystemExit(f"--mmau_json {args.mmau_json}: {NO_QUESTIONS}")
        questions = align(raw, records, [reason for _, reason in report.reasons])
        return asked(questions, report, args, source=args.mmau_json, audio_option=
                     "--mmau_audio_dir", fetch=f"bash run.sh --stage prepare{self.prepare_sources}")

    def items(self, data: QuestionSet, protocol: str,
              by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        assert isinstance(data, MMAUQuestions)
        return official_items(data.questions, by_id)

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], str | None]:
        """Our predictions.json (the official format: every item with `model_output`); another
        benchmark's file, or a question file, is named in one line."""
        items, why = super().read_predictions(path)
        if not any(OUTPUT_KEY in item for item in items):
            other = ("an MMAR predictions file (answer_prediction): score it with "
                     "evaluate_mmar.py" if any("answer_prediction" in i for i in items) else
                     "a question file, or another benchmark's file?")
            raise SystemExit(f"--score_only {path}: no item has {OUTPUT_KEY}, so this is not "
                             f"an {self.title} predictions file; {other}")
        return items, why

    def question_set(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        """The question file as it is (reference answers, choices, table fields)."""
        path: Path = args.mmau_json
        if not path.is_file():
            raise SystemExit(
                f"--score_only checks the predictions against the benchmark's question set, but "
                f"the question file {path} is not found. Pass --mmau_json PATH (`bash run.sh "
                "--stage prepare` writes data/mmau/mmau-test-mini.json), or --no_question_check "
                "to score the file as it is (extra, duplicated and missing items then go "
                "unnoticed).")
        try:
            items = self.questions(args)
        except RecordError as err:
            raise SystemExit(f"--mmau_json {err}") from err
        if not items:
            raise SystemExit(f"--mmau_json {path}: {NO_QUESTIONS}")
        if not all(isinstance(item, dict) for item in items):
            raise SystemExit(f"--mmau_json {path}: expected a JSON list of MMAU items "
                             "(questions with id, answer, choices).")
        return items


MMAU = register(MMAUBenchmark())
