"""What each plot of the report shows, as data: figures of panels of named series.

`training_figures` pulls TRL's metrics out of a trainer state's `log_history` (the names TRL's
`GRPOTrainer._metrics` and the HF Trainer log: `reward`, `rewards/<name>/mean|std`,
`reward_std`, `frac_reward_zero_std`, `kl`, `completions/{mean,min,max}_length`,
`completions/clipped_ratio`, `learning_rate`, `grad_norm`); `accuracy_figure` and
`audio_figure` read a benchmark's results by step. A series without data is dropped, a figure
with no data left is not drawn (the report says what is missing), so every PNG has data.

Example:
    >>> history = [{"step": 1, "reward": 0.5, "rewards/accuracy/mean": 0.25, "kl": 0.0}]
    >>> metric(history, "reward")
    [(1, 0.5)]
    >>> group_spread([1.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0], 4)
    {'groups': 2, 'varied_groups': 1, 'mean_std': 0.2165}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from local.run_report.run_folder import BenchmarkEval, Completion
from local.runs.eval_results import CONTRIBUTION_TABLES, protocols_of

Series = list[tuple[float, float]]
STEP = "GRPO step"
EVAL_STEP = "training step (0 = the starting model)"


@dataclass
class Line:
    label: str
    points: Series
    dashed: bool = False


@dataclass
class Panel:
    """One subplot: lines against `xlabel`, or bars over `categories` (x = category index)."""

    title: str
    ylabel: str
    lines: list[Line]
    xlabel: str = STEP
    ylim: tuple[float | None, float | None] | None = None  # fixed limits (None: automatic)
    clamp: tuple[float, float] | None = None  # automatic limits kept inside this range
    categories: list[str] | None = None
    bar_notes: list[str] | None = None  # one text above each category's bars


@dataclass
class Figure:
    name: str  # the PNG's file stem
    title: str
    panels: list[Panel]
    missing: list[str] = field(default_factory=list)  # panels left out, with why

    def with_data(self) -> Figure:
        """The figure without empty lines and panels."""
        panels = []
        for panel in self.panels:
            lines = [line for line in panel.lines if line.points]
            if lines:
                panels.append(Panel(**{**vars(panel), "lines": lines}))
        return Figure(self.name, self.title, panels, self.missing)


def metric(history: Iterable[dict[str, Any]], key: str) -> Series:
    """(step, value) of every log entry that has `key` (training entries; eval-free)."""
    return [(int(h["step"]), float(h[key])) for h in history
            if key in h and "step" in h and h[key] is not None]


def reward_names(history: Sequence[dict[str, Any]]) -> list[str]:
    """The rewards a run logged (`rewards/<name>/mean`), in the order they first appear."""
    names: dict[str, None] = {}
    for entry in history:
        for key in entry:
            if key.startswith("rewards/") and key.endswith("/mean"):
                names[key[len("rewards/"):-len("/mean")]] = None
    return list(names)


def group_spread(rewards: Sequence[float], group_size: int) -> dict[str, Any]:
    """Reward spread within consecutive groups of `group_size` completions (one prompt each)."""
    values = np.asarray(rewards, dtype=float)
    groups = values[: len(values) // group_size * group_size].reshape(-1, group_size)
    stds = groups.std(axis=1)
    return {"groups": int(len(groups)), "varied_groups": int((stds > 1e-9).sum()),
            "mean_std": round(float(stds.mean()), 4) if len(groups) else 0.0}


def total_reward(row: Completion, weights: dict[str, float] | None) -> float:
    """A logged completion's total reward: the weighted sum (weights by name, 1 if unknown)."""
    weights = weights or {}
    return sum(weights.get(name, 1.0) * value for name, value in row.rewards.items())


def spread_by_step(rows: Sequence[Completion], group_size: int,
                   weights: dict[str, float] | None = None) -> dict[int, dict[str, Any]]:
    """`group_spread` of the logged completions' total rewards, per step."""
    steps: dict[int, list[float]] = {}
    for row in rows:
        steps.setdefault(row.step, []).append(total_reward(row, weights))
    return {step: group_spread(values, group_size) for step, values in sorted(steps.items())}


def training_figures(history: Sequence[dict[str, Any]],
                     spread: dict[int, dict[str, Any]] | None = None) -> list[Figure]:
    """The training curves: rewards, reward spread, KL, completions, optimiser, vLLM rollouts."""
    names = reward_names(history)
    spread = spread or {}
    zero_logged = [(s, 1.0 - v["varied_groups"] / v["groups"]) for s, v in sorted(spread.items())
                   if v["groups"]]
    kl = metric(history, "kl")
    return [
        Figure("rewards", "Rewards (mean over the step's completions)", [Panel(
            "each reward and the weighted total", "reward",
            [Line("total (weighted sum)", metric(history, "reward")),
             *(Line(n, metric(history, f"rewards/{n}/mean")) for n in names)])]),
        Figure("reward_spread", "Reward spread: what GRPO's advantages are made of", [
            Panel("standard deviation of the rewards", "reward std",
                  [Line("total, whole step", metric(history, "reward_std")),
                   *(Line(n, metric(history, f"rewards/{n}/std")) for n in names)]),
            Panel("groups whose completions all got the same reward", "fraction of groups",
                  [Line("frac_reward_zero_std (TRL)", metric(history, "frac_reward_zero_std")),
                   Line("logged completions", zero_logged, dashed=True)], ylim=(-0.05, 1.05))]),
        Figure("kl", "KL divergence to the reference model", [Panel(
            "mean per-token KL (k3 estimator)", "KL (nats per token)", [Line("kl", kl)])],
            missing=[] if kl else ["KL: not logged (beta = 0: TRL computes no KL)"]),
        Figure("completion_length", "Completions", [
            Panel("completion length", "length (tokens)",
                  [Line(k, metric(history, f"completions/{k}_length"))
                   for k in ("max", "mean", "min")], ylim=(0, None)),
            Panel("completions cut at max_completion_length", "fraction of completions",
                  [Line("clipped", metric(history, "completions/clipped_ratio"))],
                  ylim=(-0.05, 1.05))]),
        Figure("optimizer", "Optimiser", [
            Panel("learning rate", "learning rate", [Line("lr", metric(history,
                                                                       "learning_rate"))]),
            Panel("gradient norm (before clipping)", "L2 norm",
                  [Line("grad_norm", metric(history, "grad_norm"))])]),
        vllm_figure(history),
    ]


def vllm_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """vLLM rollouts against the policy, as TRL 1.16 logs them (grpo_trainer.py,
    `sampling/sampling_logp_difference/*`, `sampling/importance_sampling_ratio/*`): how far the
    engine's log-probs of the sampled tokens are from the policy's (numerics, and for a mixture
    of experts the routing, differ between the two), and the per-token ratios TRL's
    importance-sampling correction weights the loss with. Empty for HF rollouts."""
    def lines(key: str, stats: tuple[str, ...]) -> list[Line]:
        return [Line(stat, metric(history, f"sampling/{key}/{stat}")) for stat in stats]

    return Figure("vllm_rollouts", "vLLM rollouts against the policy", [
        Panel("|vLLM - policy| log-prob per token", "nats",
              lines("sampling_logp_difference", ("mean", "max")), ylim=(0, None)),
        Panel("importance-sampling ratio (policy / vLLM, per token)", "ratio",
              lines("importance_sampling_ratio", ("min", "mean", "max")))])


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

def breakdown_key(bench: BenchmarkEval, result: dict[str, Any]) -> str | None:
    """The table the per-group lines come from: the run's label, else the evaluation summary's
    (`CONTRIBUTION_TABLES`: MMAU by task, MMSU by level-1 category)."""
    tables = result.get("tables", {})
    if bench.breakdown:
        return bench.breakdown if bench.breakdown in tables else None
    return next((k for k in CONTRIBUTION_TABLES if k in tables), None)


def group_label(bench: BenchmarkEval, protocol: str) -> str:
    """What the per-group lines of `protocol` are: "task", "level-1 category", ..."""
    for result in [*bench.results.values(), *bench.no_audio.values()]:
        one = protocols_of(result).get(protocol)
        key = breakdown_key(bench, one) if one else None
        if key:
            return CONTRIBUTION_TABLES.get(key, key)
    return "group"


def protocols(bench: BenchmarkEval) -> list[str]:
    """Every protocol of the benchmark's results, the headline first."""
    names: dict[str, None] = {}
    for result in [*bench.results.values(), *bench.no_audio.values()]:
        names.update(dict.fromkeys(protocols_of(result)))
    return list(names)


def group_accuracy(bench: BenchmarkEval, result: dict[str, Any] | None,
                   protocol: str) -> dict[str, float]:
    """{"overall": %, group: %, ...} of one protocol of one result ({} when absent)."""
    one = protocols_of(result).get(protocol) if result else None
    if one is None:
        return {}
    key = breakdown_key(bench, one)
    rows = one.get("tables", {}).get(key, []) if key else []
    return {"overall": float(one["accuracy"]), **{str(r["group"]): float(r["accuracy"])
                                                  for r in rows}}


def accuracy_figure(bench: BenchmarkEval) -> Figure:
    """Accuracy by step: overall and per group, one panel per protocol; the no-audio overall
    dashed where it was evaluated."""
    names = protocols(bench)
    panels = []
    for protocol in names:
        by_step = {s: group_accuracy(bench, r, protocol) for s, r in bench.results.items()}
        groups = list(dict.fromkeys(g for acc in by_step.values() for g in acc))
        lines = [Line(g, [(s, acc[g]) for s, acc in by_step.items() if g in acc])
                 for g in groups]
        lines.append(Line("overall, no audio", [
            (s, acc["overall"]) for s, r in bench.no_audio.items()
            if (acc := group_accuracy(bench, r, protocol))], dashed=True))
        title = f"protocol {protocol}: overall and per {group_label(bench, protocol)}"
        panels.append(Panel(title, "accuracy (%)", lines, xlabel=EVAL_STEP, clamp=(0, 100)))
    return Figure(f"accuracy_{bench.name}", f"{bench.title}: accuracy by step", panels)


def audio_steps(bench: BenchmarkEval) -> list[int]:
    """Steps evaluated both with and without the audio."""
    return [s for s in bench.no_audio if s in bench.results]


def audio_rows(bench: BenchmarkEval, step: int, protocol: str) -> list[tuple[str, float, float]]:
    """(group, with audio %, without audio %) for one step and protocol, overall first."""
    with_audio = group_accuracy(bench, bench.results.get(step), protocol)
    without = group_accuracy(bench, bench.no_audio.get(step), protocol)
    return [(g, with_audio[g], without[g]) for g in with_audio if g in without]


def audio_figure(bench: BenchmarkEval) -> Figure:
    """With / without the audio, overall and per group, one panel per (protocol, step)."""
    panels = []
    for protocol in protocols(bench):
        for step in audio_steps(bench):
            rows = audio_rows(bench, step, protocol)
            panels.append(Panel(
                f"protocol {protocol}, step {step}", "accuracy (%)",
                [Line("with audio", [(i, a) for i, (_, a, _) in enumerate(rows)]),
                 Line("without audio", [(i, b) for i, (_, _, b) in enumerate(rows)])],
                xlabel="", categories=[g for g, _, _ in rows], ylim=(0, 105),
                bar_notes=[f"{a - b:+.1f}" for _, a, b in rows]))
    return Figure(f"audio_contribution_{bench.name}",
                  f"{bench.title}: accuracy with and without the audio (above the bars: "
                  "with - without, in points)", panels)
