"""GPU kit: one run on a bare GPU machine does the `gpu` tests, the real-size GRPO step bench
(Omni-3B and Omni-7B, random weights) and vLLM vs HF generation tokens/s inside one time budget,
then appends the figures, the card and the versions to bench/RESULTS.md.

It is meant for a GPU machine without network access whose Python has other versions of
torch/transformers than the recipe's: what it lacks comes as wheels in .gpu-wheels
(bench/gpu_wheels.py gathers them on a machine with network), installed with
`pip install --no-index` into a folder put first on PYTHONPATH. torch stays the machine's CUDA
build; vLLM (its CUDA wheel is hundreds of MB) runs only where it already imports, else the
generation part measures the two HF paths alone (`--hf_only`) and says so. Each part has its own
timeout, cut to what the budget has left; a part that fails or times out is recorded as such and
the next one runs. RESULTS.md is written atomically, and copied to --out with the log and each
part's output; bring that copy back over bench/RESULTS.md of your checkout.

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


def parts(args: argparse.Namespace, py: str = sys.executable) -> list[Part]:
    """The kit's commands, in order."""
    out, wheels = Path(args.out), Path(args.wheels)
    found = sorted(str(w) for w in wheels.glob("*.whl"))
    bench = ["--G", "4", "--steps", str(args.bench_steps), "--warmup", str(args.bench_warmup),
             "--max_completion_length", str(args.new_tokens)]
    return [
        Part("install", [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                         "--no-compile", "--no-cache-dir", "--upgrade", "--target", args.site,
                         *found], 90, 10),
        Part("check", [py, "-m", "bench.gpu_wheels", "--check", str(wheels)], 90, 10,
             note="carried needs met? versions, vllm importable?"),
        Part("gpu_tests", [py, "-m", "pytest", "-m", "gpu", *gpu_test_files(), "-q", "-rA",
                           "-p", "no:cacheprovider", "--continue-on-collection-errors",
                           "--junitxml", str(out / "gpu_tests.xml")], 150, 30),
        *[Part(f"grpo_{kind}", [py, "-m", "bench.grpo_step", "--real_size", kind, *bench,
                                "--json", str(out / f"grpo_{kind}.json")], 200, 60)
          for kind in REAL],
        Part("generation", [py, "-m", "bench.generation", "--real_size", args.generation_model,
                            "--warmup", "1", "--repeats", "1",
                            "--json", str(out / "generation.json")], 180, 45,
             note="vLLM vs HF; HF only where vllm does not import"),
    ]


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
    for part in parts(args):
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.dry_run:
        return dry_run(args)
    start, out = time.monotonic(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu_kit.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.site, str(REPO)]),
           "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    reserve = 15.0  # for the report
    outcomes: list[Outcome] = []
    for part in parts(args):
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
                              f"+ {args.bench_steps} measured step(s)")
    results = Path(args.results)
    write_atomically(results, results.read_text() + "\n" + section if results.is_file()
                     else section)
    shutil.copyfile(results, out / "RESULTS.md")
    print(section)
    return 1 if any(o.status.startswith(("failed", "timed out")) for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
