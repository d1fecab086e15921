"""What one vLLM weight sync costs on the HF side with LoRA: `merged_state(model)` fully consumed.

With `use_vllm` and PEFT, every weight sync reads the policy's merged weights through
`local.train.lora_merge.merged_state` (out of place: each adapted Linear's weight is summed in
fp32 and rounded once, the base never written). This bench builds the thinker with random
weights (no download), wraps it with peft LoRA on `--targets` (default q_proj k_proj v_proj
o_proj, the planner's hint; PEFT matches the names in every tower, as train.py's
`--lora_target_modules` would), and times the generator consumed to its end, tensor by tensor
(on a GPU with a synchronize after the last), median of `--repeats` after `--warmup`, with the
peak memory it adds over the model (CUDA: max_memory_allocated over the allocated base; CPU:
peak RSS over the base). For context it times peft's own in-place path, TRL 1.16's sync:
`merge_adapter()`, every parameter read, `unmerge_adapter()`.

Real sizes (`--real_size qwen2_5_omni_7b|qwen2_5_omni_3b`, bf16) need a CUDA GPU; `--scaled`
builds bench/models.py's small `scaled_omni7b` on the CPU (seconds; what the tests run).

Example:
    $ .venv/bin/python -m bench.lora_merge --scaled --repeats 3 --json /tmp/lora_merge.json
    $ python -m bench.lora_merge --real_size qwen2_5_omni_7b --lora_r 64 --json OUT  # GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from bench.models import REAL_SHAPES, build_config, build_model, describe
from bench.timing import PeakMemory
from local.demo.tokenizers import build_tokenizer
from local.train.lora_merge import merged_state

TARGETS = "q_proj k_proj v_proj o_proj"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def consume(model: Any) -> tuple[int, int]:
    """Read every merged tensor once, as a sync does: (tensors, bytes)."""
    count = size = 0
    for _, tensor in merged_state(model):
        count += 1
        size += tensor.numel() * tensor.element_size()
    _sync()
    return count, size


def peft_in_place(model: Any) -> tuple[int, int]:
    """TRL 1.16's path: merge in place, read every parameter, unmerge."""
    model.merge_adapter()
    count = size = 0
    for name, param in model.named_parameters():
        if "lora_" not in name:
            count += 1
            size += param.numel() * param.element_size()
    model.unmerge_adapter()
    _sync()
    return count, size


def timed(fn: Callable[[Any], tuple[int, int]], model: Any, warmup: int,
          repeats: int) -> dict[str, Any]:
    """Median seconds of `fn(model)` over `repeats` (after `warmup`) and the memory it adds."""
    for _ in range(warmup):
        fn(model)
    base = torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    times, memory = [], PeakMemory()
    with memory.track():
        for _ in range(repeats):
            start = time.perf_counter()
            tensors, size = fn(model)
            times.append(time.perf_counter() - start)
    extra = memory.peak_mb - (base if torch.cuda.is_available() else memory.base_mb)
    return {"median_s": statistics.median(times), "times_s": times, "tensors": tensors,
            "bytes": size, "peak_extra_mb": max(extra, 0.0)}


def build(kind: str, r: int, alpha: int, targets: list[str], device: str,
          dtype: torch.dtype) -> tuple[Any, str, int]:
    """The random-weight thinker of `kind` with LoRA: (model, description, adapted layers)."""
    config, _ = build_config(kind, build_tokenizer("tiny" if kind == "scaled_omni7b" else "real"))
    model = build_model(config, dtype=dtype, device=device)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                             target_modules=targets, init_lora_weights=False))
    layers = sum(1 for name, _ in model.named_modules() if name.endswith(".lora_A"))
    return model, describe(config), layers


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real_size", choices=sorted(REAL_SHAPES), default="qwen2_5_omni_7b")
    parser.add_argument("--scaled", action="store_true",
                        help="bench/models.py's scaled_omni7b on the CPU instead (tests)")
    parser.add_argument("--lora_r", type=int, default=64)
    parser.add_argument("--lora_alpha", type=int, default=128)
    parser.add_argument("--targets", default=TARGETS, help="LoRA target module names")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--no_peft_compare", action="store_true",
                        help="skip timing peft's merge_adapter/unmerge_adapter")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available()
    if not args.scaled and not gpu:
        raise SystemExit("--real_size needs a CUDA GPU (random weights, no download); "
                         "--scaled runs a small model on the CPU")
    kind = "scaled_omni7b" if args.scaled else args.real_size
    device, dtype = ("cuda" if gpu else "cpu"), torch.bfloat16
    start = time.perf_counter()
    model, about, layers = build(kind, args.lora_r, args.lora_alpha, args.targets.split(),
                                 device, dtype)
    built_s = time.perf_counter() - start
    card = torch.cuda.get_device_name(0) if gpu else "CPU"
    print(f"## LoRA merge: {kind} ({about}), bf16 on {card}; LoRA r {args.lora_r} on "
          f"{args.targets} ({layers} layers); built in {built_s:.0f} s")
    result: dict[str, Any] = {"model": kind, "about": about, "device": card, "dtype": "bfloat16",
                              "args": vars(args), "lora_layers": layers, "build_s": built_s}
    with torch.no_grad():
        result["merged_state"] = timed(consume, model, args.warmup, args.repeats)
        if not args.no_peft_compare:
            result["peft_in_place"] = timed(peft_in_place, model, args.warmup, args.repeats)
    for key, what in (("merged_state", "merged_state, fully consumed"),
                      ("peft_in_place", "peft merge_adapter + read + unmerge_adapter")):
        if key in result:
            r = result[key]
            print(f"- {what}: {r['median_s']:.3f} s median of {args.repeats} "
                  f"({min(r['times_s']):.3f}-{max(r['times_s']):.3f}), {r['tensors']} tensors, "
                  f"{r['bytes'] / 2**30:.2f} GiB, peak extra {r['peak_extra_mb']:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
