"""What a benchmark is to the evaluation runner: the `Benchmark` base class and its registry.

A benchmark says *what* is asked and *how it is judged*; `local.eval.runner` does the rest the
same way for every benchmark (options, sharding, resume, generation, scoring, writing, and
`--score_only`). A `Benchmark` gives:

  name, title          its key (`--bench`, `eval/<name>/`) and the name printed with each number
  protocols            the ways it is scored, by name (a matcher of `local.core.answers`; where
                       it asks differently, also a prompt: `prompt_text`) with what each does,
                       printed beside every number; the first gives the headline accuracy
  question_option      the option naming its question set (declared in `add_arguments`)
  add_arguments        its data options
  read                 its records (`local.data`), bad rows counted in the report
  load                 the question set one run predicts: records, and rows counted wrong
  items                one protocol's predictions file: every question, with the prediction
  score                one protocol's results (`local.eval.judge.score_items`)
  write_predictions    the predictions file(s) of one protocol
  read_predictions     a file given to `--score_only`
  question_set         the questions `--score_only` checks a predictions file against

The defaults make a plain benchmark: each protocol judged by the matcher of its name, the
`--template` prompt (as in training), predictions as a JSON list of the records' fields plus
`model_output`, `response` and `prediction_error`, tables by `table_keys`. MMAU (the official
predictions format) and MMSU (two protocols, the official scorer's files) override what differs.
With one protocol the run's logs and results sit directly in `--out_dir`; with several, each
protocol predicts under `<out_dir>/<protocol>/` and results.json lists them under `protocols`.

Adding a benchmark is one module in this folder: `registered()` imports every module here, so
its `register(...)` call makes it `--bench NAME` for `local.eval.steps`:

    >>> class Toy(Benchmark):                                              # doctest: +SKIP
    ...     name, title, question_option = "toy", "Toy", "--toy_json"
    ...     protocols = {"exact": "the <answer> content equals the option text"}
    ...     def add_arguments(self, parser):
    ...         parser.add_argument("--toy_json", type=Path, default=Path("data/toy.json"))
    ...     def read(self, args, report):
    ...         return read_toy(args.toy_json, report=report)
    >>> TOY = register(Toy())                                              # doctest: +SKIP
    >>> evaluate(TOY, ["--model", "ckpt", "--out_dir", "exp/toy"])         # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from local.core.answers import extract_answer
from local.core.records import ReadReport, Record
from local.eval.judge import Row, breakdown, score_items
from local.util.fsio import atomic_write_json

NOT_ASKED = "no prediction was made"  # how an item no run answered is listed
NO_PREDICTIONS = ("the file holds no predictions (an empty list): nothing to score; point it at "
                  "the predictions file of a finished evaluation.")


@dataclass
class QuestionSet:
    """The questions one run predicts: `records`, asked in this order, and `skipped`, the rows
    the reader could not use, as (id, reason), each counted wrong."""

    records: list[Record]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def prediction_fields(entry: dict[str, Any] | None) -> dict[str, Any]:
    """`model_output` (the `<answer>` content, DOTALL, else the whole response), the response
    and the error of one logged prediction; no entry or no response gives model_output None."""
    if entry is None:
        return {"model_output": None, "response": None,
                "prediction_error": f"{NOT_ASKED} (run interrupted or item skipped)"}
    response = entry.get("response")
    return {"model_output": None if response is None else extract_answer(response, "eval"),
            "response": response,
            "prediction_error": entry.get("error") if response is None else None}


def record_fields(record: Record) -> dict[str, Any]:
    """A record as one flat item: its source fields (meta), then id, question, choices, answer."""
    return {**record.meta, **{k: v for k, v in record.to_json().items() if k != "meta"}}


def malformed(row_id: str, reason: str) -> dict[str, Any]:
    """The item of a row the reader skipped: no answer or choices, so counted wrong with why."""
    return {"id": row_id, "prediction_error": f"malformed row: {reason}"}


def _json_lines(path: Path) -> bool:
    """Whether the file is JSON lines (every non-blank line a JSON object)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return bool(lines) and all(isinstance(json.loads(line), dict) for line in lines)
    except (OSError, ValueError):
        return False


def read_json_list(path: Path, option: str, what: str, empty: str) -> list[dict[str, Any]]:
    """A non-empty JSON list of objects from `path`; anything else is a clear error naming
    `option` (`what`: what the list should hold; `empty`: what to say of an empty list)."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SystemExit(f"{option} {path}: file not found.") from err
    except json.JSONDecodeError as err:
        if _json_lines(path):
            raise SystemExit(f"{option} {path}: JSON lines (one object per line), not the JSON "
                             f"list of {what}; another benchmark's file? (MMAR predictions go to "
                             "evaluate_mmar.py, MMSU's official predictions_letter.jsonl to "
                             "evaluate_mmsu.py)") from err
        raise SystemExit(f"{option} {path}: not valid JSON ({err}).") from err
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SystemExit(f"{option} {path}: expected a JSON list of {what}.")
    if not items:
        raise SystemExit(f"{option} {path}: {empty}")
    return items


class Benchmark:
    """One benchmark: its questions, prompt protocol(s), matcher, tables and prediction format.

    Subclasses set the class attributes and define `add_arguments` and `read`; the other
    methods have the plain defaults described in the module docstring.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    protocols: ClassVar[Mapping[str, str]]  # name (= matcher) -> what it does
    question_option: ClassVar[str]
    description: ClassVar[str] = ""
    table_keys: ClassVar[tuple[str, ...]] = ()
    # False: the answers are withheld (the full MMAU test): the runner writes the predictions
    # and `submission` says where to submit them; no accuracy, no summary.
    scored: ClassVar[bool] = True

    # ------------------------------------------------------------------ parse
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the data options, `question_option` among them."""
        raise NotImplementedError

    def chosen_protocols(self, args: argparse.Namespace) -> list[str]:
        """The protocols this run scores, the headline first (SystemExit for a bad choice)."""
        return list(self.protocols)

    @property
    def multi_protocol(self) -> bool:
        """Several protocols: each predicts in its own folder, results list them by name."""
        return len(self.protocols) > 1

    @property
    def question_dest(self) -> str:
        """The `args` attribute of `question_option` (also its key in the recorded settings)."""
        return self.question_option.lstrip("-").replace("-", "_")

    def question_path(self, args: argparse.Namespace) -> Any:
        return getattr(args, self.question_dest)

    # ------------------------------------------------------------------ load
    def read(self, args: argparse.Namespace, report: ReadReport) -> Iterable[Record]:
        """The benchmark's records in order; rows that cannot be used go to `report.reasons`.

        FileNotFoundError and `RecordError` become a one-line error naming `question_option`.
        """
        raise NotImplementedError

    def load(self, args: argparse.Namespace) -> QuestionSet:
        """The first `--limit` records, and the rows the reader skipped (counted wrong)."""
        report = ReadReport()
        reader = self.read(args, report)
        records = list(itertools.islice(reader, args.limit) if args.limit else reader)
        if not records:
            raise SystemExit(f"{self.question_option} {self.question_path(args)}: no usable "
                             f"{self.title} rows ({report.summary()}).")
        return QuestionSet(records, list(report.reasons))

    # ------------------------------------------------------------------ predict
    def prompt_text(self, protocol: str) -> Callable[[Record], str] | None:
        """A protocol's own user text for a record; None: the `--template` prompt."""
        return None

    # ------------------------------------------------------------------ score
    def model_output(self, protocol: str, fields: dict[str, Any]) -> Any:
        """What `protocol` judges, from `prediction_fields` (default: the `<answer>` content)."""
        return fields["model_output"]

    def items(self, data: QuestionSet, protocol: str,
              by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Every question with its prediction, in order; skipped rows last, counted wrong."""
        items = []
        for record in data.records:
            fields = prediction_fields(by_id.get(record.id))
            fields["model_output"] = self.model_output(protocol, fields)
            items.append({**record_fields(record), **fields})
        return items + [malformed(row_id, reason) for row_id, reason in data.skipped]

    def tables(self, items: Sequence[dict[str, Any]]) -> dict[str, list[Row]]:
        """Accuracy tables: overall, then one per `table_keys` field."""
        return breakdown(items, self.table_keys)

    def score(self, items: Sequence[dict[str, Any]], protocol: str) -> dict[str, Any]:
        """One protocol's results: the matcher named `protocol`, the benchmark's tables."""
        return score_items(items, match=protocol, tables_fn=self.tables,
                           description=self.protocols[protocol])

    def submission(self, out_dir: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
        """An unscored benchmark's account of its predictions file (what to submit, where)."""
        raise NotImplementedError(f"{self.title} is scored here; it makes no submission.")

    def notes(self, result: dict[str, Any]) -> list[str]:
        """Labelled lines printed and written after a protocol's headline (e.g. other figures)."""
        return []

    # ------------------------------------------------------------------ write
    def prediction_files(self, protocol: str) -> list[str]:
        """The files `write_predictions` writes for `protocol` (cleared by --overwrite)."""
        return [f"predictions_{protocol}.json" if self.multi_protocol else "predictions.json"]

    def write_predictions(self, out_dir: Path, protocol: str,
                          items: list[dict[str, Any]]) -> None:
        atomic_write_json(out_dir / self.prediction_files(protocol)[0], items)

    # ------------------------------------------------------------------ --score_only
    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], str | None]:
        """(items, why they are scored as they are, or None to check them against
        `question_set`) from a file given to --score_only."""
        items = read_json_list(path, "--score_only", f"{self.title} items with id and "
                               "model_output", NO_PREDICTIONS)
        return items, None

    def question_set(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        """The questions (reference answers and choices) for --score_only; no audio decoded."""
        report = ReadReport()
        try:
            records = list(self.read(args, report))
        except FileNotFoundError as err:
            raise SystemExit(
                f"--score_only checks the predictions against {self.title}'s question set, but "
                f"{err} Pass {self.question_option} PATH, or --no_question_check to score the "
                "file as it is (extra, duplicated and missing items then go unnoticed).") from err
        questions = [record_fields(r) for r in records]
        questions += [malformed(row_id, reason) for row_id, reason in report.reasons]
        if not questions:
            raise SystemExit(f"{self.question_option} {self.question_path(args)}: no "
                             f"{self.title} questions; nothing to score.")
        return questions


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

B = TypeVar("B", bound=Benchmark)
_REGISTRY: dict[str, Benchmark] = {}


def register(benchmark: B) -> B:
    """Make `benchmark` known by its name (`--bench NAME`); returns it.

    A second benchmark of another class under a taken name is refused.
    """
    known = _REGISTRY.get(benchmark.name)
    if known is not None and type(known).__qualname__ != type(benchmark).__qualname__:
        raise ValueError(f"benchmark name {benchmark.name!r} is taken by "
                         f"{type(known).__qualname__}; choose another name.")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def registered() -> dict[str, Benchmark]:
    """Every benchmark by name, after importing each module of `local.eval.benchmarks` once.

    The modules are imported here, by name, so that a new benchmark module needs no other edit
    (importlib: the package cannot import its own modules at import time, they import this one).
    """
    package = importlib.import_module("local.eval.benchmarks")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items()))
