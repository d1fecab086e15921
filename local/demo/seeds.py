"""The demo over several seeds: how much GRPO gains, and how much that varies from seed to seed.

Runs the whole demo (`local.demo.run`) once per seed, each in `<out>/seed<N>` (a seed changes the
synthetic data, the random model, the warm-up and GRPO's sampling), reads each run's evaluation
(`run/eval/mmau/<step>/results.json`) and prints, per seed, the held-out accuracy at step 0 (the
warmed-up model, before GRPO) and at the last step, and the gain in points; then the mean gain
and the spread (largest minus smallest gain, and the sample standard deviation). Nothing is
typed in by hand: every figure is read from the runs' files. Writes `<out>/seeds.md` and
`<out>/seeds.json`. Finished parts of each run are skipped, as in the demo.

Example:
    $ python -m local.demo.seeds --out exp/demo-seeds --seeds 0 1 2     # 3 demos, in turn
    $ python -m local.demo.seeds --out /tmp/s --seeds 0 1 --n_train 32 --n_eval 8 \\
        --warmup_steps 5 --grpo_steps 2                                # other demo options pass
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from local.demo import run as demo
from local.run_report.markdown import table
from local.runs.eval_results import collect
from local.util.fsio import atomic_write_json, atomic_write_text


@dataclass
class SeedResult:
    """Held-out accuracy of the demo run with one random seed, before (step 0) and after GRPO."""

    seed: int
    first_step: int
    last_step: int
    before: float  # accuracy (%) at first_step
    after: float
    before_counts: str  # "correct/total"
    after_counts: str
    wall_s: float | None = None

    @property
    def gain(self) -> float:
        return self.after - self.before


def seed_result(seed: int, eval_dir: Path, wall_s: float | None = None) -> SeedResult:
    """The first and last evaluated steps of one run's `eval/mmau` folder."""
    rows = collect(eval_dir)
    if len(rows) < 2:
        raise SystemExit(f"{eval_dir}: needs step 0 and at least one checkpoint evaluated")
    (first, start), (last, end) = rows[0], rows[-1]
    return SeedResult(seed, first, last, start["accuracy"], end["accuracy"],
                      f"{start['correct']}/{start['total']}", f"{end['correct']}/{end['total']}",
                      wall_s)


def spread(results: Sequence[SeedResult]) -> dict[str, float]:
    """Mean gain, its range (max - min) and sample standard deviation over the seeds.

    >>> r = [SeedResult(s, 0, 9, 40.0, 40.0 + g, "", "") for s, g in enumerate([10, 20, 30])]
    >>> spread(r)
    {'mean_gain': 20.0, 'range': 20.0, 'sd': 10.0, 'min_gain': 10.0, 'max_gain': 30.0}
    """
    gains = [r.gain for r in results]
    return {"mean_gain": statistics.fmean(gains), "range": max(gains) - min(gains),
            "sd": statistics.stdev(gains) if len(gains) > 1 else 0.0,
            "min_gain": min(gains), "max_gain": max(gains)}


def render(results: Sequence[SeedResult]) -> str:
    """The per-seed table and the summary line, in markdown."""
    rows = [[str(r.seed), f"{r.before:.2f}% ({r.before_counts})",
             f"{r.after:.2f}% ({r.after_counts})", str(r.last_step), f"{r.gain:+.2f}",
             "" if r.wall_s is None else f"{r.wall_s:.0f}"] for r in results]
    body = table(["seed", "step 0 (after warm-up)", "last step", "last step #",
                  "gain (points)", "wall time (s)"], rows, numeric_from=1)
    s = spread(results)
    verdict = "larger" if s["mean_gain"] > s["range"] else "NOT larger"
    return (f"{body}\n\nOver {len(results)} seeds: mean gain {s['mean_gain']:+.2f} points "
            f"(smallest {s['min_gain']:+.2f}, largest {s['max_gain']:+.2f}); spread "
            f"{s['range']:.2f} points (max - min), sample sd {s['sd']:.2f}. The mean gain is "
            f"{verdict} than the spread.\n")


def main(argv: Sequence[str] | None = None) -> list[SeedResult]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("exp/demo-seeds"),
                        help="one demo folder per seed goes under it (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args, demo_args = parser.parse_known_args(argv)
    results = []
    for seed in args.seeds:
        folder = args.out / f"seed{seed}"
        info = demo.main(["--out", str(folder), "--seed", str(seed), *demo_args])
        results.append(seed_result(seed, demo.DemoSettings(out=folder).paths["eval"],
                                   info["wall_s"]))
    text = render(results)
    atomic_write_text(args.out / "seeds.md", f"# The demo over seeds\n\n{text}")
    atomic_write_json(args.out / "seeds.json", {
        "seeds": [{**asdict(r), "gain": r.gain} for r in results], **spread(results),
        "demo_options": demo_args})
    print(f"\n{text}\nwritten to {args.out / 'seeds.md'}", flush=True)
    return results


if __name__ == "__main__":
    main()
