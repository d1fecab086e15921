"""Training curves of a GRPO run as PNGs: each reward, KL, completion length, reward spread.

`curves` pulls the series out of a checkpoint's `trainer_state.json` log history (TRL's metric
names) and the per-step group spread of the logged completions; `plot_curves` draws them.

Example:
    >>> history = [{"step": 1, "reward": 0.5, "rewards/accuracy/mean": 0.25, "kl": 0.0}]
    >>> curves(history, ["accuracy"], {})["reward"]
    [(1, 0.5)]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local.util.fsio import atomic_path

Series = list[tuple[int, float]]


def _series(history: list[dict[str, Any]], key: str) -> Series:
    return [(int(h["step"]), float(h[key])) for h in history if key in h and "step" in h]


def curves(history: list[dict[str, Any]], names: list[str],
           spread: dict[int, dict[str, Any]]) -> dict[str, Series]:
    """Named series by step: reward, reward/<name>, kl, length (mean/min/max), spreads."""
    out = {"reward": _series(history, "reward")}
    for name in names:
        out[f"reward/{name}"] = _series(history, f"rewards/{name}/mean")
    out["kl"] = _series(history, "kl")
    for kind in ("mean", "min", "max"):
        out[f"length/{kind}"] = _series(history, f"completions/{kind}_length")
    out["reward_std (batch)"] = _series(history, "reward_std")
    out["groups with varied rewards"] = [(s, 1.0 - v)
                                         for s, v in _series(history, "frac_reward_zero_std")]
    out["within-group std (logged completions)"] = [(s, float(v["mean_std"]))
                                                    for s, v in sorted(spread.items())]
    return out


def _figure(path: Path, title: str, ylabel: str, lines: dict[str, Series],
            xlabel: str = "GRPO step") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, points in lines.items():
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len([p for p in lines.values() if p]) > 1:
        ax.legend(fontsize=8)
    with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format by the suffix
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(series: dict[str, Series], plot_dir: Path,
                warmup_log: Path | None = None) -> dict[str, Path]:
    """One PNG per panel under `plot_dir`; returns {panel: path}."""
    rewards = {k: v for k, v in series.items() if k == "reward" or k.startswith("reward/")}
    lengths = {k.split("/")[1]: v for k, v in series.items() if k.startswith("length/")}
    spread = {k: series[k] for k in ("reward_std (batch)", "groups with varied rewards",
                                     "within-group std (logged completions)")}
    plots = {
        "rewards": _figure(plot_dir / "rewards.png", "Rewards (mean per step)", "reward",
                           rewards),
        "kl": _figure(plot_dir / "kl.png", "KL to the reference model (k3)", "KL",
                      {"kl": series["kl"]}),
        "length": _figure(plot_dir / "completion_length.png", "Completion length", "tokens",
                          lengths),
        "spread": _figure(plot_dir / "reward_spread.png", "Reward spread within groups",
                          "std / share", spread),
    }
    if warmup_log is not None and warmup_log.exists():
        log = json.loads(warmup_log.read_text())["log"]
        plots["warmup"] = _figure(plot_dir / "warmup_loss.png", "Supervised warm-up",
                                  "cross-entropy (answer tokens)",
                                  {"loss": [(e["step"], e["loss"]) for e in log]},
                                  xlabel="warm-up step")
    return plots
