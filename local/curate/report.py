"""The curation report: `report.md` and two histograms (audio contribution, with-audio accuracy).

The markdown says what was scored (model, settings, commit), how many items each rule keeps
and drops (overall and per category), and shows a few dropped items of the chosen rule with an
answer of each pass, so a reader sees why they went. PNGs are written atomically
(`local.util.fsio.atomic_path`).

Example:
    >>> write_report(rows, sel, meta, Path("data/curate/m/abc"))            # doctest: +SKIP
    PosixPath('data/curate/m/abc/report.md')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.curate.rules import RULES, kept
from local.util.fsio import atomic_path, atomic_write_text

FIGURES = {"hist_audio_contribution.png": ("audio_contribution", "audio contribution "
                                           "(acc with audio - acc without)", (-1.0, 1.0)),
           "hist_acc_audio.png": ("acc_audio", "accuracy with audio (share of k samples right)",
                                  (0.0, 1.0))}
EXAMPLES = 5


def histogram(values: Sequence[float], k: int, label: str, span: tuple[float, float],
              path: Path) -> Path:
    """A histogram with one bar per attainable value (multiples of 1/k), counts on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = span
    steps = round((hi - lo) * k)
    centers = [lo + i / k for i in range(steps + 1)]
    heights = [sum(abs(v - c) < 0.5 / k for v in values) for c in centers]
    fig, ax = plt.subplots(figsize=(5.6, 3.6), layout="constrained")
    ax.bar(centers, heights, width=0.8 / k)
    for c, h in zip(centers, heights, strict=True):
        if h:
            ax.annotate(str(h), (c, h), textcoords="offset points", xytext=(0, 2), ha="center",
                        fontsize=7)
    ax.set_xlabel(label)
    ax.set_ylabel("items")
    ax.set_title(f"{label.split(' (')[0]} over {len(values)} items (k={k})", fontsize=10)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def _short(text: str | None, limit: int = 80) -> str:
    text = (text or "(no answer)").replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _why(row: dict[str, Any]) -> str:
    reasons = []
    if row["audio_contribution"] <= 0:
        reasons.append("audio adds nothing")
    if row["acc_audio"] in (0.0, 1.0):
        reasons.append("always right" if row["acc_audio"] == 1.0 else "always wrong")
    return ", ".join(reasons) or "-"


def markdown(rows: Sequence[dict[str, Any]], sel: dict[str, Any], meta: dict[str, Any]) -> str:
    """The report's text."""
    k = meta["settings"]["k"]
    n = len(rows)
    zero = sum(r["zero_spread"] for r in rows)
    lines = [f"# Curation of {meta['settings']['train_data']} for {meta['model']}", "",
             f"{n} items, k={k} samples with the audio and k without each; settings "
             f"{meta['settings_hash']}, code {meta['commit']}.", "",
             f"- mean accuracy with audio {sum(r['acc_audio'] for r in rows) / max(n, 1):.3f}, "
             f"without {sum(r['acc_no_audio'] for r in rows) / max(n, 1):.3f}",
             f"- zero-spread items (all k with-audio samples right, or all wrong): {zero} "
             f"({zero / max(n, 1):.1%})",
             f"- items whose audio could not be used (every with-audio sample an error, "
             f"scored wrong): {sum(all(r['errors_audio']) for r in rows)}",
             f"- selection: rule `{sel['rule']}` ({sel['description']}) keeps {sel['kept']} "
             f"of {n}", "",
             "![audio contribution](hist_audio_contribution.png) "
             "![accuracy with audio](hist_acc_audio.png)", "",
             "## Kept and dropped per rule", "", "| rule | kept | dropped | what it keeps |",
             "|---|---:|---:|---|"]
    for name, tally in sel["counts"].items():
        lines.append(f"| {name} | {tally['kept']} | {tally['dropped']} | "
                     f"{RULES[name].description} |")
    categories = sorted({r["category"] for r in rows})
    lines += ["", "## Kept / dropped per category", "", "Each cell: items kept / dropped.", "",
              "| rule | " + " | ".join(categories) + " |",
              "|---|" + "---:|" * len(categories)]
    for name, tally in sel["counts"].items():
        cells = [f"{tally['by_category'].get(c, {}).get('kept', 0)} / "
                 f"{tally['by_category'].get(c, {}).get('dropped', 0)}" for c in categories]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    flags = kept(rows, sel["rule"], sel["threshold"])
    dropped = [r for r, keep in zip(rows, flags, strict=True) if not keep][:EXAMPLES]
    lines += ["", f"## Dropped by `{sel['rule']}`: {len(rows) - sum(flags)} items; the first "
              f"{len(dropped)}", "",
              "| id | category | answer | acc audio | acc no audio | why | an answer with audio "
              "| an answer without |", "|---|---|---|---:|---:|---|---|---|"]
    for r in dropped:
        lines.append(f"| {r['id']} | {r['category']} | {_short(r['answer'], 30)} | "
                     f"{r['acc_audio']:.2f} | {r['acc_no_audio']:.2f} | {_why(r)} | "
                     f"{_short(r['responses_audio'][0])} | {_short(r['responses_no_audio'][0])} |")
    return "\n".join(lines) + "\n"


def write_report(rows: Sequence[dict[str, Any]], sel: dict[str, Any], meta: dict[str, Any],
                 folder: Path) -> Path:
    """`report.md` and the histograms under `folder`."""
    k = meta["settings"]["k"]
    for name, (column, label, span) in FIGURES.items():
        histogram([r[column] for r in rows], k, label, span, folder / name)
    return atomic_write_text(folder / "report.md", markdown(rows, sel, meta))
