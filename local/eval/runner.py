"""Evaluate one model on one benchmark: parse -> load -> predict -> score -> write.

`evaluate(benchmark, argv)` is the whole flow, the same for every registered benchmark
(`local.eval.benchmarks`); evaluate_mmau.py, evaluate_mmsu.py and `local.eval.steps` (the run.sh
stages) all run it:

  parse    the shared options (`local.eval.options`) and the benchmark's data options; a
           `--model` folder that cannot be evaluated (a checkpoint whose save did not finish,
           weights cut short: `local.runs.checkpoints.model_problem`) is refused in one line
  load     `benchmark.load`: the records to ask, and the rows counted wrong
  predict  per protocol: this rank's deterministic shard, minus what an earlier run already
           logged, in batches, one flushed JSONL line per answer (`local.eval.prediction_log`),
           a progress bar (rate, ETA) of rank 0's share on rank 0; after a barrier rank 0
           merges every rank's log once. Logs are rank 0's (`local.util.dist.setup_logging`)
  score    `benchmark.items` (every question with its prediction) -> `benchmark.score`
  write    `benchmark.write_predictions`, then results.json and results.md (rank 0,
           `local.eval.results`): with the question set's name (`--set_title`) and the items
           answered on truncated audio

`--score_only PRED` skips load and predict: the file is read by `benchmark.read_predictions`,
checked against `benchmark.question_set` (extra ids listed and ignored, duplicates counted once,
missing ids counted wrong; `--no_question_check` scores it as it is, and the results say so),
scored and written the same way.

Generation goes through a backend built once per run by `generator_factory` (HF `generate`:
`local.eval.generation.Generator`; `--backend vllm`: `local.eval.vllm_backend`); any object
with its `generate(records, template, texts)` and `truncated` count can stand in.

Example:
    >>> from local.eval.benchmarks.mmau import MMAU                          # doctest: +SKIP
    >>> evaluate(MMAU, ["--model", "ckpt", "--out_dir", "out", "--limit", "20"])  # doctest: +SKIP
    >>> evaluate(MMAU, ["--score_only", "out/predictions.json"])              # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from local.core.models import ModelLoadError, load_model_and_processor
from local.core.records import Record, RecordError
from local.eval.benchmarks.base import Benchmark, QuestionSet
from local.eval.generation import Backend, Generator
from local.eval.options import generation_settings, parse_args, recorded_path, run_settings
from local.eval.prediction_log import clear, read_logs, resumable_shard
from local.eval.question_check import CHECK_SKIPPED, checked_items
from local.eval.results import Results, check_lines, write_results
from local.eval.vllm_backend import build_vllm_generator
from local.runs.checkpoints import model_problem
from local.util.dist import DistContext, init_distributed
from local.util.dist import setup_logging as setup_rank_logging

logger = logging.getLogger(__name__)


def evaluate(benchmark: Benchmark, argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the evaluation (or --score_only); rank 0 returns what results.json holds."""
    args = parse_args(benchmark, argv)
    protocols = benchmark.chosen_protocols(args)
    if args.score_only is not None:
        return score_only(benchmark, args, protocols)
    check_model(args.model)
    dist = start(benchmark, args)
    data = load(benchmark, args)
    make_generator = generator_factory(args, dist)
    results: Results = {}
    for protocol in protocols:
        by_id = predict(make_generator, data.records, work_dir(benchmark, args.out_dir, protocol),
                        dist, batch_size=args.batch_size, template=args.template,
                        settings=run_settings(args, **data_settings(benchmark, args, protocol)),
                        text_fn=benchmark.prompt_text(protocol),
                        desc=progress_label(benchmark, args, protocol))
        if by_id is not None:  # rank 0: score and write what every rank predicted
            items = benchmark.items(data, protocol, by_id)
            benchmark.write_predictions(args.out_dir, protocol, items)
            if not benchmark.scored:  # answers withheld: what to submit, no accuracy
                return benchmark.submission(args.out_dir, items)
            results[protocol] = {**benchmark.score(items, protocol),
                                 "audio_truncated": truncated_count(by_id),
                                 "audio_incomplete": incomplete_audio(by_id)}
    if not dist.is_main:
        return None
    settings = run_settings(args, **data_settings(benchmark, args), limit=args.limit)
    return write_results(benchmark, results, args.out_dir / "results.json", str(args.model),
                         settings=settings, title=args.set_title)


def score_only(benchmark: Benchmark, args: argparse.Namespace,
               protocols: Sequence[str]) -> dict[str, Any]:
    """Score the predictions file `args.score_only` under each protocol; no model is loaded."""
    logging.basicConfig(level=logging.INFO)
    path: Path = args.score_only
    items, as_is = benchmark.read_predictions(path)
    check: dict[str, Any] | str
    extra: dict[str, Any] = {}
    if as_is is not None:
        check = as_is
    elif args.no_question_check:
        check = CHECK_SKIPPED
    else:
        items, check = checked_items(benchmark.question_set(args), items, path,
                                     benchmark.question_option)
        extra["question_file"] = str(benchmark.question_path(args))
    for line in check_lines(check):
        logger.warning("%s: %s", path, line)
    results = {p: {**benchmark.score(items, p), "question_check": check, **extra}
               for p in protocols}
    return write_results(benchmark, results, args.out or path.with_name("results.json"),
                         str(path), title=args.set_title)


def check_model(model: str | Path) -> None:
    """Refuse, in one line, a `--model` folder that cannot be evaluated: a training checkpoint
    whose save did not finish, or weight files cut short (`local.runs.checkpoints.
    model_problem`, the rule by which `local.eval.steps` picks a run's checkpoints); before
    anything is written or loaded, for every backend."""
    problem = model_problem(model)
    if problem is not None:
        raise SystemExit(f"--model: {problem}")


def start(benchmark: Benchmark, args: argparse.Namespace) -> DistContext:
    """Ranks, logging and the output folder (emptied first with --overwrite)."""
    dist = init_distributed()
    setup_logging(dist)
    out_dir: Path = args.out_dir
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            clear(out_dir, ["results.json", "results.md",
                            *(f for p in benchmark.protocols for f in
                              benchmark.prediction_files(p))])
            for protocol in benchmark.protocols if benchmark.multi_protocol else ():
                clear(out_dir / protocol, [])
    dist.barrier()  # no rank reads the folder before rank 0 has cleared it
    return dist


def load(benchmark: Benchmark, args: argparse.Namespace) -> QuestionSet:
    """The benchmark's question set; a missing or unreadable source is one line naming it."""
    try:
        return benchmark.load(args)
    except (FileNotFoundError, RecordError) as err:
        raise SystemExit(f"{benchmark.question_option}: {err}") from err


def work_dir(benchmark: Benchmark, out_dir: Path, protocol: str) -> Path:
    """Where a protocol's logs go: `out_dir`, or `out_dir/<protocol>` with several protocols."""
    return out_dir / protocol if benchmark.multi_protocol else out_dir


def data_settings(benchmark: Benchmark, args: argparse.Namespace,
                  protocol: str | None = None) -> dict[str, Any]:
    """The question source (and, with several protocols, the protocol) a run was made with."""
    settings = {benchmark.question_dest: recorded_path(benchmark.question_path(args))}
    if protocol is not None and benchmark.multi_protocol:
        settings["protocol"] = protocol
    return settings


def progress_label(benchmark: Benchmark, args: argparse.Namespace, protocol: str) -> str:
    """What the progress bar and its log lines call a run: benchmark, protocol, no audio."""
    label = f"{benchmark.title} [{protocol}]" if benchmark.multi_protocol else benchmark.title
    return f"{label} (no audio)" if args.no_audio else label


def setup_logging(dist: DistContext) -> None:
    """INFO on rank 0; on the others warnings once per kind, errors, nothing every rank repeats
    alike (`local.util.dist.setup_logging`): one log, not world_size copies."""
    setup_rank_logging(dist.rank)


# ---------------------------------------------------------------------------------------------
# Predict
# ---------------------------------------------------------------------------------------------

def generator_factory(args: argparse.Namespace, dist: DistContext) -> Callable[[], Backend]:
    """A function that builds the generator on first call and then returns the same one."""
    return functools.cache(lambda: build_generator(args, dist))


def build_generator(args: argparse.Namespace, dist: DistContext) -> Backend:
    """Load the model (clear error for a bad checkpoint) and wrap it for generation: HF
    `generate`, or with --backend vllm an engine (`local.eval.vllm_backend`)."""
    if args.backend == "vllm":
        return build_vllm_generator(args, generation_settings(args), dist)
    try:
        loaded = load_model_and_processor(str(args.model), dtype=args.dtype,
                                          attn_implementation=args.attn_implementation)
    except ModelLoadError as err:
        raise SystemExit(f"--model {args.model}: {err}") from err
    if dist.is_main:
        logger.info("Loaded %s (%s) on %s; audio %s", args.model, loaded.family.name,
                    dist.device, "OFF (--no_audio ablation)" if args.no_audio else "on")
    return Generator(loaded, generation_settings(args), audio=not args.no_audio,
                     max_audio_seconds=args.max_audio_duration_in_seconds, device=dist.device)


def predict(make_generator: Callable[[], Backend], records: Sequence[Record],
            work_dir: Path, dist: DistContext, *, batch_size: int, template: str = "default",
            settings: dict[str, Any] | None = None,
            text_fn: Callable[[Record], str] | None = None,
            desc: str = "predict") -> dict[str, dict[str, Any]] | None:
    """Answer every record not yet logged under `work_dir`; rank 0 returns all predictions.

    `make_generator` is called (once, cache it) only if this rank has items left, so a finished
    step does not load its model again.
    """
    with resumable_shard(records, work_dir, dist, make_generator, settings=settings,
                         desc=desc, verb="answer") as run:
        generator, log = run.backend, run.log
        for start_at in range(0, len(run.todo), batch_size):
            batch = run.todo[start_at:start_at + batch_size]
            texts = [text_fn(r) for r in batch] if text_fn is not None else None
            outputs = generator.generate(batch, template, texts)
            if [o.id for o in outputs] != [r.id for r in batch]:
                raise RuntimeError(f"generator answered {[o.id for o in outputs]} for "
                                   f"{[r.id for r in batch]}; outputs must match the batch.")
            for out in outputs:
                log.append({"id": out.id, "response": out.response, "error": out.error,
                            "audio_truncated": out.audio_truncated,
                            "audio_incomplete": out.audio_incomplete, "rank": dist.rank})
                run.bar.update(1)
    if generator is not None and generator.truncated:
        logger.warning("rank %d: %d clips were cut to %.0f s.", dist.rank, generator.truncated,
                       generator.max_audio_seconds or 0)
    dist.barrier()
    return read_logs(work_dir) if dist.is_main else None


def truncated_count(by_id: dict[str, dict[str, Any]]) -> int:
    """How many logged items had their clip cut to --max_audio_duration_in_seconds."""
    return sum(bool(entry.get("audio_truncated")) for entry in by_id.values())


def incomplete_audio(by_id: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{id: why} of the logged items whose audio file is shorter than its header says (a WAV
    cut short: `local.core.audio.wav_shortfall`, the definition validation reports): answered
    on the audio the file holds and scored, listed in results.json and results.md."""
    return {ident: entry["audio_incomplete"] for ident, entry in by_id.items()
            if entry.get("audio_incomplete")}
