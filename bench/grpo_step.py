"""One GRPO step, phase by phase: our AudioGRPOTrainer against the naive configuration.

For each model and G it trains `warmup + steps` optimizer steps of each configuration in this
process (fresh random weights, same seed, same rows) and prints the median per-phase seconds:

- `naive`:   per-row decoding, processor default padding (Omni: 300 s), encoder per row and pass
             (bench/naive.py) - what older recipes do;
- `nocache`: our trainer with the embedding cache off (what it does when the encoder trains);
- `ours`:    our trainer; with a frozen encoder each clip is encoded once per rollout.

`--encoder frozen` (this bench's default) freezes the audio encoder in every configuration, as
`freeze_audio_encoder: true` does in training; `--encoder trained` is the recipe's default
(`freeze_audio_encoder: false`), where nothing is cached and `ours` equals `nocache`. Quote the
setting with any figure: the step-time ratio differs between the two.

Models: `tiny_qwen2_audio`, `tiny_omni` (local/demo/tiny.py sizes, real vocabulary) and
`scaled_omni7b` (Omni-7B's audio-encoder / LM-body parameter ratio, ~512-token vocabulary; see
bench/models.py). With
`--real_size qwen2_5_omni_3b|qwen2_5_omni_7b` (GPU) it builds the real sizes with random weights
and runs the batch settings of the reference recipe, WeST's GRPO example (1 prompt x 4
completions, grad-accum 2, 1024 new tokens, bf16, gradient checkpointing): 3B fully trained, 7B
with LoRA (r 64) on the language model.

Example:
    $ .venv/bin/python -m bench.grpo_step --models scaled_omni7b --G 4 --repeats 2 --steps 2
    $ .venv/bin/python -m bench.grpo_step --models scaled_omni7b --G 4 --repeats 2 --steps 2 \\
        --encoder trained --configs naive,ours
    $ .venv/bin/python -m bench.grpo_step --real_size qwen2_5_omni_7b   # on a GPU machine
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
from typing import Any
from unittest import mock

import numpy as np
import torch

from bench.models import KINDS, REAL_SHAPES, build_config, build_model, describe
from bench.naive import NaiveAudioGRPOTrainer
from bench.timing import PeakMemory, PhaseTimer, medians, table
from local.core.records import Record
from local.core.rewards import default_rewards, get_rewards
from local.demo.data import _wav_bytes, make_items
from local.demo.tiny import build_processor
from local.demo.tokenizers import build_tokenizer
from local.train.config import parse_args
from local.train.dataset import training_row
from local.train.trainer import AudioGRPOTrainer

ROWS = ("collation", "rollout", "ref_logps", "old_logps", "policy_logps", "backward",
        "optimizer", "rewards", "other", "step", "audio_encoder")
CONFIGS = {"naive": (NaiveAudioGRPOTrainer, {}), "nocache": (
    AudioGRPOTrainer, {"cache_audio_embeddings": False}), "ours": (AudioGRPOTrainer, {})}


def bench_rows(prompts: int, clip_s: float, seed: int = 0) -> Any:
    """`prompts` training rows with distinct clips of `clip_s` seconds (WAV bytes, 16 kHz)."""
    import datasets

    rng = np.random.default_rng(seed)
    rows = []
    for i, item in enumerate(make_items(prompts, seed)):
        t = np.arange(int(clip_s * 16_000)) / 16_000
        wave = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.01 * rng.standard_normal(t.size)
        record = Record(id=f"bench-{i}", audio=_wav_bytes(wave.astype(np.float32)),
                        question=item.question, choices=item.choices, answer=item.answer)
        rows.append(training_row(record, "default"))
    return datasets.Dataset.from_list(rows)


def grpo_args(out: str, g: int, prompts: int, steps: int, max_new: int, real: bool) -> Any:
    gpu = torch.cuda.is_available()
    argv = ["--output_dir", out, "--num_generations", str(g), "--max_steps", str(steps),
            "--max_completion_length", str(max_new), "--save_strategy", "no",
            "--report_to", "none", "--log_completions", "false", "--disable_tqdm", "true",
            "--logging_steps", "1000"]
    if real:  # the reference recipe's: 1 prompt x G per device and micro-step, grad-accum 2, bf16
        argv += ["--per_device_train_batch_size", str(g), "--gradient_accumulation_steps", "2",
                 "--gradient_checkpointing", "true", "--bf16", "true"]
    else:  # all prompts in one micro-step (one rollout, one optimizer step)
        argv += ["--per_device_train_batch_size", str(g * prompts),
                 "--gradient_accumulation_steps", "1", "--gradient_checkpointing", "false",
                 "--bf16", "true" if gpu else "false"]
    if not gpu:
        argv += ["--use_cpu", "true"]
    config, _ = parse_args(argv)
    names, weights = default_rewards("default")
    config.reward_weights = weights
    return config, get_rewards(names)


def lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=64, lora_alpha=128, lora_dropout=0.05, task_type="CAUSAL_LM",
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|"
                                     r"gate_proj|up_proj|down_proj)")


_TOKENIZERS: dict[str, Any] = {}


def tokenizer_for(kind: str) -> Any:
    """The scaled model uses the ~512-token vocabulary: with Qwen's 152k rows at width 256 the LM
    head would be 8x the LM body (Omni-7B: 1/12) and swamp every other phase."""
    tier = "tiny" if kind == "scaled_omni7b" else "real"
    if tier not in _TOKENIZERS:
        _TOKENIZERS[tier] = build_tokenizer(tier)
    return _TOKENIZERS[tier]


def run_config(name: str, kind: str, g: int, args: argparse.Namespace) -> dict:
    """Train warmup+steps steps of one configuration; median phase seconds and peak memory."""
    real = kind in REAL_SHAPES
    tok = tokenizer_for(kind)
    model_config, family = build_config(kind, tok)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if real else torch.float32
    model = build_model(model_config, dtype=dtype, device=device)
    if args.encoder == "frozen":
        for pname, p in model.named_parameters():
            if "audio_tower." in pname:
                p.requires_grad_(False)
    cls, extra = CONFIGS[name]
    with tempfile.TemporaryDirectory() as out:
        config, rewards = grpo_args(out, g, args.prompts, args.warmup + args.steps,
                                    args.max_completion_length, real)
        peft = lora_config() if kind == "qwen2_5_omni_7b" else None
        # TRL loads the reference model from the policy's path; ours lives in memory: copy it.
        with mock.patch("trl.trainer.grpo_trainer.create_model_from_path",
                        lambda *a, **k: copy.deepcopy(model)):
            trainer = cls(model=model, processing_class=build_processor(family.name, tok),
                          family=family, reward_funcs=rewards, args=config, peft_config=peft,
                          train_dataset=bench_rows(args.prompts if not real else 2, args.clip_s),
                          **extra)
        timer, memory = PhaseTimer(), PeakMemory()
        timer.instrument(trainer)
        try:
            with memory.track():
                trainer.train()
        finally:
            timer.restore()
    peak = memory.peak_mb - (0 if torch.cuda.is_available() else memory.base_mb)
    return {"steps": timer.steps[args.warmup:], "peak_mb": peak,
            "cache": trainer.audio_cache_stats}


def run_all(kind: str, g: int, args: argparse.Namespace) -> dict[str, dict]:
    """Every configuration, `--repeats` times in turn (ABC ABC: load drift hits all alike);
    median over all measured steps, largest peak memory."""
    runs: dict[str, list[dict]] = {name: [] for name in args.configs.split(",")}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(run_config(name, kind, g, args))
    results = {}
    for name, parts in runs.items():
        result = medians([step for part in parts for step in part["steps"]])
        result["peak_mb"] = max(part["peak_mb"] for part in parts)
        result["tokens_per_s"] = (result.get("prompt_tokens", 0)
                                  + result.get("completion_tokens", 0)) / result["step"]
        result["cache"] = parts[-1]["cache"]
        result["measured_steps"] = sum(len(part["steps"]) for part in parts)
        results[name] = result
    return results


def versions() -> str:
    import accelerate
    import transformers
    import trl

    cpu = f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})"
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu
    return (f"device: {card}; torch {torch.__version__}, transformers {transformers.__version__}, "
            f"trl {trl.__version__}, accelerate {accelerate.__version__}")


def report(kind: str, g: int, results: dict[str, dict], label: str) -> str:
    base = "naive" if "naive" in results else next(iter(results))
    lines = [table(f"{kind}, G={g}: median seconds per step", results, ROWS,
                   ratio=(base, "ours") if "ours" in results and base != "ours" else None)]
    lines.append("")
    for name, r in results.items():
        lines.append(f"- {name}: step {r['step']:.3f} s (median of {r['measured_steps']}), "
                     f"{r['tokens_per_s']:.0f} tokens/s, "
                     f"{label} {r['peak_mb']:.0f} MB, encoder cache {r['cache'] or 'off'}")
    if "ours" in results:
        ours = results["ours"]
        for other in ("naive", "nocache"):
            if other in results:
                r = results[other]
                lines.append(f"- **{other}/ours: step time {r['step'] / ours['step']:.2f}x, "
                             f"audio encoder {r['audio_encoder'] / ours['audio_encoder']:.1f}x, "
                             f"collation {r['collation'] / ours['collation']:.1f}x, peak "
                             f"memory {r['peak_mb'] / max(ours['peak_mb'], 1e-9):.2f}x**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny_qwen2_audio,tiny_omni,scaled_omni7b",
                        help=f"comma-separated, from {KINDS}")
    parser.add_argument("--real_size", choices=sorted(REAL_SHAPES), default=None,
                        help="GPU: real-size random model, the reference recipe's batch")
    parser.add_argument("--G", default="4,8", help="completions per prompt, comma-separated")
    parser.add_argument("--configs", default="naive,nocache,ours")
    parser.add_argument("--encoder", choices=["frozen", "trained"], default="frozen",
                        help="audio encoder: frozen (freeze_audio_encoder true: the cache applies) "
                             "or trained (the recipe's default: nothing cached, ours = nocache)")
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts per step (CPU)")
    parser.add_argument("--clip_s", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--steps", type=int, default=3, help="measured steps (median)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the configurations this many times in turn (ABC ABC)")
    parser.add_argument("--max_completion_length", type=int, default=None,
                        help="new tokens per completion (default 16 on CPU, 1024 real size)")
    parser.add_argument("--json", default=None, help="also write all figures to this file")
    args = parser.parse_args(argv)
    if args.real_size:
        if not torch.cuda.is_available():
            raise SystemExit("--real_size needs a CUDA GPU (random weights, no download)")
        kinds, args.configs = [args.real_size], "ours"
        args.max_completion_length = args.max_completion_length or 1024
    else:
        kinds = args.models.split(",")
        if "qwen3_omni_moe" in kinds:
            raise SystemExit("qwen3_omni_moe (a LoRA step at reduced depth): python -m "
                             "bench.grpo_moe")
        args.max_completion_length = args.max_completion_length or 16
    torch.set_num_threads(torch.get_num_threads())
    print(versions())
    label = PeakMemory().label
    everything: dict[str, Any] = {"versions": versions(), "args": vars(args), "results": {}}
    for kind in kinds:
        print(f"\n## {kind}: {describe(build_config(kind, tokenizer_for(kind))[0])}")
        for g in [int(x) for x in args.G.split(",")]:
            results = run_all(kind, g, args)
            print("\n" + report(kind, g, results, label), flush=True)
            everything["results"][f"{kind}/G={g}"] = results
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=2, default=str)
    return everything


if __name__ == "__main__":
    main()
