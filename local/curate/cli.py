"""`python -m local.curate`: score the training items with and without the audio, select, report.

  read     the training records with the reader training uses (`local.data`: AVQA by default,
           MMAU- or MMSU-format question lists), ids as training's rows; rows training would
           skip (no audio) are skipped and counted
  score    for each item, k samples with the audio and k without (`local.curate.scoring`), with
           the starting model, either backend (HF `generate`, or `--backend vllm`), data
           parallel under torchrun, resumable (kill it and run the same command again)
  table    `table.parquet` (`local.curate.table`): accuracies, audio contribution, zero spread
  select   `selection.json` (`local.curate.rules`): the ids `--rule` keeps, counts of every rule
  report   `report.md` + histograms (`local.curate.report`)

Everything goes to `<out>/<model name>/<settings hash>/` (`local.curate.settings`; default out
`data/curate`, never inside the hub cache that data/ links to), with `.done` written last; a
re-run with the same settings only re-selects (another `--rule` is then instant); `--where`
prints that folder without running anything (what run.sh passes on to training).

Example:
    $ python -m local.curate --model exp/demo/models/initial --train_data exp/demo/data/avqa \\
        --config conf/demo.yaml --out exp/demo/curate
    $ torchrun --nproc_per_node 8 -m local.curate --model Qwen/Qwen2.5-Omni-7B \\
        --train_data data/avqa --rule audio_and_spread
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.core.models import ModelLoadError, load_model_and_processor
from local.core.prompts import TEMPLATES
from local.core.records import ReadReport, Record
from local.core.rewards import REWARDS
from local.curate.report import write_report
from local.curate.rules import DEFAULT_RULE, DEFAULT_THRESHOLD, RULES, selection
from local.curate.sampling import PASSES, HFSampler, Sampler, SeededVLLMGenerator, VLLMSampler
from local.curate.scoring import score_pass
from local.curate.settings import CurateSettings, config_defaults, curate_dir
from local.curate.table import TABLE_FILE, read_table, table_rows, write_table
from local.data.avqa import open_avqa, read_avqa
from local.data.mmau import read_mmau
from local.data.mmsu import read_mmsu
from local.eval.generation import GenerationSettings, Generator
from local.eval.options import (
    add_backend_args,
    backend_settings,
    check_backend_args,
    recorded_path,
)
from local.eval.runner import check_model
from local.eval.vllm_backend import build_vllm_generator
from local.util.dist import DistContext, init_distributed, setup_logging
from local.util.fsio import atomic_write_json, is_done, mark_done
from local.util.gitinfo import code_version

logger = logging.getLogger(__name__)
FORMATS = ("avqa", "mmau", "mmsu")
SELECTION_FILE = "selection.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score training items with and without the audio (k samples each), keep "
        "those that need the audio and give GRPO a gradient.")
    add = parser.add_argument
    add("--model", required=True, help="the starting model: checkpoint folder or hub id")
    add("--train_data", required=True, type=Path, help="training data, as train.py's")
    add("--train_format", default="avqa", choices=FORMATS, help="as train.py's (default avqa)")
    add("--train_split", default="train", help="avqa/mmsu split (default train)")
    add("--train_audio_dir", default=None, help="mmau format: the audio folder")
    add("--bad_records", default="skip", choices=("skip", "raise"),
        help="a row training cannot use: skip it (counted) or stop (default skip, as training)")
    add("--config", type=Path, default=None,
        help="training config whose num_generations, temperature, top_k, top_p, "
        "repetition_penalty, max_completion_length and template are the defaults "
        "(default conf/grpo.yaml; the demo: conf/demo.yaml)")
    add("--k", type=int, default=None, help="samples per item and pass (default: the config's "
        "num_generations, the GRPO group size G)")
    add("--temperature", type=float, default=None, help="default: the config's")
    add("--top_k", type=int, default=None, help="default: the config's (0 = off)")
    add("--top_p", type=float, default=None, help="default: the config's")
    add("--repetition_penalty", type=float, default=None, help="default: the config's")
    add("--max_new_tokens", type=int, default=None,
        help="default: the config's max_completion_length")
    add("--template", default=None, choices=sorted(TEMPLATES), help="default: the config's")
    add("--reward", default="accuracy", choices=sorted(r for r in REWARDS
                                                       if r.startswith("accuracy")),
        help="what counts as right: a training accuracy reward (default accuracy)")
    add("--seed", type=int, default=0, help="base of the per-sample seeds (default 0)")
    add("--rule", default=DEFAULT_RULE, choices=sorted(RULES),
        help=f"selection rule (default {DEFAULT_RULE}; local/curate/rules.py says why)")
    add("--threshold", type=float, default=DEFAULT_THRESHOLD,
        help="strong_audio / weak_audio: the no-audio accuracy that makes an item weak")
    add("--out", type=Path, default=Path("data/curate"),
        help="root folder; results go to <out>/<model name>/<settings hash>/")
    add("--batch_size", type=int, default=8,
        help="items per logged batch (HF: one item's k samples per generate call; vLLM: "
        "batch_size x k requests per call, use e.g. 64)")
    add("--limit", type=int, default=None, help="only the first N items (quick runs)")
    add("--max_audio_duration_in_seconds", type=float, default=30.0,
        help="cut longer clips, as evaluation (default 30)")
    add("--dtype", default="auto", help="model dtype: auto, bfloat16, float16, float32")
    add("--attn_implementation", default=None, help="e.g. sdpa, flash_attention_2")
    add("--where", action="store_true",
        help="print the result folder these settings write to, and exit (nothing is run)")
    add_backend_args(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.score_only = None  # what check_backend_args asks
    check_backend_args(args, parser)
    defaults = config_defaults(args.config)
    for option, value in defaults.items():
        if getattr(args, option) is None:
            setattr(args, option, value)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch_size and --limit must be positive")
    if args.train_format == "mmau" and args.train_audio_dir is None:
        parser.error("--train_format mmau needs --train_audio_dir")
    return args


def curate_settings(args: argparse.Namespace) -> CurateSettings:
    try:
        generation = GenerationSettings(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
            top_k=args.top_k, repetition_penalty=args.repetition_penalty)
        return CurateSettings(
            model=str(recorded_path(args.model)), train_data=str(recorded_path(args.train_data)),
            train_format=args.train_format, train_split=args.train_split, limit=args.limit,
            k=args.k, generation=generation, seed=args.seed, template=args.template,
            reward=args.reward, max_audio_duration_in_seconds=args.max_audio_duration_in_seconds,
            backend=backend_settings(args))
    except ValueError as err:
        raise SystemExit(f"curate: {err}") from err


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------

def read_records(args: argparse.Namespace) -> tuple[list[Record], ReadReport]:
    """The training records (training's reader and ids), rows without audio skipped."""
    report = ReadReport()
    path = args.train_data
    if not Path(path).exists():
        raise SystemExit(f"--train_data {path}: not found")
    if args.train_format == "avqa":
        reader = read_avqa(path, args.train_split, errors=args.bad_records, report=report)
    elif args.train_format == "mmau":
        reader = read_mmau(path, args.train_audio_dir, errors=args.bad_records, report=report)
    else:
        reader = read_mmsu(path, split=args.train_split, errors=args.bad_records, report=report)
    records = []
    for record in reader:
        if record.audio is None or (isinstance(record.audio, str)
                                    and not Path(record.audio).is_file()):
            message = f"{record.id}: no audio ({record.audio or 'empty'}); training skips it"
            if args.bad_records == "raise":
                raise SystemExit(message)
            logger.warning(message)
            report.skipped += 1
            continue
        records.append(record)
        if args.limit is not None and len(records) >= args.limit:
            break
    if args.train_format == "avqa":
        records = with_tasks(records, path, args.train_split)
    if not records:
        raise SystemExit(f"--train_data {path}: no usable items")
    return records, report


def with_tasks(records: list[Record], path: Path, split: str) -> list[Record]:
    """AVQA-format records with the data's `task` column (the demo's) in their meta."""
    ds, _, _ = open_avqa(path, split)
    if "task" not in ds.column_names:
        return records
    tasks = ds.select_columns(["task"])["task"]
    for record in records:
        record.meta = {**(record.meta or {}), "task": tasks[record.meta["row"]]}
    return records


# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------

@functools.cache
def _hf_model(model: str, dtype: str, attn: str | None) -> Any:
    try:
        return load_model_and_processor(model, dtype=dtype, attn_implementation=attn)
    except ModelLoadError as err:
        raise SystemExit(f"--model {model}: {err}") from err


def build_sampler(args: argparse.Namespace, settings: CurateSettings, dist: DistContext,
                  pass_name: str, folder: Path) -> Sampler:
    """The pass's sampler: HF `Generator` (the model loaded once for both passes) or a seeded
    vLLM engine (one per process, shared by both passes)."""
    audio = pass_name == "audio"
    if args.backend == "vllm":
        engine = _vllm_engine(args, settings, dist, folder)
        generator = SeededVLLMGenerator(
            engine.llm, engine.processor, engine.family, settings.generation, audio=audio,
            max_audio_seconds=settings.max_audio_duration_in_seconds)
        return VLLMSampler(generator, settings.k, settings.seed, pass_name)
    loaded = _hf_model(str(args.model), args.dtype, args.attn_implementation)
    generator = Generator(loaded, settings.generation, audio=audio,
                          max_audio_seconds=settings.max_audio_duration_in_seconds,
                          device=dist.device)
    return HFSampler(generator, settings.k, settings.seed, pass_name)


_ENGINES: dict[tuple, Any] = {}  # this process's engine, by what it was built from


def _vllm_engine(args: argparse.Namespace, settings: CurateSettings, dist: DistContext,
                 folder: Path) -> Any:
    """One engine for both passes; another model or engine setting builds a new one
    (`build_vllm_generator` stops the previous engine first)."""
    key = (str(args.model), args.dtype, args.max_model_len, args.tensor_parallel_size)
    if key not in _ENGINES:
        _ENGINES.clear()
        engine_args = argparse.Namespace(**{**vars(args), "out_dir": folder, "no_audio": False})
        _ENGINES[key] = build_vllm_generator(engine_args, settings.generation, dist)
    return _ENGINES[key]


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def run(argv: Sequence[str] | None = None) -> Path | None:
    """The whole curation; rank 0 returns the result folder."""
    args = parse_args(argv)
    settings = curate_settings(args)
    folder = curate_dir(args.out, settings)
    if args.where:
        print(folder)
        return None
    dist = init_distributed()
    setup_logging(dist.rank)
    done = {"settings_hash": settings.digest()}
    if is_done(folder, done) and (folder / TABLE_FILE).exists():
        if dist.is_main:
            logger.info("%s: scored already; selecting with rule %s", folder, args.rule)
            rows, meta = read_table(folder / TABLE_FILE)
            finish(rows, meta, folder, args)
        return folder if dist.is_main else None
    check_model(args.model)
    records, report = read_records(args)
    logs = {}
    for pass_name in PASSES:
        logs[pass_name] = score_pass(
            functools.cache(lambda p=pass_name: build_sampler(args, settings, dist, p, folder)),
            records, folder / "passes" / pass_name, dist, reward=settings.reward,
            template=settings.template, batch_size=args.batch_size,
            settings={**settings.as_dict(), "pass": pass_name},
            desc=f"curate [{pass_name.replace('_', ' ')}]")
    if not dist.is_main:
        return None
    meta = {"model": settings.model, "settings": settings.as_dict(),
            "settings_hash": settings.digest(), "commit": code_version(),
            "items": len(records), "skipped": report.skipped}
    rows = table_rows(records, logs["audio"], logs["no_audio"], settings.k)
    write_table(rows, folder / TABLE_FILE, meta)
    finish(rows, meta, folder, args)
    mark_done(folder, {**done, "model": settings.model, "commit": meta["commit"]})
    return folder


def finish(rows: list[dict[str, Any]], meta: dict[str, Any], folder: Path,
           args: argparse.Namespace) -> None:
    """selection.json and the report for `args.rule`."""
    try:
        sel = selection(rows, args.rule, args.threshold)
    except ValueError as err:
        raise SystemExit(f"curate: {err}") from err
    atomic_write_json(folder / SELECTION_FILE, {
        "model": meta["model"], "train_data": meta["settings"]["train_data"],
        "settings_hash": meta["settings_hash"], "table": str(folder / TABLE_FILE), **sel})
    write_report(rows, sel, meta, folder)
    logger.info("%s: rule %s keeps %d of %d items; %s, %s", folder, args.rule, sel["kept"],
                len(rows), folder / SELECTION_FILE, folder / "report.md")


def main(argv: Sequence[str] | None = None) -> None:
    folder = run(argv)
    if folder is not None:
        print(f"curation in {folder} (selection.json, table.parquet, report.md)")
