"""The demo's report: curves from the trainer state, the before -> after table, samples, checks.

Reads what the real entry points wrote (`<run>/checkpoint-N/trainer_state.json`, TRL's
`<run>/completions/*.parquet`, `<run>/eval/mmau/<step>/results.json`, `resolved_config.yaml`)
and writes `<out>/report.md` with PNGs under `<out>/plots/`. Nothing is typed in by hand.

Example:
    >>> from local.demo.report import group_spread
    >>> group_spread([1.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0], 4)
    {'groups': 2, 'varied_groups': 1, 'mean_std': 0.2165}
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from local.demo.plots import curves, plot_curves
from local.demo.text import render
from local.eval.summary import collect
from local.train.rewards import resolve_reward_weights
from local.util.fsio import atomic_write_text

CONFIG_KEYS = ("model_name_or_path", "template", "reward_funcs", "reward_weights", "loss_type",
               "beta", "learning_rate", "num_generations", "per_device_train_batch_size",
               "gradient_accumulation_steps", "max_completion_length", "temperature",
               "max_steps", "save_steps", "seed", "freeze_audio_encoder", "model_dtype", "use_cpu")


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


def group_spread(rewards: list[float], group_size: int) -> dict[str, Any]:
    """Reward spread within consecutive groups of `group_size` completions (one prompt each)."""
    values = np.asarray(rewards, dtype=float)
    groups = values[: len(values) // group_size * group_size].reshape(-1, group_size)
    stds = groups.std(axis=1)
    return {"groups": int(len(groups)), "varied_groups": int((stds > 1e-9).sum()),
            "mean_std": round(float(stds.mean()), 4) if len(groups) else 0.0}


def completion_logs(run: Path, names: list[str], weights: list[float]) -> list[dict[str, Any]]:
    """TRL's completions parquet files as rows: step, question, completion, rewards, total."""
    import pandas as pd

    rows = []
    for path in sorted((run / "completions").glob("completions_*.parquet")):
        frame = pd.read_parquet(path)
        for record in frame.to_dict("records"):
            prompt = record["prompt"][-1]["content"]
            question = next((str(p["text"]) for p in prompt if p.get("text")), "")
            completion = record["completion"]
            text = completion[-1]["content"] if not isinstance(completion, str) else completion
            rewards = {n: float(record[n]) for n in names if n in record}
            total = sum(w * rewards.get(n, 0.0) for n, w in zip(names, weights, strict=True))
            rows.append({"step": int(record["step"]), "question": question.split(" Please")[0],
                         "completion": str(text), **rewards, "total": total,
                         "advantage": float(record["advantage"])})
    return rows


def spread_by_step(rows: list[dict[str, Any]], group_size: int) -> dict[int, dict[str, Any]]:
    """`group_spread` of the logged completions of every step."""
    steps: dict[int, list[float]] = {}
    for row in rows:
        steps.setdefault(row["step"], []).append(row["total"])
    return {step: group_spread(values, group_size) for step, values in sorted(steps.items())}


def reward_names_and_weights(config: dict[str, Any]) -> tuple[list[str], list[float]]:
    """The rewards a run used, resolved from its config as train.py resolves them.

    >>> reward_names_and_weights({"template": "default", "reward_funcs": None,
    ...                           "reward_weights": None, "robust_rewards": False})
    (['accuracy', 'format'], [1.0, 1.0])
    """
    return resolve_reward_weights(config["template"], robust=bool(config.get("robust_rewards")),
                                  reward_funcs=config.get("reward_funcs"),
                                  reward_weights=config.get("reward_weights"))


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    return sha + (" + uncommitted changes" if git("status", "--porcelain", "-uno") else "")


def _eval_rows(eval_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    return collect(eval_dir)


def eval_table(rows: list[tuple[int, dict[str, Any]]]) -> str:
    """Step, accuracy and per-task accuracy (MMAU token rule) for every evaluated step."""
    tasks = [r["group"] for r in rows[0][1]["tables"].get("sub-category", [])] if rows else []
    head = ["step", "model", "accuracy (%)", "correct/total", "no prediction",
            *(f"{t} (%)" for t in tasks)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|---|" + "---:|" * (len(head) - 2)]
    for step, result in rows:
        per = {r["group"]: r["accuracy"] for r in result["tables"].get("sub-category", [])}
        cells = [str(step), f"`{result['settings']['model']}`", f"{result['accuracy']:.2f}",
                 f"{result['correct']}/{result['total']}", str(result["no_prediction"]),
                 *(f"{per.get(t, float('nan')):.1f}" for t in tasks)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _samples(rows: list[dict[str, Any]], names: list[str], limit: int = 8) -> str:
    last = [r for r in rows if r["step"] == max(r["step"] for r in rows)][:limit] if rows else []
    head = ["step", "question", "completion", *names, "total", "advantage"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in last:
        text = r["completion"].replace("|", "\\|").replace("\n", " ")
        cells = [str(r["step"]), r["question"], f"`{text}`", *(f"{r[n]:.2f}" for n in names),
                 f"{r['total']:.2f}", f"{r['advantage']:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, paths: dict[str, Path], info: dict[str, Any]) -> Path:
    """Write `<out>/report.md` and its PNGs from the run's files; returns the report's path."""
    run, final = paths["run"], Path(info["final_checkpoint"])
    resolved = yaml.safe_load((run / "resolved_config.yaml").read_text())
    config = {**resolved["training"],
              "model_name_or_path": resolved.get("model", {}).get("model_name_or_path")}
    names, weights = reward_names_and_weights(config)
    config["reward_funcs"], config["reward_weights"] = names, weights  # as train.py resolved them
    history = json.loads((final / "trainer_state.json").read_text())["log_history"]
    logs = completion_logs(run, names, weights)
    spread = spread_by_step(logs, int(config["num_generations"]))
    series = curves(history, names, spread)
    plots = plot_curves(series, paths["plots"], warmup_log=paths["initial"] / "warmup_log.json")
    warm = json.loads((paths["initial"] / "warmup_log.json").read_text())
    context = {
        "info": info, "commit": _commit(), "machine": f"{platform.machine()}, "
        f"{__import__('os').cpu_count()} CPU cores visible, Python {platform.python_version()}",
        "config": {k: config.get(k) for k in CONFIG_KEYS},
        "config_yaml": yaml.safe_dump(resolved, sort_keys=True), "names": names,
        "weights": weights, "spread": spread, "series": series, "warmup": warm,
        "plots": {k: v.relative_to(out).as_posix() for k, v in plots.items()},
        "eval_table": eval_table(_eval_rows(paths["eval"])),
        "eval_plot": (paths["eval"] / "summary.png").relative_to(out).as_posix(),
        "samples": _samples(logs, names), "final": final.relative_to(out).as_posix(),
    }
    return atomic_write_text(paths["report"], render(context))
