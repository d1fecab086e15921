"""The demo's own figure: the supervised warm-up's loss (the run's curves are `local.run_report`'s).

Example:
    >>> log = {"log": [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.9}]}
    >>> warmup_figure(log).panels[0].lines[0].points
    [(1, 2.5), (2, 1.9)]
"""

from __future__ import annotations

from typing import Any

from local.run_report.series import Figure, Line, Panel


def warmup_figure(warmup_log: dict[str, Any]) -> Figure:
    """The warm-up's cross-entropy per step, from `models/initial/warmup_log.json`."""
    points = [(int(e["step"]), float(e["loss"])) for e in warmup_log.get("log", [])]
    return Figure("warmup_loss", "Supervised warm-up (before GRPO)", [Panel(
        "cross-entropy on the answer tokens", "loss (nats per token)", [Line("loss", points)],
        xlabel="warm-up step", ylim=(0, None))])
