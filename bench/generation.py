"""Generation tokens/s: vLLM against HF `generate`, on one model, prompts and clips, in one run.

For each family it builds one model, asks it the same prompts with the same clips, forces the
same number of new tokens on both sides (HF `min_new_tokens` = `max_new_tokens`, vLLM
`min_tokens` = `max_tokens`; stop tokens are suppressed until then), greedy, and prints:

- HF `generate` tokens/s with full logits and with the prefill's LM head on the last position only
  (`local.core.last_logits`), and their ratio (printed as `item 5`: the last-position gain);
- vLLM tokens/s and the vLLM / HF ratios; vLLM's engine start (and export) timed apart;
- greedy agreement: rows whose forced tokens are identical, HF full vs last-position, HF vs vLLM;
- the machine (CPUs or GPU, load average before/after), versions and the git commit.

The evaluation's own prompts, clips (`RecordGenerator`), HF `generate` keywords and vLLM engine,
sampling and requests (`local.eval.vllm_backend`, audio per request) are reused. HF runs first
(one batch of all prompts by default, full and last-position interleaved), then the HF model is
freed and the engine starts; each figure is the median of `--repeats` runs after `--warmup`. On
CPU HF gets as many torch threads as vLLM's CPU worker computes on (`--hf_threads` to change).

Models (bench/generation_models.py): on CPU the recipe's tiny checkpoints, text head_dim 32,
float32, with Qwen's 152k-row vocabulary (`--vocab real`, the default) or ~512 tokens (`tiny`);
`--real_size qwen2_5_omni_3b|qwen2_5_omni_7b|qwen2_audio_7b` (a CUDA GPU): real shapes, bf16,
random weights, vLLM with its own random weights (`load_format="dummy"`), so greedy agreement is
not comparable there. `--dry_run` builds the configs and engine keywords only (no GPU needed).

The CPU ratio is not a GPU prediction and excludes engine start. `--hf_only`: the two HF paths
alone (where vLLM is not installed, e.g. an offline GPU machine running the GPU kit).

Example:
    $ .venv-vllm-cpu/bin/python -m bench.generation                       # CPU, both families
    $ .venv-vllm-cpu/bin/python -m bench.generation --families qwen2_5_omni --prompts 4
    $ .venv-vllm/bin/python -m bench.generation --real_size qwen2_5_omni_7b   # GPU machine
    $ .venv/bin/python -m bench.generation --real_size qwen2_audio_7b --dry_run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.generation_models import FAMILIES, REAL_SIZES, prepared
from local.core.last_logits import last_position_logits
from local.core.records import Record
from local.demo.data import SR, make_items
from local.eval.generation import GenerationSettings, Generator, RecordGenerator
from local.eval.vllm_backend import VLLMGenerator, engine_version
from local.util.gitinfo import code_version


@dataclass
class Timed:
    """One path's runs: seconds per run and the new token ids of the last run."""

    seconds: list[float] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)

    def tokens_per_s(self) -> float:
        return sum(len(row) for row in self.tokens) / statistics.median(self.seconds)


def workload(processor: Any, family: Any, prompts: int, clip_s: float, seed: int = 0
             ) -> tuple[list[str], list[np.ndarray]]:
    """The evaluation's prompts and clips for `prompts` demo items (MMAU-style questions), each
    clip the item's audio repeated to a length between clip_s / 2 and clip_s."""
    maker = RecordGenerator(processor, family)
    texts, clips = [], []
    for i, item in enumerate(make_items(prompts, seed)):
        seconds = clip_s * (0.5 + 0.5 * i / max(prompts - 1, 1))
        record = Record(id=f"bench-{i}", audio=np.resize(item.audio, int(seconds * SR)),
                        sampling_rate=SR, question=item.question, choices=item.choices,
                        answer=item.answer)
        clip, error, _ = maker.clip(record)
        if error:
            raise RuntimeError(f"{record.id}: {error}")
        texts.append(maker.prompt(record, "default"))
        clips.append(clip)
    return texts, clips


def hf_run(generator: Generator, texts: list[str], clips: list[np.ndarray], new: int,
           batch_size: int, last_position: bool) -> tuple[float, list[list[int]]]:
    """Seconds (inputs + generate) and new token ids of one HF pass over all prompts."""
    tokens: list[list[int]] = []
    start = time.perf_counter()
    for at in range(0, len(texts), batch_size):
        inputs = generator.model_inputs(texts[at:at + batch_size], clips[at:at + batch_size])
        cut = last_position_logits(generator.model) if last_position else nullcontext()
        with torch.inference_mode(), cut:
            out = generator.model.generate(**inputs, **generator.kwargs, min_new_tokens=new)
        tokens += out[:, inputs["input_ids"].shape[1]:].tolist()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def vllm_run(generator: VLLMGenerator, texts: list[str], clips: list[np.ndarray], new: int
             ) -> tuple[float, list[list[int]]]:
    """Seconds and new token ids of one vLLM pass (the evaluation backend's requests)."""
    import vllm  # deferred: only the vLLM environment has it

    params = vllm.SamplingParams(**{**generator.sampling, "min_tokens": new})
    start = time.perf_counter()
    outputs = generator.llm.generate(generator.requests(texts, clips), params, use_tqdm=False)
    return time.perf_counter() - start, [list(out.outputs[0].token_ids) for out in outputs]


def measure(runs: dict[str, Any], warmup: int, repeats: int, new: int) -> dict[str, Timed]:
    """Each path `warmup + repeats` times, interleaved (A B A B: load drift hits all alike)."""
    timed = {name: Timed() for name in runs}
    for round_ in range(warmup + repeats):
        for name, run in runs.items():
            seconds, tokens = run()
            if any(len(row) != new for row in tokens):
                raise RuntimeError(f"{name}: not {new} new tokens per row: "
                                   f"{sorted({len(row) for row in tokens})}")
            if round_ >= warmup:
                timed[name].seconds.append(seconds)
                timed[name].tokens = tokens
    return timed


def vllm_cpu_cores() -> int:
    """The cores vLLM's CPU worker computes on: all but one, reserved for its scheduler process
    (vllm/utils/ompmultiprocessing.py, `reserve_cpu_num` = local world size 1 on x86/ARM)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def machine() -> str:
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPUs"
    return f"{len(os.sched_getaffinity(0))} CPUs ({platform.processor() or platform.machine()})"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def versions(vllm: bool = True) -> str:
    import transformers

    text = f"torch {torch.__version__}, transformers {transformers.__version__}"
    return text + (f", {engine_version()}" if vllm else "")


def bench_family(family_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """HF full / last-position, then vLLM (unless --hf_only), on one model."""
    new = args.max_new_tokens
    settings = GenerationSettings(max_new_tokens=new)  # greedy, the evaluation's other defaults
    with prepared(family_name, args, dry=False) as prep:
        texts, clips = workload(prep.loaded.processor, prep.loaded.family, args.prompts,
                                args.clip_s)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        hf = Generator(prep.loaded, settings, device=device)
        batch = args.batch_size or len(texts)
        print(f"\n## {prep.name}\n{len(texts)} prompts, clips {len(clips[0]) / SR:.1f}-"
              f"{len(clips[-1]) / SR:.1f} s, {new} new tokens forced per row, greedy; HF batch "
              f"{batch}, torch threads {torch.get_num_threads()}; load average {load_average()}",
              flush=True)
        timed = measure({
            "hf_full": lambda: hf_run(hf, texts, clips, new, batch, last_position=False),
            "hf_last": lambda: hf_run(hf, texts, clips, new, batch, last_position=True),
        }, args.warmup, args.repeats, new)
        hf.model = hf.loaded = prep.loaded.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        engine_s = None if args.hf_only else time.perf_counter()
        if engine_s is not None:
            import vllm  # deferred: only the vLLM environment has it

            llm = vllm.LLM(**prep.engine)
            engine_s = time.perf_counter() - engine_s
            served = VLLMGenerator(llm, prep.loaded.processor, prep.loaded.family, settings)
            try:
                timed |= measure({"vllm": lambda: vllm_run(served, texts, clips, new)},
                                 args.warmup, args.repeats, new)
            finally:
                served.close()
    return {"name": prep.name, "engine_start_s": engine_s, "export_s": prep.export_s,
            "timed": timed, "load_after": load_average(), "dummy": bool(args.real_size)}


def report(result: dict[str, Any]) -> str:
    timed: dict[str, Timed] = result["timed"]
    rate = {name: t.tokens_per_s() for name, t in timed.items()}
    kind = "GPU" if torch.cuda.is_available() else "CPU"
    labels = {"hf_full": "HF generate, full logits",
              "hf_last": "HF generate, last-position logits (item 5)", "vllm": "vLLM"}
    lines = ["| path | median s | new tokens | tokens/s |", "|---|---|---|---|"]
    for name, t in timed.items():
        lines.append(f"| {labels[name]} | {statistics.median(t.seconds):.3f} | "
                     f"{sum(map(len, t.tokens))} | {rate[name]:.1f} |")
    rows = len(timed["hf_last"].tokens)

    def same(a: str, b: str) -> int:
        return sum(x == y for x, y in zip(timed[a].tokens, timed[b].tokens, strict=True))

    vs_vllm = ("not run (--hf_only)" if "vllm" not in timed else
               "n/a (vLLM loads its own random weights)" if result["dummy"]
               else f"{same('hf_last', 'vllm')}/{rows}")
    scope = ("this card" if kind == "GPU"
             else "this CPU machine and tiny model: not a GPU prediction")
    lines += ["", f"- item 5: HF last-position / full logits "
              f"{rate['hf_last'] / rate['hf_full']:.2f}x ({scope})"]
    if "vllm" in timed:
        lines += [
            f"- vLLM engine start {result['engine_start_s']:.1f} s (export "
            f"{result['export_s']:.1f} s): not in tokens/s",
            f"- **{kind} ratio vLLM / HF: {rate['vllm'] / rate['hf_last']:.2f}x against HF "
            f"with last-position logits, {rate['vllm'] / rate['hf_full']:.2f}x against full "
            f"logits** ({scope}; engine start excluded)"]
    lines += [f"- greedy agreement (rows with all forced tokens identical): HF full vs "
              f"last-position {same('hf_full', 'hf_last')}/{rows}, HF vs vLLM {vs_vllm}",
              f"- load average after: {result['load_after']}"]
    return "\n".join(lines)


def dry_run(args: argparse.Namespace) -> dict[str, Any]:
    """Configs and engine keywords of every model, nothing allocated, vLLM not started."""
    plans = {}
    for family_name in ([args.real_size] if args.real_size else args.families.split(",")):
        with prepared(family_name, args, dry=True) as prep:
            plans[family_name] = {"name": prep.name, "engine": prep.engine}
            print(f"{prep.name}\n  vllm.LLM({prep.engine})")
    return plans


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="qwen2_audio,qwen2_5_omni",
                        help=f"comma-separated, from {sorted(FAMILIES)}")
    parser.add_argument("--real_size", choices=REAL_SIZES, default=None,
                        help="GPU: real shapes, random weights, bf16 (vLLM: dummy weights)")
    parser.add_argument("--vocab", choices=["real", "tiny"], default="real",
                        help="tiny checkpoints: Qwen's 152k-row vocabulary or ~512 tokens")
    parser.add_argument("--dtype", default="float32", help="tiny checkpoints (both sides)")
    parser.add_argument("--prompts", type=int, default=None, help="default 8 (CPU), 32 (real)")
    parser.add_argument("--clip_s", type=float, default=10.0,
                        help="longest clip in seconds (clips from half that up)")
    parser.add_argument("--max_new_tokens", type=int, default=None,
                        help="forced new tokens per row; default 32 (CPU), 256 (real)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="HF prompts per generate call (default: all)")
    parser.add_argument("--max_model_len", type=int, default=None,
                        help="vLLM context; default 2048 (tiny), the model's (real size)")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per path (median)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first")
    parser.add_argument("--hf_threads", type=int, default=None,
                        help="torch threads for HF on CPU; default: the cores vLLM's CPU worker "
                             "computes on (all but the one it reserves)")
    parser.add_argument("--hf_only", action="store_true",
                        help="the two HF paths only (no vLLM needed): the last-position "
                             "logits' gain over full logits")
    parser.add_argument("--dry_run", action="store_true",
                        help="build configs and engine keywords only (no model, no vLLM)")
    parser.add_argument("--json", default=None, help="also write all figures to this file")
    args = parser.parse_args(argv)
    unknown = set(args.families.split(",")) - set(FAMILIES)
    if unknown:
        parser.error(f"--families: unknown {sorted(unknown)}; from {sorted(FAMILIES)}")
    args.prompts = args.prompts or (32 if args.real_size else 8)
    args.max_new_tokens = args.max_new_tokens or (256 if args.real_size else 32)
    if not args.real_size and args.max_model_len is None:
        args.max_model_len = 2048
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.dry_run:
        return dry_run(args)
    if args.real_size and not torch.cuda.is_available():
        raise SystemExit("--real_size needs a CUDA GPU (random weights, no download); "
                         "--dry_run checks its configs here")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the figures, not the engine's log
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; else a share of host RAM
        torch.set_num_threads(args.hf_threads or vllm_cpu_cores())
    print(f"machine: {machine()}; load average {load_average()}\n"
          f"{versions(vllm=not args.hf_only)}\n"
          f"commit {code_version()}; VLLM_CPU_KVCACHE_SPACE="
          f"{os.environ.get('VLLM_CPU_KVCACHE_SPACE', '-')}", flush=True)
    results = {}
    for family_name in [args.real_size] if args.real_size else args.families.split(","):
        result = bench_family(family_name, args)
        print("\n" + report(result), flush=True)
        results[family_name] = result
    print(f"\nload average at the end: {load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "versions": versions(vllm=not args.hf_only),
                       "commit": code_version(),
                       "machine": machine(), "results": results}, f, indent=2,
                      default=lambda o: o.__dict__)
    return results


if __name__ == "__main__":
    main()
