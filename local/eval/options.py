"""The evaluation command line: options every benchmark shares, plus the benchmark's data options.

Settings default to the reference recipe's (WeST's GRPO example) evaluation: greedy decoding,
2048 new tokens, audio cut at 30 s, every generation setting passed explicitly so a checkpoint's
generation_config cannot change it. `run_settings` is what a resumed run must share with the
run it continues (`eval_settings.json`) and what results.json records under `settings`.

Example:
    >>> from local.eval.benchmarks.mmau import MMAU
    >>> args = parse_args(MMAU, ["--model", "ckpt", "--out_dir", "out"])
    >>> args.temperature, args.max_new_tokens, str(args.mmau_json)
    (0.0, 2048, 'data/mmau/mmau-test-mini.json')
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.core.prompts import TEMPLATES
from local.eval.benchmarks.base import Benchmark
from local.eval.generation import GenerationSettings
from local.eval.vllm_backend import engine_version, vllm_installed


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Model, prompt, generation, audio and output options shared by every benchmark."""
    add = parser.add_argument
    add("--model", help="checkpoint folder (e.g. exp/grpo/checkpoint-100: refused unless its "
        "save finished, as the mmau/mmsu stages do) or hub id (Qwen/Qwen2.5-Omni-7B, "
        "Qwen/Qwen2-Audio-7B-Instruct)")
    add("--template", default="default", choices=sorted(TEMPLATES),
        help="prompt template, as in training (default: %(default)s)")
    add("--set_title", default=None,
        help="name of the question set when the items are not the benchmark's own (e.g. "
        "'synthetic demo set (MMAU format)'): printed with each accuracy, kept in results.json "
        "(set_title), heads results.md and titles local.eval.steps' summary.md (default: the "
        "benchmark's name)")
    add("--batch_size", type=int, default=8, help="prompts per generate call (default: 8)")
    add("--max_new_tokens", type=int, default=2048,
        help="new tokens per answer (default: %(default)s, as the reference recipe)")
    add("--temperature", type=float, default=0.0,
        help="0 = greedy, the reference recipe's evaluation (default: %(default)s)")
    add("--top_p", type=float, default=1.0, help="nucleus sampling, if temperature > 0")
    add("--top_k", type=int, default=0, help="top-k sampling if temperature > 0 (0 = off)")
    add("--repetition_penalty", type=float, default=1.0,
        help="explicit, so a checkpoint's generation_config cannot change it (default: 1.0)")
    add("--max_audio_duration_in_seconds", type=float, default=30.0,
        help="cut longer clips (counted, with a warning); default 30 as the reference recipe, "
        "for every model (Qwen2-Audio's window is 30 s, Omni's 300 s)")
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


def build_parser(benchmark: Benchmark) -> argparse.ArgumentParser:
    """The shared options and `benchmark`'s data options."""
    parser = argparse.ArgumentParser(description=benchmark.description or
                                     f"Evaluate an audio LM on {benchmark.title}.")
    add_common_args(parser)
    add_backend_args(parser)
    benchmark.add_arguments(parser)
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Required-together options, checked before anything slow starts."""
    if args.score_only is None and (args.model is None or args.out_dir is None):
        parser.error("--model and --out_dir are required (or --score_only PRED.json)")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch_size and --limit must be positive")
    if args.max_audio_duration_in_seconds <= 0:
        parser.error("--max_audio_duration_in_seconds must be positive")


def parse_args(benchmark: Benchmark, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check `argv` (None: the command line) for `benchmark`."""
    parser = build_parser(benchmark)
    args = parser.parse_args(argv)
    check_args(args, parser)
    check_backend_args(args, parser)
    return args


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_p=args.top_p, top_k=args.top_k,
                              repetition_penalty=args.repetition_penalty)


def recorded_path(value: str | Path | None) -> str | None:
    """A model or data path as settings record it: a local path absolute (so the README's
    relative `python evaluate_*.py` line and run.sh's absolute one resume each other), a hub id
    as typed."""
    if value is None:
        return None
    return os.path.abspath(value) if Path(value).exists() else str(value)


def run_settings(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """What a resumed run must share with the one it continues (written to eval_settings.json)."""
    return {"model": recorded_path(args.model), "template": args.template,
            "no_audio": args.no_audio,
            "max_audio_duration_in_seconds": args.max_audio_duration_in_seconds,
            "generation": generation_settings(args).as_dict(), **backend_settings(args), **extra}


# ---------------------------------------------------------------------------------------------
# Generation backend (HF generate or vLLM: local.eval.vllm_backend)
# ---------------------------------------------------------------------------------------------

BACKENDS = ("hf", "vllm")
_VLLM_ONLY = ("max_model_len", "tensor_parallel_size")


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """Which engine answers (same prompts, settings and output files), and vLLM's own options."""
    add = parser.add_argument
    add("--backend", default="hf", choices=BACKENDS,
        help="hf: transformers generate (default); vllm: a vLLM engine per rank, in the vLLM "
        "environment (run.sh --vllm true); use a large --batch_size with it, e.g. 256")
    add("--max_model_len", type=int, default=None,
        help="vllm: prompt + answer tokens per sequence (default: the model's); keep it above "
        "the longest prompt + --max_new_tokens, or answers end early")
    add("--tensor_parallel_size", type=int, default=None,
        help="vllm: GPUs per engine (default 1); above 1 in one process only, not under torchrun")


def check_backend_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """vLLM's options only with --backend vllm, and vLLM installed when it is asked for."""
    given = [f"--{name}" for name in _VLLM_ONLY if getattr(args, name) is not None]
    if args.backend != "vllm" and given:
        parser.error(f"{', '.join(given)} only apply with --backend vllm")
    bad = [f"--{name}" for name in _VLLM_ONLY
           if getattr(args, name) is not None and getattr(args, name) < 1]
    if bad:
        parser.error(f"{', '.join(bad)} must be positive")
    if args.backend == "vllm" and args.score_only is None and not vllm_installed():
        parser.error("--backend vllm: vLLM is not installed here (bash run.sh --eval_backend "
                     "vllm uses the vLLM environment; see the README's vLLM section)")


def backend_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a resumed run must share with the one it continues: the backend, and for vLLM its
    version and context length (predictions of two engines are never mixed)."""
    if args.backend == "hf":
        return {"backend": "hf"}
    return {"backend": "vllm", "vllm_version": engine_version(),
            "max_model_len": args.max_model_len}
