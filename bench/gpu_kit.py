"""GPU kit: one run on a bare GPU machine measures, in this order of priority, (1) the planner
against a measured peak (`plan_<model>`: local.train.plan's JSON for the step bench's setting,
beside the real-size GRPO step's peak CUDA allocation), (2) the step time of the recipe's default
(`--encoder trained`) on Omni-7B, then Omni-3B (random weights), (3) the HF side of a LoRA
weight sync (bench/lora_merge.py), then, as the budget allows, a Qwen3-Omni-30B-A3B LoRA GRPO step
at 2 and 4 of its 48 text layers with the per-layer extrapolation to 48 (bench/grpo_moe.py;
config reported, not byte-exact), the `gpu` tests and vLLM vs HF generation tokens/s; it appends
the figures, the card and the versions to bench/RESULTS.md.

It is meant for a GPU machine without network access whose Python has other versions of
torch/transformers than the recipe's: what it lacks comes as wheels in .gpu-wheels
(bench/gpu_wheels.py gathers them on a machine with network), installed with
`pip install --no-index` into a folder put first on PYTHONPATH. torch stays the machine's CUDA
build; vLLM (its CUDA wheel is hundreds of MB) runs only where it already imports, else the
generation part measures the two HF paths alone (`--hf_only`) and says so. Each part has its own
timeout, cut to what the budget has left; the caps of the priority parts fit the budget together
(`PRIORITY`); a part that fails or times out is recorded as such and the next one runs.
RESULTS.md is written atomically, and copied to --out with the log and each part's output;
bring that copy back over bench/RESULTS.md of your checkout.

    $ .venv/bin/python -m bench.gpu_wheels          # with network: gather the wheels
    $ .venv/bin/python -m bench.gpu_kit --dry_run   # the commands, the wheels checked
    $ python3 -m bench.gpu_kit --out /path/to/out   # on the GPU machine (bench/README.md)
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import gpu_wheels
from bench.gpu_kit_report import render, versions, write_atomically
from local.util.gitinfo import code_version

REPO = Path(__file__).resolve().parents[1]
REAL = ("qwen2_5_omni_3b", "qwen2_5_omni_7b")
STEP_MODELS = ("qwen2_5_omni_7b", "qwen2_5_omni_3b")  # the order the kit steps them
RESERVE_S = 15.0  # of the budget, for the report
# Parts whose caps must fit the default budget together (less the reserve), in order.
PRIORITY = ("install", "check", "plan_qwen2_5_omni_7b", "grpo_qwen2_5_omni_7b",
            "grpo_qwen2_5_omni_3b", "plan_qwen2_5_omni_3b", "lora_merge")
CLIP_S = 10.0  # bench/grpo_step.py's default clip: the planner's --audio_seconds
LORA_TARGETS = "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"  # grpo_step's 7B LoRA
MOE_PART = "grpo_qwen3_omni_moe"  # bench/grpo_moe.py: after the priorities, as the budget allows
MOE_LAYERS = "2,4"  # of the thinker's 48 text layers; the slope between them is extrapolated
MOE_NEW_TOKENS = 128  # short completions: a memory and time probe, not the recipe's 1024


@dataclass
class Part:
    """One command of the kit: its own timeout (`cap_s`), and the least budget worth starting it
    with (`needs_s`)."""

    name: str
    argv: list[str]
    cap_s: float
    needs_s: float
    note: str = ""


@dataclass
class Outcome:
    name: str
    status: str  # passed | failed (exit N) | timed out after N s | not run: why
    seconds: float = 0.0
    output: list[str] = field(default_factory=list)


def gpu_test_files() -> list[str]:
    """The test modules that mark tests gpu: collecting only them keeps modules that import what
    the device lacks (deepspeed, vllm) out of the run."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                  if "mark.gpu" in p.read_text()) or ["tests"]


def plan_argv(model: str, config_dir: str, json_out: str, new_tokens: int) -> list[str]:
    """local.train.plan's arguments for the step bench's setting on one card without DeepSpeed:
    conf/grpo.yaml's batch (4 completions per micro-step, grad-accum 2), the encoder trained,
    gradient checkpointing, HF generate, 10 s clips; 7B with grpo_step's LoRA (r 64)."""
    argv = ["--model", config_dir, "--config", "conf/grpo.yaml", "--deepspeed", "none",
            "--nproc", "1", "--nnodes", "1", "--gpu_memory_gb", "80",
            "--audio_seconds", f"{CLIP_S:g}", "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "2", "--num_generations", "4",
            "--max_completion_length", str(new_tokens), "--gradient_checkpointing", "true",
            "--bf16", "true", "--freeze_audio_encoder", "false", "--use_vllm", "false"]
    if model == "qwen2_5_omni_7b":
        argv += ["--use_peft", "true", "--lora_r", "64", "--lora_alpha", "128",
                 "--lora_target_modules", *LORA_TARGETS.split()]
    return [*argv, "--json", json_out]


def plan_check(model: str, out: Path, new_tokens: int) -> int:
    """Write the bench's real-size config (bench/models.py) where the planner reads it, then
    plan: the planner and the step bench describe the same model. 0 when the JSON is written
    (the plan fits or not), else the planner's exit status."""
    # deferred: the kit itself runs before the install part (no transformers/trl yet)
    from bench.models import build_config  # deferred: see above
    from local.demo.tokenizers import build_tokenizer  # deferred: see above
    from local.train import plan  # deferred: see above

    folder = out / "model_configs" / model
    build_config(model, build_tokenizer("real"))[0].save_pretrained(folder)
    json_out = out / f"plan_{model}.json"
    argv = plan_argv(model, str(folder), str(json_out), new_tokens)
    print(f"python -m local.train.plan {shlex.join(argv)}", flush=True)
    rc = plan.main(argv)
    return 0 if json_out.is_file() and rc in (plan.EXIT_FITS, plan.EXIT_DOES_NOT_FIT) else rc or 1


def parts(args: argparse.Namespace, py: str = sys.executable) -> list[Part]:
    """The kit's commands, in order: the priorities first (PRIORITY), then what budget remains."""
    out, wheels = Path(args.out), Path(args.wheels)
    found = sorted(str(w) for w in wheels.glob("*.whl"))
    bench = ["--G", "4", "--steps", str(args.bench_steps), "--warmup", str(args.bench_warmup),
             "--max_completion_length", str(args.new_tokens), "--encoder", "trained"]

    def planned(model: str) -> Part:
        return Part(f"plan_{model}", [py, "-m", "bench.gpu_kit", "--plan_check", model,
                                      "--out", str(out), "--new_tokens", str(args.new_tokens)],
                    40 if model == "qwen2_5_omni_7b" else 30, 10,
                    note="planner (CPU): python -m local.train.plan " + shlex.join(plan_argv(
                        model, str(out / "model_configs" / model),
                        str(out / f"plan_{model}.json"), args.new_tokens)))

    def step(model: str, cap: float) -> Part:
        return Part(f"grpo_{model}", [py, "-m", "bench.grpo_step", "--real_size", model, *bench,
                                      "--json", str(out / f"grpo_{model}.json")], cap, 60,
                    note="the recipe's default: audio encoder trained")

    return [
        Part("install", [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                         "--no-compile", "--no-cache-dir", "--upgrade", "--target", args.site,
                         *found], 45, 10),
        Part("check", [py, "-m", "bench.gpu_wheels", "--check", str(wheels)], 30, 10,
             note="carried needs met? versions, vllm importable?"),
        planned("qwen2_5_omni_7b"),
        step("qwen2_5_omni_7b", 150),
        step("qwen2_5_omni_3b", 110),
        planned("qwen2_5_omni_3b"),
        Part("lora_merge", [py, "-m", "bench.lora_merge", "--real_size", "qwen2_5_omni_7b",
                            "--lora_r", "64", "--json", str(out / "lora_merge.json")], 60, 20,
             note="merged_state fully consumed: the HF side of each vLLM weight sync"),
        Part(MOE_PART, [py, "-m", "bench.grpo_moe", "--layers", MOE_LAYERS,
                        "--max_completion_length", str(MOE_NEW_TOKENS), "--warmup", "1",
                        "--steps", "1", "--json", str(out / f"{MOE_PART}.json")], 150, 90,
             note="Qwen3-Omni-30B-A3B thinker (config reported, not byte-exact), the family's "
                  f"LoRA r 64, {MOE_LAYERS} of 48 text layers measured, 48 EXTRAPOLATED"),
        Part("gpu_tests", [py, "-m", "pytest", "-m", "gpu", *gpu_test_files(), "-q", "-rA",
                           "-p", "no:cacheprovider", "--continue-on-collection-errors",
                           "--junitxml", str(out / "gpu_tests.xml")], 150, 30),
        Part("generation", [py, "-m", "bench.generation", "--real_size", args.generation_model,
                            "--warmup", "1", "--repeats", "1",
                            "--json", str(out / "generation.json")], 180, 45,
             note="vLLM vs HF; HF only where vllm does not import"),
    ]


def selected(kit: list[Part], only: str | None) -> list[Part]:
    """The parts named in `only` (comma-separated), with install and check always kept (nothing
    imports without them); all parts without it."""
    if not only:
        return kit
    names = {"install", "check", *only.split(",")}
    unknown = names - {p.name for p in kit}
    if unknown:
        raise SystemExit(f"--only: no part {', '.join(sorted(unknown))}; the parts: "
                         f"{', '.join(p.name for p in kit)}")
    return [p for p in kit if p.name in names]


def run_part(part: Part, timeout_s: float, env: dict[str, str], log: Path) -> Outcome:
    """Run one part in its own process group, its output to the console and `log`; killed with
    its children at `timeout_s`."""
    start = time.monotonic()
    lines: list[str] = []
    with log.open("a") as sink:
        sink.write(f"\n===== {part.name}: {shlex.join(part.argv)} (timeout {timeout_s:.0f} s)\n")
        sink.flush()
        proc = subprocess.Popen(part.argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def pump() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                sys.stdout.write(line)
                sink.write(line)
                lines.append(line.rstrip("\n"))
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        reader.join(timeout=10)
    seconds = time.monotonic() - start
    status = ("passed" if rc == 0 else f"timed out after {timeout_s:.0f} s" if rc is None
              else f"failed (exit {rc})")
    return Outcome(part.name, status, seconds, lines)


def commit() -> str:
    """The checkout's commit; without git (a copy on the GPU machine), the one the dry run
    recorded."""
    got = code_version()
    if got != "unknown":
        return got
    recorded = REPO / ".gpu-wheels" / "COMMIT"
    return recorded.read_text().strip() + " (recorded by the dry run)" if recorded.is_file() \
        else "unknown"


def card() -> str:
    got = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"], text=True, capture_output=True) \
        if shutil.which("nvidia-smi") else None
    return got.stdout.strip().replace("\n", "; ") if got and got.returncode == 0 else "no GPU"


def dry_run(args: argparse.Namespace) -> int:
    """Print every command; check the wheel folder (one version each, the size limit, its
    manifest); record the commit for a copy on the GPU machine, which has no git."""
    for part in selected(parts(args), args.only):
        print(f"[{part.name}] (timeout {part.cap_s:.0f} s, cut to the budget left"
              f"{'; ' + part.note if part.note else ''})\n  {shlex.join(part.argv)}")
    print(f"then: RESULTS section appended to {args.results} (atomically), copied to {args.out}")
    wheels = Path(args.wheels)
    size, tree, problems = gpu_wheels.folder_report(wheels)
    manifest = wheels / gpu_wheels.MANIFEST
    if not manifest.is_file():
        problems.append(f"{manifest}: missing (run: python -m bench.gpu_wheels)")
    print(f"wheels: {len(list(wheels.glob('*.whl')))} in {wheels}, {size / 2**20:.1f} MiB; "
          f"working tree {tree / 2**20:.1f} MiB; carry limit "
          f"{gpu_wheels.CARRY_LIMIT / 2**20:.0f} MiB")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if not problems:
        (wheels / "COMMIT").write_text(commit().split(" ")[0] + "\n")
    return 1 if problems else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry_run", action="store_true")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "exp" / "gpu_kit"))
    parser.add_argument("--wheels", default=str(REPO / ".gpu-wheels"))
    parser.add_argument("--site", default="/tmp/gpu-kit-site", help="where the wheels install")
    parser.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--budget_s", type=float, default=480, help="the whole kit (8 minutes)")
    parser.add_argument("--bench_steps", type=int, default=1, help="measured GRPO steps")
    parser.add_argument("--bench_warmup", type=int, default=0, help="unmeasured GRPO steps")
    parser.add_argument("--new_tokens", type=int, default=1024, help="per completion (recipe)")
    parser.add_argument("--generation_model", choices=REAL, default=REAL[0])
    parser.add_argument("--only", default=None,
                        help="comma-separated part names to run (install and check always run),"
                             " e.g. grpo_qwen3_omni_moe, which the default budget reaches only "
                             "where the priority parts end early")
    parser.add_argument("--plan_check", choices=REAL, default=None,
                        help="(a kit part) write the model's config under --out and plan it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.plan_check:
        return plan_check(args.plan_check, Path(args.out), args.new_tokens)
    if args.dry_run:
        return dry_run(args)
    start, out = time.monotonic(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu_kit.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.site, str(REPO)]),
           "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    reserve = RESERVE_S
    outcomes: list[Outcome] = []
    for part in selected(parts(args), args.only):
        left = args.budget_s - (time.monotonic() - start) - reserve
        hf_only = part.name == "generation" and not versions(outcomes).get("vllm_imports")
        if hf_only:  # vLLM's CUDA wheel is too large to carry: HF's two paths (item 5) only
            part = replace(part, argv=[*part.argv, "--hf_only"])
        if left < part.needs_s:
            outcomes.append(Outcome(part.name, f"not run: {left:.0f} s of the budget left"))
        else:
            outcomes.append(run_part(part, min(part.cap_s, left), env, log))
            if hf_only:
                outcomes[-1].status += " (HF only: vllm does not import here; see versions)"
        print(f"[gpu_kit] {part.name}: {outcomes[-1].status} ({outcomes[-1].seconds:.0f} s)",
              flush=True)
        if part.name == "install" and outcomes[-1].status != "passed":
            break  # nothing else can import
    section = render(outcomes, out, card=card(), commit=commit(),
                     date=datetime.date.today().isoformat(),
                     total_s=time.monotonic() - start, budget_s=args.budget_s,
                     settings=f"G 4, {args.new_tokens} new tokens, {args.bench_warmup} warm-up "
                              f"+ {args.bench_steps} measured step(s), audio encoder trained")
    results = Path(args.results)
    write_atomically(results, results.read_text() + "\n" + section if results.is_file()
                     else section)
    shutil.copyfile(results, out / "RESULTS.md")
    print(section)
    return 1 if any(o.status.startswith(("failed", "timed out")) for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
