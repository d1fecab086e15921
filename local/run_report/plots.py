"""Draw the report's figures (`local.run_report.series.Figure`) as PNGs, and the data behind them.

Each figure gets a title, each panel its own title and axis labels with units, integer steps on
the x axis, a legend below the axes (never over the lines or bars), and a
layout that keeps labels apart (matplotlib's constrained layout). `plots.json` beside the PNGs
holds every series drawn, so a figure's numbers can be read without the image.

Example:
    >>> from local.run_report.series import Figure, Line, Panel
    >>> fig = Figure("kl", "KL", [Panel("kl", "KL", [Line("kl", [(1, 0.1), (2, 0.2)])])])
    >>> draw_all([fig], Path("exp/grpo/plots"))                            # doctest: +SKIP
    {'kl': PosixPath('exp/grpo/plots/kl.png')}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from local.run_report.series import Figure, Panel
from local.util.fsio import atomic_path, atomic_write_json

PANEL_SIZE = (5.6, 3.6)  # inches per panel
DATA_FILE = "plots.json"


def _legend(ax: Any, panel: Panel) -> None:
    """The legend below the axes, never over the data."""
    labels = [line.label for line in panel.lines]
    if len(labels) < 2:
        return
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=min(3, len(labels)), frameon=False)


def _bars(ax: Any, panel: Panel) -> None:
    categories = panel.categories or []
    width = 0.8 / max(1, len(panel.lines))
    for i, line in enumerate(panel.lines):
        offset = (i - (len(panel.lines) - 1) / 2) * width
        ax.bar([x + offset for x, _ in line.points], [y for _, y in line.points], width,
               label=line.label)
    for x, note in enumerate(panel.bar_notes or []):
        top = max((y for line in panel.lines for px, y in line.points if px == x), default=0)
        ax.annotate(note, (x, top), textcoords="offset points", xytext=(0, 3), ha="center",
                    fontsize=8)
    ax.set_xticks(range(len(categories)))
    # Slanted labels only when upright ones would run into each other (~45 characters fit).
    rotate = sum(len(c) + 2 for c in categories) > 45 or max(map(len, categories), default=0) > 14
    ax.set_xticklabels(categories, rotation=25 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=8)


MARKERS = "osD^v<>ph*"
MAX_MARKED = 40  # points per line up to which each point gets a marker


def _lines(ax: Any, panel: Panel) -> None:
    """Lines (with markers up to `MAX_MARKED` points); each later line thinner and with another
    marker, so lines that coincide (a total equal to its only varying reward, a constant group)
    stay visible."""
    from matplotlib.ticker import MaxNLocator

    for i, line in enumerate(panel.lines):
        few = len(line.points) <= MAX_MARKED  # markers on hundreds of steps would be a smear
        ax.plot([x for x, _ in line.points], [y for _, y in line.points],
                marker=MARKERS[i % len(MARKERS)] if few else None,
                markersize=max(3.0, 7.0 - 1.2 * i),
                linewidth=max(1.0, 3.0 - 0.6 * i), linestyle="--" if line.dashed else "-",
                label=line.label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
    if panel.clamp is not None:
        ax.set_ylim(*auto_limits([y for line in panel.lines for _, y in line.points],
                                 *panel.clamp))


def auto_limits(values: list[float], floor: float, ceiling: float,
                min_span: float = 10.0) -> tuple[float, float]:
    """Y limits around `values`, at least `min_span` tall, padded, inside [floor, ceiling]
    but for a sliver (3%) that keeps a line at the floor or ceiling off the frame.

    >>> auto_limits([0.0, 0.0], 0, 100), auto_limits([40.0, 60.0], 0, 100)
    ((-0.348, 11.6), (38.4, 61.6))
    """
    low, high = min(values), max(values)
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    pad = 0.08 * (high - low)
    low, high = low - pad, high + pad
    if low < floor:
        low, high = floor, min(ceiling, high + floor - low)
    if high > ceiling:
        low, high = max(floor, low - (high - ceiling)), ceiling
    sliver = 0.03 * (high - low)
    low, high = (low - sliver if low <= floor else low), (high + sliver if high >= ceiling
                                                          else high)
    return round(float(low), 6), round(float(high), 6)


def draw(figure: Figure, path: Path) -> Path:
    """One PNG: the figure's panels side by side (two per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(figure.panels)
    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows),
                             layout="constrained", squeeze=False)
    for ax, panel in zip(axes.flat, figure.panels, strict=False):
        (_bars if panel.categories is not None else _lines)(ax, panel)
        ax.set_title(panel.title, fontsize=10)
        ax.set(xlabel=panel.xlabel, ylabel=panel.ylabel)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)  # a side given as None stays automatic
        ax.grid(alpha=0.3)
        _legend(ax, panel)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(figure.title, fontsize=12)
    with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format by the suffix
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def figure_data(figure: Figure) -> dict[str, Any]:
    """The numbers of a figure, for plots.json."""
    return {"title": figure.title, "panels": [
        {"title": p.title, "xlabel": p.xlabel, "ylabel": p.ylabel, "categories": p.categories,
         "lines": {line.label: [list(point) for point in line.points] for line in p.lines}}
        for p in figure.panels]}


def draw_all(figures: list[Figure], plot_dir: Path) -> dict[str, Path]:
    """Draw every figure that has data into `plot_dir`; write plots.json; {name: png}."""
    drawn = {f.name: draw(f, plot_dir / f"{f.name}.png") for f in figures if f.panels}
    atomic_write_json(plot_dir / DATA_FILE,
                      {f.name: figure_data(f) for f in figures if f.name in drawn})
    return drawn
