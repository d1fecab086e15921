"""One table across a run's steps: `<eval_dir>/summary.md` and `summary.png` (accuracy vs step).

Reads `<eval_dir>/<step>/results.json` for every numeric step folder (0 = the starting model).
MMAU results have one protocol; MMSU results list theirs under `protocols`, each with its own
column and curve, so no number appears without the protocol that produced it.

Example:
    $ python -m local.eval.summary exp/grpo/eval/mmau
    >>> from local.eval.summary import write_summary                          # doctest: +SKIP
    >>> write_summary("exp/grpo/eval/mmau")                                   # doctest: +SKIP
    PosixPath('exp/grpo/eval/mmau/summary.md')
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.util.fsio import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)


def collect(eval_dir: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(step, results) for every `<step>/results.json` under `eval_dir`, by step."""
    found = []
    for path in Path(eval_dir).glob("*/results.json"):
        if path.parent.name.isdigit():
            found.append((int(path.parent.name), json.loads(path.read_text(encoding="utf-8"))))
    return sorted(found, key=lambda pair: pair[0])


def protocols_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{protocol: its result} for an MMAU (single) or MMSU (several protocols) results file."""
    if "protocols" in result:
        return result["protocols"]
    return {result.get("protocol", "accuracy"): result}


def render(rows: Sequence[tuple[int, dict[str, Any]]], title: str) -> str:
    """The markdown table: step, model, one accuracy column per protocol, unanswered counts."""
    names: list[str] = []
    for _, result in rows:
        names += [p for p in protocols_of(result) if p not in names]
    head = ["step", "model", *(f"accuracy (%) [{p}]" for p in names), "correct/total",
            "no prediction"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---:", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for step, result in rows:
        per = protocols_of(result)
        first = per[names[0]] if names[0] in per else next(iter(per.values()))
        cells = [str(step), str(result.get("settings", {}).get("model", "?"))]
        cells += [f"{per[p]['accuracy']:.2f}" if p in per else "-" for p in names]
        cells += [f"{first['correct']}/{first['total']}", str(first["no_prediction"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[tuple[int, dict[str, Any]]], path: Path, title: str) -> Path:
    """Accuracy vs step, one line per protocol, saved as PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curves: dict[str, list[tuple[int, float]]] = {}
    for step, result in rows:
        for name, res in protocols_of(result).items():
            curves.setdefault(name, []).append((step, res["accuracy"]))
    for name, points in curves.items():
        ax.plot([s for s, _ in points], [a for _, a in points], marker="o", label=name)
    ax.set(xlabel="training step (0 = starting model)", ylabel="accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(title="protocol")
    with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format by the suffix
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_summary(eval_dir: str | Path, title: str | None = None) -> Path:
    """Write `summary.md` and `summary.png` in `eval_dir`; returns the markdown's path."""
    eval_dir = Path(eval_dir)
    rows = collect(eval_dir)
    if not rows:
        raise SystemExit(f"{eval_dir}: no <step>/results.json found; run the evaluation first.")
    title = title or f"{rows[0][1].get('benchmark', eval_dir.name)} across steps ({eval_dir})"
    path = atomic_write_text(eval_dir / "summary.md", render(rows, title))
    plot(rows, eval_dir / "summary.png", title)
    logger.info("summary of %d steps: %s", len(rows), path)
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Summarise an evaluation across steps.")
    parser.add_argument("eval_dir", type=Path, help="e.g. exp/grpo/eval/mmau")
    args = parser.parse_args(argv)
    path = write_summary(args.eval_dir)
    print(path.read_text(encoding="utf-8"))
    return path


if __name__ == "__main__":
    main()
