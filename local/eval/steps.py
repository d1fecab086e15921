"""Evaluate a run's starting model (step 0) and its checkpoints, then one summary across them.

The single call behind `run.sh --stage mmau|mmsu|mmar`. Steps: 0 = `--model`, N = `<run_dir>/
checkpoint-N` (every one whose save finished, or those named by `--checkpoints "100 200"`;
`local.runs.checkpoints.checkpoint_problem` decides, the rule `evaluate_*.py --model` applies
too, and each checkpoint passed over is logged with why: interrupted or still being written,
weights cut short).
Each step runs what `python evaluate_<bench>.py --model M --out_dir <run_dir>/eval/<bench>/<step>
ARGS` runs, `local.eval.runner.evaluate` with the registered benchmark (resumable: a finished
step only re-merges its logs), in this process, so one torchrun launch serves every step; rank 0
then writes `summary.md` and `summary.png`. Arguments after `--` go to the evaluator unchanged.
`--bench` takes any benchmark of `local.eval.benchmarks` (a new module there is enough). A
benchmark whose answers are withheld (`mmau_test`, the full MMAU test) predicts one model only,
the step `--checkpoints` names, else the run's newest checkpoint, else `--model`, and writes its
submission file (no summary).

`--with_no_audio` also evaluates step 0 and the last step with `--no_audio` (the text-only
ablation: no audio part in the prompt, no audio features), into `<step>-no_audio/`
(`local.runs.layout.no_audio_dir`), after the steps with audio; the summary then shows
accuracy with audio, without and the difference (`local.eval.summary`).

The summary is titled by `--title`, else by the question set's name (`-- --set_title X`, which
also names results.json and results.md; default the benchmark's); each `--note TEXT` is a line
under the title (e.g. "step 0 evaluated with --model X although the run was trained from Y").

Example:
    $ python -m local.eval.steps --bench mmau --model Qwen/Qwen2.5-Omni-7B --run_dir exp/grpo \\
        --with_no_audio -- --mmau_json data/mmau/mmau-test-mini.json \\
        --mmau_audio_dir data/mmau/test-mini-audios
"""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from local.eval.benchmarks.base import registered
from local.eval.runner import evaluate, setup_logging
from local.eval.summary import write_summary
from local.runs.checkpoints import evaluable_checkpoints
from local.runs.layout import bench_dir, checkpoint_dir, no_audio_dir, step_dir
from local.util.dist import init_distributed

logger = logging.getLogger(__name__)


def steps(model: str, run_dir: Path, checkpoints: str = "", *, quiet: bool = False
          ) -> list[tuple[int, str]]:
    """(step, model path) pairs: the starting model first, then checkpoints by step.

    Only checkpoints that may be evaluated are taken (`local.runs.checkpoints.
    checkpoint_problem`, the rule `evaluate_*.py --model` applies too: weights, the trainer
    state the HF Trainer writes last, weight files not cut short); each other one is passed over
    with one warning line saying why (none with `quiet`: ranks other than 0), or refused when
    `checkpoints` names it.
    """
    found, skipped = evaluable_checkpoints(run_dir)
    if checkpoints.strip():
        wanted = [int(s) for s in checkpoints.replace(",", " ").split()]
        bad = [skipped.get(s, f"{checkpoint_dir(run_dir, s)} not found")
               for s in wanted if s not in found and s != 0]  # 0: the starting model
        if bad:
            raise SystemExit(f"--checkpoints: {'; '.join(bad)}. List the saved ones with "
                             f"`ls {run_dir}`.")
        found = {s: found[s] for s in wanted if s != 0}
    elif not quiet:
        for problem in skipped.values():
            logger.warning("skipped: %s", problem)
    return [(0, model), *((s, str(found[s])) for s in sorted(found) if s != 0)]


def one_model(plan: Sequence[tuple[int, str]], checkpoints: str, title: str) -> tuple[int, str]:
    """The one model an unscored benchmark (the full MMAU test) predicts: the step named by
    `checkpoints` (one step), else the run's newest evaluable checkpoint, else step 0."""
    wanted = [int(s) for s in checkpoints.replace(",", " ").split()]
    if not wanted:
        return plan[-1]
    if len(wanted) != 1:
        raise SystemExit(f"--checkpoints: {title} evaluates one model (a submission file); "
                         f"name one step (0: the starting model), not {wanted}.")
    return next(entry for entry in plan if entry[0] == wanted[0])


def evaluations(plan: Sequence[tuple[int, str]], eval_dir: Path, with_no_audio: bool = False
                ) -> list[tuple[int, str, Path, list[str]]]:
    """(step, model, out_dir, extra evaluator options) for every evaluation of `plan`: each step
    with audio into `<eval_dir>/<step>`, then, `with_no_audio`, step 0 and the last step with
    `--no_audio` into `no_audio_dir` (once if they are the same step)."""
    runs = [(step, model, step_dir(eval_dir, step), []) for step, model in plan]
    if with_no_audio:
        ends = dict([plan[0], plan[-1]])  # a plan of step 0 alone gives one text-only run
        runs += [(step, model, no_audio_dir(eval_dir, step), ["--no_audio"])
                 for step, model in ends.items()]
    return runs


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Run the loop; rank 0 returns the summary's path."""
    argv = list(argv) if argv is not None else None
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchmarks = registered()
    parser.add_argument("--bench", required=True, choices=sorted(benchmarks))
    parser.add_argument("--model", required=True, help="starting model (step 0): path or hub id")
    parser.add_argument("--run_dir", type=Path, required=True, help="e.g. exp/grpo")
    parser.add_argument("--checkpoints", default="",
                        help='steps to evaluate, e.g. "100 200" (default: every checkpoint-N)')
    parser.add_argument("--with_no_audio", action="store_true",
                        help="also evaluate step 0 and the last step with --no_audio (text "
                        "only) into <step>-no_audio/; the summary shows the difference")
    parser.add_argument("--title", default=None,
                        help="title of summary.md/png (default: '<set> across steps (<dir>)', "
                        "<set> the --set_title given to the evaluator after --, else the "
                        "benchmark's name)")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="a line shown under summary.md's title (repeatable), e.g. 'step 0 "
                        "evaluated with --model X although the run was trained from Y'")
    parser.add_argument("evaluator_args", nargs=argparse.REMAINDER,
                        help="after --: options for evaluate_<bench>.py")
    args = parser.parse_args(argv)
    rest = args.evaluator_args
    rest = rest[1:] if rest[:1] == ["--"] else rest
    if args.with_no_audio and "--no_audio" in rest:
        parser.error("--with_no_audio compares runs with and without audio, so the evaluator "
                     "options after -- must not hold --no_audio")
    benchmark = benchmarks[args.bench]
    if not benchmark.scored and args.with_no_audio:
        parser.error(f"--with_no_audio compares accuracies, and {benchmark.title} is not scored "
                     "here (answers withheld)")
    dist = init_distributed()
    setup_logging(dist)
    eval_dir = bench_dir(args.run_dir, args.bench)
    plan = steps(args.model, args.run_dir, args.checkpoints, quiet=not dist.is_main)
    if not benchmark.scored:
        plan = [one_model(plan, args.checkpoints, benchmark.title)]
    runs = evaluations(plan, eval_dir, args.with_no_audio)
    if dist.is_main:
        logger.info("%s: steps %s%s -> %s", args.bench, [s for s, _ in plan],
                    f", text only {[s for s, _, _, a in runs if a]}" if args.with_no_audio
                    else "", eval_dir)
    for index, (step, model, out_dir, extra) in enumerate(runs, 1):
        if dist.is_main:
            logger.info("%s: evaluation %d of %d: step %d%s", args.bench, index, len(runs),
                        step, " without audio" if extra else "")
        evaluate(benchmarks[args.bench],
                 ["--model", model, "--out_dir", str(out_dir), *rest, *extra])
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if not dist.is_main:
        return None
    if not benchmark.scored:  # a submission file, nothing to compare across steps
        return eval_dir / str(plan[0][0])
    return write_summary(eval_dir, args.title, notes=args.note)


if __name__ == "__main__":
    main()
