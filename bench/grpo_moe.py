"""One LoRA GRPO step of the Qwen3-Omni-30B-A3B thinker at reduced depth, extrapolated to 48 layers.

The thinker (bench/models.py `QWEN3_OMNI_30B_A3B`: a reported config, not byte-exact) is built
with random weights in bf16 at two depths (`--layers`, default 2 and 4 of its 48 text layers;
audio and vision towers, embeddings and LM head whole) and trains one GRPO step at each with the
family's LoRA targets (`local.core.families.family_named("qwen3_omni_moe")`: attention
projections and the fused experts, PEFT `target_parameters`; none in the towers), the reference
recipe's batch (1 prompt x G completions per micro-step, grad-accum 2, gradient checkpointing)
and short completions (`--max_completion_length`, default 128). It reports, per depth, the
measured step time and peak CUDA allocation, and then the per-layer slope between the two depths
and the value it gives at 48 layers: **extrapolated** (linear in the number of layers), never
measured. What does not grow with depth (towers, embeddings, LM head, logits) is in the
intercept; a depth-dependent effect the two points miss (the allocator's fragmentation, a
rollout that stops earlier on one model) is not.

`--tiny` runs the same path on CPU (bf16, the same batch settings and LoRA targets) with the tiny
kit's widths (local/demo/tiny_qwen3_omni.py) and the tiny vocabulary: a smoke test of the
harness, no figure to quote.

Example:
    $ python -m bench.grpo_moe                    # GPU: 2 and 4 layers, extrapolated to 48
    $ .venv/bin/python -m bench.grpo_moe --tiny --layers 1,2 --G 2 --max_completion_length 2 \\
        --clip_s 1                                # CPU smoke
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import tempfile
from typing import Any
from unittest import mock

import torch

from bench.grpo_step import bench_rows, grpo_args, versions
from bench.models import QWEN3_OMNI_30B_A3B, build_model, describe, moe_counts, qwen3_omni_config
from bench.timing import PeakMemory, PhaseTimer, medians
from local.core.families import family_named
from local.demo import tiny_qwen3_omni
from local.demo.tiny import build_processor
from local.demo.tokenizers import build_tokenizer
from local.train.audio_cache import exclude_from_adapters
from local.train.trainer import AudioGRPOTrainer

FAMILY = "qwen3_omni_moe"
FULL_LAYERS = QWEN3_OMNI_30B_A3B["text"]["num_hidden_layers"]  # 48
# Used only where the family record lacks the LoRA fields (an older checkout of this repository):
# the targets local/core/families/qwen3_omni_moe.py states.
FALLBACK_TARGETS = {"lora_target_modules": ("q_proj", "k_proj", "v_proj", "o_proj"),
                    "lora_target_parameters": ("mlp.experts.gate_up_proj",
                                           "mlp.experts.down_proj"),
                    "lora_exclude_modules": ("audio_tower", "visual")}


def family_targets() -> tuple[dict[str, tuple[str, ...]], str]:
    """The family's LoRA targets (modules, parameters, excluded towers) and where they came
    from: the family record, or this module's fallback where the record lacks a field."""
    family = family_named(FAMILY)
    got, missing = {}, []
    for field_name, fallback in FALLBACK_TARGETS.items():
        value = getattr(family, field_name, None)
        if value is None:
            missing.append(field_name)
        got[field_name] = tuple(value) if value is not None else fallback
    source = ("family record" if not missing
              else f"fallback for {', '.join(missing)} (the family record lacks them)")
    return got, source


def lora_config(r: int) -> tuple[Any, str]:
    """PEFT's config of the family's targets (no dropout: PEFT adapts the fused experts only
    without it), adapters kept out of the towers; and a line saying so."""
    from peft import LoraConfig

    targets, source = family_targets()
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=list(targets["lora_target_modules"]),
                        target_parameters=list(targets["lora_target_parameters"]) or None)
    for module in targets["lora_exclude_modules"]:  # as train.py's exclude_family_towers
        exclude_from_adapters(config, module, f"LoRA targets of {FAMILY}")
    line = (f"LoRA r {r}, alpha {2 * r}: modules {' '.join(targets['lora_target_modules'])}; "
            f"parameters {' '.join(targets['lora_target_parameters']) or '-'}; none in "
            f"{', '.join(targets['lora_exclude_modules']) or '-'} ({source})")
    return config, line


def tiny_config(tokenizer: Any, layers: int) -> Any:
    """The tiny kit's Qwen3-Omni thinker with `layers` text layers (CPU smoke)."""
    base = tiny_qwen3_omni.thinker_config(tokenizer).to_dict()
    base["text_config"]["num_hidden_layers"] = layers
    base["text_config"].pop("layer_types", None)
    return type(tiny_qwen3_omni.thinker_config(tokenizer))(**base)


def run_depth(layers: int, args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """Build the thinker with `layers` text layers (random weights) and train warmup + steps
    GRPO steps with the family's LoRA; median phase seconds, peak memory, parameter counts."""
    gpu = torch.cuda.is_available() and not args.tiny
    config = tiny_config(tokenizer, layers) if args.tiny else qwen3_omni_config(tokenizer, layers)
    counts = moe_counts(config)
    family = family_named(FAMILY)
    # --tiny keeps the real path's settings (bf16, grad-accum 2, gradient checkpointing) on CPU
    device = "cuda" if gpu else "cpu"
    # what an earlier depth left allocated (CUDA): taken off this depth's peak
    before_mb = torch.cuda.memory_allocated() / 2**20 if gpu else 0.0
    model = build_model(config, dtype=torch.bfloat16, device=device)
    peft, lora_line = lora_config(args.lora_r)
    with tempfile.TemporaryDirectory() as out:
        grpo, rewards = grpo_args(out, args.G, 1, args.warmup + args.steps,
                                  args.max_completion_length, real=True)
        # TRL loads the reference model from the policy's path; with PEFT it uses none (the
        # adapter is disabled instead), but the patch keeps any such load in memory.
        with mock.patch("trl.trainer.grpo_trainer.create_model_from_path",
                        lambda *a, _model=model, **k: copy.deepcopy(_model)):
            trainer = AudioGRPOTrainer(
                model=model, processing_class=build_processor(FAMILY, tokenizer), family=family,
                reward_funcs=rewards, args=grpo, peft_config=peft,
                train_dataset=bench_rows(2, args.clip_s))  # 1 prompt x grad-accum 2
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        in_towers = sum(1 for name, _ in trainer.model.named_parameters()
                        if "lora_" in name and ("audio_tower." in name or "visual." in name))
        timer, memory = PhaseTimer(), PeakMemory()
        timer.instrument(trainer)
        try:
            with memory.track():
                trainer.train()
        finally:
            timer.restore()
    steps = timer.steps[args.warmup:]
    result = medians(steps)
    result.update(layers=layers, measured_steps=len(steps), lora=lora_line,
                  peak_mb=memory.peak_mb - (before_mb if gpu else memory.base_mb),
                  left_before_mb=before_mb,
                  trainable=trainable, adapters_in_towers=in_towers, total_params=counts["total"],
                  active_params=counts["active"])
    del trainer, model
    gc.collect()
    if gpu:
        torch.cuda.empty_cache()
    return result


def extrapolate(points: dict[int, float], target: int) -> tuple[float, float]:
    """The per-layer slope between the two deepest measured depths and the straight line's
    value at `target` layers (an extrapolation, not a measurement)."""
    (l1, v1), (l2, v2) = sorted(points.items())[-2:]
    slope = (v2 - v1) / (l2 - l1)
    return slope, v2 + (target - l2) * slope


def report(results: list[dict[str, Any]], label: str, target: int) -> str:
    """Per depth the measured figures; then the per-layer slope and the value at `target`
    layers, labelled extrapolated."""
    lines = [f"| layers | step s (measured) | {label} MB (measured) | trainable params | "
             "rollout s | backward s |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['layers']} | {r['step']:.3f} | {r['peak_mb']:.0f} | "
                     f"{r['trainable'] / 1e6:,.1f}M | {r.get('rollout', 0):.3f} | "
                     f"{r.get('backward', 0):.3f} |")
    for r in results:
        if r.get("left_before_mb"):
            lines.append(f"- {r['layers']} layers: {r['left_before_mb']:.0f} MB were still "
                         "allocated from the depth before (taken off its peak)")
    if len({r["layers"] for r in results}) >= 2:
        for key, unit, fmt in (("step", "s", ".2f"), ("peak_mb", "MB", ".0f"),
                               ("trainable", "params", ".3g")):
            slope, value = extrapolate({r["layers"]: r[key] for r in results}, target)
            if slope <= 0:
                lines.append(f"- {key}: per-layer slope {slope:{fmt}} {unit} is not positive "
                             "(noise, or a warm-up left in the first depth): not extrapolated")
                continue
            lines.append(f"- {key}: {slope:{fmt}} {unit} per text layer; EXTRAPOLATED (linear "
                         f"in layers, not measured) to {target} layers: {value:{fmt}} {unit}")
    else:
        lines.append("- one depth measured: no per-layer extrapolation")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="2,4",
                        help=f"text depths to measure, comma-separated (of {FULL_LAYERS})")
    parser.add_argument("--target_layers", type=int, default=FULL_LAYERS,
                        help="the depth the per-layer slope is extrapolated to")
    parser.add_argument("--tiny", action="store_true",
                        help="CPU smoke: the tiny kit's widths and vocabulary, same path")
    parser.add_argument("--G", type=int, default=4, help="completions per prompt")
    parser.add_argument("--clip_s", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--max_completion_length", type=int, default=128,
                        help="new tokens per completion (short: the step is a memory and "
                             "time probe, not the recipe's 1024)")
    parser.add_argument("--lora_r", type=int, default=64, help="LoRA rank (alpha 2r)")
    parser.add_argument("--steps", type=int, default=1, help="measured steps (median)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="unmeasured steps first, at each depth (the first depth would "
                             "otherwise carry the process's one-off start-up costs)")
    parser.add_argument("--json", default=None, help="also write all figures to this file")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("the real-width thinker needs a CUDA GPU (random weights, no "
                         "download); --tiny runs the harness on CPU")
    depths = sorted({int(x) for x in args.layers.split(",")})
    tokenizer = build_tokenizer("tiny" if args.tiny else "real", family=FAMILY)
    whole = None if args.tiny else qwen3_omni_config(tokenizer)
    print(versions())
    if whole is not None:
        print(f"\n## qwen3_omni_moe (Qwen3-Omni-30B-A3B thinker, config reported, not "
              f"byte-exact): {describe(whole)}")
    label = PeakMemory().label
    results = [run_depth(layers, args, tokenizer) for layers in depths]
    print(f"\n{results[0]['lora']}; G {args.G}, {args.max_completion_length} new tokens, "
          f"{args.clip_s:g} s clips, {'tiny widths (CPU smoke)' if args.tiny else 'bf16'}")
    print(report(results, label, args.target_layers), flush=True)
    everything: dict[str, Any] = {"versions": versions(), "args": vars(args),
                                  "results": results, "extrapolated_to": args.target_layers}
    if len(depths) >= 2:
        everything["extrapolated"] = {
            key: dict(zip(("per_layer", "value"), extrapolate(
                {r["layers"]: r[key] for r in results}, args.target_layers), strict=True))
            for key in ("step", "peak_mb", "trainable")}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=2, default=str)
    return everything


if __name__ == "__main__":
    main()
