"""Evaluate a run's starting model (step 0) and its checkpoints, then one summary across them.

The single call behind `run.sh --stage mmau|mmsu`. Steps: 0 = `--model`, N = `<run_dir>/
checkpoint-N` (all of them, or those named by `--checkpoints "100 200"`). Each step writes
`<run_dir>/eval/<bench>/<step>/` through the benchmark's evaluator (resumable: a finished step
only re-merges its logs); rank 0 then writes `summary.md` and `summary.png`. Arguments after `--`
go to the evaluator unchanged. Under torchrun every rank runs the same loop.

Example:
    $ python -m local.eval_steps --bench mmau --model Qwen/Qwen2.5-Omni-7B --run_dir exp/grpo \\
        -- --mmau_json data/mmau/mmau-test-mini.json --mmau_audio_dir data/mmau/test-mini-audios
"""

from __future__ import annotations

import argparse
import gc
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from local import eval_mmau, eval_mmsu
from local.eval_summary import write_summary
from local.inference import init_distributed

logger = logging.getLogger(__name__)
EVALUATORS = {"mmau": eval_mmau.main, "mmsu": eval_mmsu.main}
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def steps(model: str, run_dir: Path, checkpoints: str = "") -> list[tuple[int, str]]:
    """(step, model path) pairs: the starting model first, then checkpoints by step."""
    if checkpoints.strip():
        wanted = [int(s) for s in checkpoints.replace(",", " ").split()]
        found = {s: run_dir / f"checkpoint-{s}" for s in wanted}
        missing = [str(p) for p in found.values() if not p.is_dir()]
        if missing:
            raise SystemExit(f"--checkpoints: {', '.join(missing)} not found; list the saved "
                             f"ones with `ls {run_dir}`.")
    else:
        found = {int(m.group(1)): p for p in run_dir.glob("checkpoint-*")
                 if p.is_dir() and (m := _CHECKPOINT.match(p.name))}
    return [(0, model), *((s, str(found[s])) for s in sorted(found) if s != 0)]


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Run the loop; rank 0 returns the summary's path."""
    argv = list(argv) if argv is not None else None
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, choices=sorted(EVALUATORS))
    parser.add_argument("--model", required=True, help="starting model (step 0): path or hub id")
    parser.add_argument("--run_dir", type=Path, required=True, help="e.g. exp/grpo")
    parser.add_argument("--checkpoints", default="",
                        help='steps to evaluate, e.g. "100 200" (default: every checkpoint-N)')
    parser.add_argument("evaluator_args", nargs=argparse.REMAINDER,
                        help="after --: options for evaluate_<bench>.py")
    args = parser.parse_args(argv)
    rest = args.evaluator_args
    rest = rest[1:] if rest[:1] == ["--"] else rest
    dist = init_distributed()
    eval_dir = args.run_dir / "eval" / args.bench
    plan = steps(args.model, args.run_dir, args.checkpoints)
    if dist.is_main:
        logging.basicConfig(level=logging.INFO, force=True)
        logger.info("%s: steps %s -> %s", args.bench, [s for s, _ in plan], eval_dir)
    for step, model in plan:
        EVALUATORS[args.bench](["--model", model, "--out_dir", str(eval_dir / str(step)), *rest])
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if not dist.is_main:
        return None
    return write_summary(eval_dir)


if __name__ == "__main__":
    main()
