"""The demo's report: the run's report (`local.run_report`) plus the demo's own parts.

The run's sections (curves, accuracy by step, audio contribution, samples, configuration) come
from `local.run_report.build` on `<out>/run`, exactly what `bash run.sh --stage report --exp_dir
<exp> --run_name demo/run` writes; the demo adds the measured wall time and its parts' timings,
the warm-up and its loss, the before -> after table with each step's model, and the check that
the audio encoder's weights changed. Writes `<out>/report.md` with PNGs under `<out>/plots/`.
Nothing is typed in by hand.

The evaluation set is the demo's synthetic one in the MMAU format, so the run's
`benchmark_labels.json` names it so (`DEMO_LABELS`) and groups it by the demo's tasks: no plot
calls it MMAU test-mini.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from local.demo.plots import warmup_figure
from local.demo.text import render
from local.run_report.build import build
from local.run_report.markdown import table
from local.run_report.run_folder import write_labels
from local.runs.eval_results import collect
from local.util.fsio import atomic_write_text

DEMO_SET_TITLE = "synthetic demo set (MMAU format)"
# The demo's items all carry task "sound"; their own tasks (count, pitch, ...) are sub-categories.
DEMO_LABELS = {"mmau": {"title": DEMO_SET_TITLE, "breakdown": "sub-category"}}


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights")
    state: dict[str, Any] = {}
    for path in files:
        state.update(load_file(str(path)))
    return state


def encoder_change(initial: str | Path, final: str | Path) -> dict[str, Any]:
    """How the audio encoder (`audio_tower.*`) of `final` differs from `initial`'s."""
    start, end = _weights(Path(initial)), _weights(Path(final))
    keys = sorted(k for k in start if "audio_tower." in k)
    if not keys:
        raise ValueError(f"{initial}: no audio_tower.* weights (not an audio model?)")
    missing = [k for k in keys if k not in end]
    if missing:
        raise ValueError(f"{final} lacks {len(missing)} audio encoder tensors, e.g. {missing[0]}")
    diffs = [(end[k].float() - start[k].float()) for k in keys]
    changed = sum(bool(d.abs().max() > 0) for d in diffs)
    delta = float(np.sqrt(sum(float(d.pow(2).sum()) for d in diffs)))
    norm = float(np.sqrt(sum(float(start[k].float().pow(2).sum()) for k in keys)))
    return {"tensors": len(keys), "changed_tensors": changed, "changed": changed > 0,
            "max_abs_diff": max(float(d.abs().max()) for d in diffs),
            "relative_change": delta / norm if norm else float("inf"),
            "initial": str(initial), "final": str(final)}


def eval_table(rows: list[tuple[int, dict[str, Any]]], key: str = "sub-category") -> str:
    """Step, model, accuracy, counts and per-task accuracy for every evaluated step."""
    tasks = [r["group"] for r in rows[0][1]["tables"].get(key, [])] if rows else []
    body = []
    for step, result in rows:
        per = {r["group"]: r["accuracy"] for r in result["tables"].get(key, [])}
        body.append([str(step), f"`{result['settings']['model']}`", f"{result['accuracy']:.2f}",
                     f"{result['correct']}/{result['total']}", str(result["no_prediction"]),
                     *(f"{per.get(t, float('nan')):.1f}" for t in tasks)])
    return table(["step", "model", "accuracy (%)", "correct/total", "no prediction",
                  *(f"{t} (%)" for t in tasks)], body, numeric_from=2)


def write_report(out: Path, paths: dict[str, Path], info: dict[str, Any]) -> Path:
    """Write `<out>/report.md` and its PNGs from the run's files; returns the report's path."""
    write_labels(paths["run"], DEMO_LABELS)
    warm = json.loads((paths["initial"] / "warmup_log.json").read_text())
    report = build(paths["run"], md_path=paths["report"], plot_dir=paths["plots"],
                   extra=[warmup_figure(warm)])
    context = {
        "info": info, "warmup": warm, "machine": f"{platform.machine()}, {os.cpu_count()} CPU "
        f"cores visible, Python {platform.python_version()}",
        "final": Path(info["final_checkpoint"]).relative_to(out).as_posix(),
        "eval_table": eval_table(collect(paths["eval"]), DEMO_LABELS["mmau"]["breakdown"]),
    }
    return atomic_write_text(paths["report"], render(report, context))
