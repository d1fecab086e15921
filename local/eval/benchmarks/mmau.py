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
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from local.core.records import ReadReport, Record, RecordError
from local.data.mmau import SPLITS, Split, parse_question_file, read_mmau
from local.eval.benchmarks.base import Benchmark, QuestionSet, register
from local.eval.benchmarks.question_file import FileQuestions, align, asked, official_items

logger = logging.getLogger(__name__)

OUTPUT_KEY = "model_output"  # the key MMAU's official evaluation.py reads
NO_QUESTIONS = ("the question file holds no questions (an empty list): nothing to evaluate; "
                "re-download it with `bash run.sh --stage prepare`.")


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

    def load(self, args: argparse.Namespace) -> FileQuestions:
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
        assert isinstance(data, FileQuestions)
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
