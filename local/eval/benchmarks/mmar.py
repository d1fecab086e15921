"""MMAR: its question file, the official token rule, and the official predictions format.

One protocol, `mmar`: the `--template` prompt (as in training) and MMAR's official rule on the
`<answer>` content (`code/evaluation.py`'s `string_match`, which is MMAU's word-token-set rule:
`local.core.answers.match_mmau`). Tables by modality, category and sub-category. Outputs in
`--out_dir` (see `local.eval.runner` for the flow):

  predictions.json  the official scorer's input: every original item in file order, each with
                    all its fields plus `answer_prediction` (the `<answer>` content, DOTALL,
                    else the whole response), `response` (the full text) and
                    `prediction_error`. An item without a prediction gets
                    `answer_prediction: ""`, so the official script counts it wrong instead of
                    skipping it: `python code/evaluation.py --input predictions.json` prints
                    the same accuracy as ours.
  results.json      `accuracy` (strict: percent of every question of the question file;
                    an item without prediction counted wrong), counts, tables, every
                    unanswered id with its reason; beside it, labelled, the official script's
                    verdict on the file (`official_accuracy`, `official_denominator`,
                    `official_left_out`, `official_stops`, `official_tables`, and
                    `official_on`: the file it judged; `local.eval.benchmarks.mmar_official`).
  results.md        the same in markdown.
  partial/          per-rank JSONL logs (resume), eval_settings.json.

How this differs from the official script: it SKIPS an item without `answer_prediction` (not in
its denominator) and stops on a null one; here every question of the question file is in the
denominator, and a question without a prediction (no key, null, a run stopped early, missing
or unreadable audio, a malformed or repeated row) is counted wrong and listed with its reason.
Where every question has a text prediction the two figures are equal, item for item.

`--score_only FILE` reads the official format (`answer_prediction`; a JSON list or JSON lines;
our predictions.json is one) and checks it against the question file (`--mmar_json`: answers,
choices and table fields taken from it): an id predicted twice is counted once and listed, ids
that are no question are listed and ignored, a question without a prediction is counted wrong
and listed; a file of another benchmark (an MMAU predictions file, MMSU rows, the question file
itself) is refused in one line. The official verdict reported beside is the script's on the file
as it is. An empty question or predictions file is an error.

Example:
    >>> from local.eval.runner import evaluate                               # doctest: +SKIP
    >>> evaluate(MMAR, ["--model", "exp/grpo/checkpoint-100", "--out_dir", "out"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from local.core.records import ReadReport, Record, RecordError
from local.data.mmar import (
    FETCH,
    GITHUB,
    LICENCE,
    QUESTION_FILE,
    parse_question_file,
    read_mmar,
)
from local.eval.benchmarks.base import Benchmark, QuestionSet, register
from local.eval.benchmarks.mmar_official import (
    VERDICT_KEY,
    Verdict,
    official_rows,
    read_rows,
    recipe_items,
    verdict_line,
    verdict_of,
)
from local.eval.benchmarks.question_file import (
    FileQuestions,
    Question,
    align,
    asked,
    official_items,
)
from local.eval.judge import item_id, score_items
from local.util.fsio import atomic_write_json

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("data/mmar") / QUESTION_FILE
NO_QUESTIONS = ("the question file holds no questions: nothing to evaluate; re-download it "
                "with `bash run.sh --stage prepare --sources mmar`.")


class MMARBenchmark(Benchmark):
    """MMAR (see the module docstring)."""

    name = "mmar"
    title = "MMAR"
    protocols = {"mmar": ("MMAR official rule (code/evaluation.py's string_match: MMAU's "
                          "word-token sets) on the <answer> content, every question in the "
                          "denominator")}
    question_option = "--mmar_json"
    table_keys = ("modality", "category", "sub-category")
    description = (f"Evaluate an audio LM on MMAR ({GITHUB}; data licence {LICENCE}): "
                   "official-format predictions, the official token rule, items without a "
                   "prediction counted wrong.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--mmar_json", type=Path, default=DEFAULT_JSON,
                            help=f"MMAR question file: {QUESTION_FILE} (JSON lines) or the hub's "
                            "MMAR-meta.json (a JSON list) (default: %(default)s)")
        parser.add_argument("--mmar_audio_dir", type=Path, default=None,
                            help="folder of the MMAR audio files, found by the name audio_path "
                            "gives (default: audio_path relative to the question file's folder, "
                            "i.e. data/mmar/audio)")

    def questions(self, args: argparse.Namespace) -> list[Any]:
        """The question file's items: its one parse in an evaluation."""
        return parse_question_file(args.mmar_json)

    def read(self, args: argparse.Namespace, report: ReadReport,
             items: Sequence[Any] | None = None, check_audio: bool = True) -> Iterable[Record]:
        return read_mmar(args.mmar_json, args.mmar_audio_dir, report=report,
                         items=self.questions(args) if items is None else items,
                         check_audio=check_audio)

    def aligned(self, args: argparse.Namespace, check_audio: bool = True
                ) -> tuple[list[Question], ReadReport]:
        """Every item of the question file with its record (None: counted wrong, with why)."""
        raw = self.questions(args)  # parsed once, for the reader and the alignment
        if not raw:
            raise SystemExit(f"--mmar_json {args.mmar_json}: {NO_QUESTIONS}")
        report = ReadReport()
        records = list(self.read(args, report, raw, check_audio))
        return align(raw, records, [reason for _, reason in report.reasons]), report

    def load(self, args: argparse.Namespace) -> FileQuestions:
        """The first --limit items of the question file, each with its record or its reason."""
        audio_dir = args.mmar_audio_dir
        if audio_dir is not None and not args.no_audio and not audio_dir.is_dir():
            raise SystemExit(f"--mmar_audio_dir {audio_dir}: folder not found. Run `{FETCH}` (it "
                             "writes data/mmar/audio), pass the right folder, or use --no_audio "
                             "for the text-only ablation.")
        questions, report = self.aligned(args)
        return asked(questions, report, args, source=args.mmar_json,
                     audio_option="--mmar_audio_dir", fetch=FETCH)

    def items(self, data: QuestionSet, protocol: str,
              by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        assert isinstance(data, FileQuestions)
        return official_items(data.questions, by_id)

    def score(self, items: Sequence[dict[str, Any]], protocol: str) -> dict[str, Any]:
        """The strict figure (MMAU's matcher: the same rule), and the official verdict."""
        verdict = verdict_of(items)
        judged = [{k: v for k, v in item.items() if k != VERDICT_KEY} for item in items]
        result = score_items(judged, match="mmau", tables_fn=self.tables,
                             description=self.protocols[protocol])
        result["protocol"] = protocol
        result.update(verdict.summary(), official_on="file" if any(
            VERDICT_KEY in item for item in items) else "predictions.json")
        return result

    def notes(self, result: dict[str, Any]) -> list[str]:
        """The official script's verdict, labelled: its accuracy over the items with the key."""
        verdict = Verdict(result["official_correct"], result["official_denominator"],
                          result["official_left_out"], result["official_stops"])
        return [verdict_line(self.title, verdict, result.get("official_on") == "file")]

    def write_predictions(self, out_dir: Path, protocol: str,
                          items: list[dict[str, Any]]) -> None:
        atomic_write_json(out_dir / self.prediction_files(protocol)[0], official_rows(items))

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], str | None]:
        return recipe_items(read_rows(path), path), None

    def question_set(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        """Each item of the question file; one the reader cannot use (or a repeated id) keeps
        its id and table fields but no answer, so it is counted wrong."""
        path: Path = args.mmar_json
        if not path.is_file():
            raise SystemExit(
                "--score_only checks the predictions against the benchmark's question set, but "
                f"the question file {path} is not found. Pass --mmar_json PATH (`bash run.sh "
                f"--stage prepare --sources mmar` writes {DEFAULT_JSON}), or --no_question_check "
                "to score the file as it is (extra, duplicated and missing items then go "
                "unnoticed).")
        try:
            questions, _ = self.aligned(args, check_audio=False)
        except RecordError as err:
            raise SystemExit(f"--mmar_json {err}") from err
        return [dict(q.item) if q.record is not None else {
            **({k: v for k, v in q.item.items() if k not in ("answer", "choices")}
               if isinstance(q.item, dict) else {}), "id": item_id(q.item, q.index)}
            for q in questions]


MMAR = register(MMARBenchmark())
