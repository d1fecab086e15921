"""What both evaluators share: command-line options, model set-up and the resumable predict loop.

`predict` runs one pass over the records: this rank's deterministic shard, minus what an earlier
run already logged, in batches, one flushed JSONL line per answer (see
`local.eval.prediction_log`), with a
progress bar on rank 0. After a barrier, rank 0 merges every rank's log once and gets all
predictions by id; other ranks get None.

Example:
    >>> parser = argparse.ArgumentParser(); add_common_args(parser)           # doctest: +SKIP
    >>> args = parser.parse_args(["--model", "ckpt", "--out_dir", "out"])     # doctest: +SKIP
    >>> dist = init_distributed(); make = generator_factory(args, dist)      # doctest: +SKIP
    >>> by_id = predict(make, records, Path("out"), dist, batch_size=8)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from local.core.answers import extract_answer
from local.core.models import ModelLoadError, load_model_and_processor
from local.core.prompts import TEMPLATES
from local.core.records import Record
from local.eval.generation import GenerationSettings, Generator
from local.eval.prediction_log import PredictionLog, check_settings, read_logs
from local.util.dist import DistContext, shard

logger = logging.getLogger(__name__)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Model, prompt, generation, audio and output options shared by both evaluators."""
    add = parser.add_argument
    add("--model", help="checkpoint folder (e.g. exp/grpo/checkpoint-100) or hub id "
        "(Qwen/Qwen2.5-Omni-7B, Qwen/Qwen2-Audio-7B-Instruct)")
    add("--template", default="default", choices=sorted(TEMPLATES),
        help="prompt template, as in training (default: %(default)s)")
    add("--batch_size", type=int, default=8, help="prompts per generate call (default: 8)")
    add("--max_new_tokens", type=int, default=2048,
        help="new tokens per answer (default: %(default)s, as the seed)")
    add("--temperature", type=float, default=0.0,
        help="0 = greedy, the seed's evaluation (default: %(default)s)")
    add("--top_p", type=float, default=1.0, help="nucleus sampling, if temperature > 0")
    add("--top_k", type=int, default=0, help="top-k sampling if temperature > 0 (0 = off)")
    add("--repetition_penalty", type=float, default=1.0,
        help="explicit, so a checkpoint's generation_config cannot change it (default: 1.0)")
    add("--max_audio_duration_in_seconds", type=float, default=30.0,
        help="cut longer clips (counted, with a warning); default 30 as the seed, for every "
        "model (Qwen2-Audio's window is 30 s, Omni's 300 s)")
    add("--no_audio", action="store_true",
        help="ablation: the prompt has no audio part and no audio features are passed")
    add("--dtype", default="auto", help="model dtype: auto, bfloat16, float16, float32")
    add("--attn_implementation", default=None, help="e.g. sdpa, flash_attention_2")
    add("--out_dir", type=Path, help="where predictions, results and logs go "
        "(the recipe uses exp/<run>/eval/<bench>/<step>)")
    add("--overwrite", action="store_true", help="discard earlier predictions and start over")
    add("--limit", type=int, default=None, help="only the first N items (quick runs)")
    add("--score_only", type=Path, default=None, metavar="PRED.json",
        help="score an existing predictions file, no model needed")
    add("--out", type=Path, default=None, metavar="RESULTS.json",
        help="results file for --score_only (default: results.json beside PRED.json)")
    add("--no_question_check", action="store_true",
        help="with --score_only: score the file as it is, without checking it against the "
        "benchmark's question set (extra, duplicated and missing items then go unnoticed; the "
        "results say so)")


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_p=args.top_p, top_k=args.top_k,
                              repetition_penalty=args.repetition_penalty)


def run_settings(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """What a resumed run must share with the one it continues (written to eval_settings.json)."""
    return {"model": str(args.model), "template": args.template, "no_audio": args.no_audio,
            "max_audio_duration_in_seconds": args.max_audio_duration_in_seconds,
            "generation": generation_settings(args).as_dict(), **extra}


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Required-together options, checked before anything slow starts."""
    if args.score_only is None and (args.model is None or args.out_dir is None):
        parser.error("--model and --out_dir are required (or --score_only PRED.json)")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch_size and --limit must be positive")
    if args.max_audio_duration_in_seconds <= 0:
        parser.error("--max_audio_duration_in_seconds must be positive")


def setup_logging(dist: DistContext) -> None:
    """INFO on rank 0, warnings only on the others (one log, not world_size copies)."""
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def generator_factory(args: argparse.Namespace, dist: DistContext) -> Callable[[], Generator]:
    """A function that builds the generator on first call and then returns the same one."""
    return functools.cache(lambda: build_generator(args, dist))


def build_generator(args: argparse.Namespace, dist: DistContext) -> Generator:
    """Load the model (clear error for a bad checkpoint) and wrap it for generation."""
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


def predict(make_generator: Callable[[], Generator], records: Sequence[Record],
            work_dir: Path, dist: DistContext, *, batch_size: int, template: str = "default",
            settings: dict[str, Any] | None = None,
            text_fn: Callable[[Record], str] | None = None,
            desc: str = "predict") -> dict[str, dict[str, Any]] | None:
    """Answer every record not yet logged under `work_dir`; rank 0 returns all predictions.

    `make_generator` is called (once, cache it) only if this rank has items left, so a finished
    step does not load its model again.
    """
    if settings is not None:
        check_settings(work_dir, settings, write=dist.is_main)
    dist.barrier()
    mine = shard(records, dist.rank, dist.world_size)
    done = read_logs(work_dir)
    todo = [r for r in mine if r.id not in done]
    if dist.is_main:
        logger.info("%s: %d items, %d done by an earlier run, %d to answer on %d rank(s)",
                    desc, len(records), sum(r.id in done for r in records), len(todo),
                    dist.world_size)
    generator = make_generator() if todo else None
    with PredictionLog(work_dir, dist.rank) as log, tqdm(
            total=len(mine), initial=len(mine) - len(todo), desc=desc, unit="item",
            disable=not dist.is_main) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            texts = [text_fn(r) for r in batch] if text_fn is not None else None
            outputs = generator.generate(batch, template, texts)
            if [o.id for o in outputs] != [r.id for r in batch]:
                raise RuntimeError(f"generator answered {[o.id for o in outputs]} for "
                                   f"{[r.id for r in batch]}; outputs must match the batch.")
            for out in outputs:
                log.append({"id": out.id, "response": out.response, "error": out.error,
                            "audio_truncated": out.audio_truncated, "rank": dist.rank})
                bar.update(1)
    if generator is not None and generator.truncated:
        logger.warning("rank %d: %d clips were cut to %.0f s.", dist.rank, generator.truncated,
                       generator.max_audio_seconds or 0)
    dist.barrier()
    return read_logs(work_dir) if dist.is_main else None


def truncated_count(by_id: dict[str, dict[str, Any]]) -> int:
    """How many logged items had their clip cut to --max_audio_duration_in_seconds."""
    return sum(bool(entry.get("audio_truncated")) for entry in by_id.values())


def prediction_fields(entry: dict[str, Any] | None) -> dict[str, Any]:
    """`model_output` (the `<answer>` content, DOTALL, else the whole response), the response
    and the error, for one item; no entry or no response gives model_output None."""
    if entry is None:
        return {"model_output": None, "response": None,
                "prediction_error": "no prediction was made (run interrupted or item skipped)"}
    response = entry.get("response")
    return {"model_output": None if response is None else extract_answer(response, "eval"),
            "response": response,
            "prediction_error": entry.get("error") if response is None else None}
