"""Test helpers for run reports (`local.run_report`): run folders in the layouts train.py, TRL and
the evaluators write (`full_run` and its parts), and what a written report must hold."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from local.core.prompts import TEMPLATES, build_messages
from local.eval.benchmarks.base import registered
from local.eval.results import results_file
from local.run_report.markdown import SECTIONS
from local.run_report.plots import DATA_FILE

MMAU_TASKS = ("sound", "music", "speech")
MMSU_CATEGORIES = ("Perception-Phonetics-a-b", "Reasoning-Semantics-c-d")


def log_entry(step: int, rng: random.Random) -> dict[str, Any]:
    """One training log entry with TRL's GRPO metric names and the HF Trainer's."""
    accuracy = min(1.0, 0.2 + step / 40 + rng.uniform(-0.05, 0.05))
    return {"step": step, "epoch": step / 100, "loss": rng.uniform(-0.1, 0.1),
            "grad_norm": rng.uniform(0.5, 2.0), "learning_rate": 1e-6 * (1 - step / 100),
            "reward": accuracy + 0.9, "reward_std": 0.4, "frac_reward_zero_std": 0.25,
            "rewards/accuracy/mean": accuracy, "rewards/accuracy/std": 0.45,
            "rewards/format/mean": 0.9, "rewards/format/std": 0.3, "kl": 0.001 * step,
            "completions/mean_length": 40.0 - step / 4, "completions/min_length": 12.0,
            "completions/max_length": 64.0, "completions/clipped_ratio": 0.1,
            "entropy": 0.5, "num_tokens": 1000.0 * step}


def write_state(folder: Path, steps: int, max_steps: int) -> None:
    rng = random.Random(steps)
    history = [log_entry(s, rng) for s in range(1, steps + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps(
        {"global_step": steps, "max_steps": max_steps, "log_history": history}))


def write_completions(run: Path, step: int, groups: int = 2, size: int = 4) -> None:
    """TRL's completions_<step>.parquet: chat prompts with an audio part, rewards, advantage."""
    prompt = TEMPLATES["default"].format(question=f"How many beeps at step {step}?",
                                         choices="['1', '2']")
    rows = []
    for g in range(groups):
        for i in range(size):
            right = (i + g) % 2 == 0
            rows.append({"step": step, "prompt": build_messages(prompt),
                         "completion": [{"role": "assistant",
                                         "content": f"<answer>{1 if right else 2}</answer>"}],
                         "accuracy": float(right), "format": 1.0,
                         "advantage": 0.9 if right else -0.9})
    (run / "completions").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(run / "completions" / f"completions_{step:05d}.parquet")


def write_config(run: Path) -> None:
    resolved = {"training": {"template": "default", "reward_funcs": None, "reward_weights": None,
                             "num_generations": 4, "beta": 0.04, "learning_rate": 1e-6,
                             "max_steps": 100, "seed": 42},
                "model": {"model_name_or_path": "Qwen/Qwen2.5-Omni-7B"},
                "code": "abc1234"}  # what train.py records: the commit that trained
    run.mkdir(parents=True, exist_ok=True)
    (run / "resolved_config.yaml").write_text(yaml.safe_dump(resolved))
    (run / "command.txt").write_text("python train.py --config conf/grpo.yaml\n")


def mmau_items(correct: int, total: int = 12) -> list[dict[str, Any]]:
    return [{"id": f"q{i}", "answer": "Man", "choices": ["Man", "Woman"],
             "model_output": "Man" if i < correct else "Woman", "task": MMAU_TASKS[i % 3],
             "difficulty": "easy", "sub-category": "x"} for i in range(total)]


def mmsu_items(correct: int, total: int = 8) -> list[dict[str, Any]]:
    items = []
    for i in range(total):
        right = i < correct
        items.append({"id": f"m{i}", "answer": "Dog", "choices": ["Dog", "Cat", "Cow", "Pig"],
                      "category": MMSU_CATEGORIES[i % 2],
                      "response": f"<answer>{'Dog' if right else 'Cat'}</answer>" if i % 3
                      else ("A" if right else "B"), "model_output": None})
    for item in items:
        item["model_output"] = item["response"].removeprefix("<answer>").removesuffix("</answer>")
    return items


def write_result(run: Path, bench: str, folder: str, items: list[dict[str, Any]],
                 no_audio: bool = False) -> dict[str, Any]:
    """results.json as the evaluator writes it, scored by the benchmark's own code."""
    benchmark = registered()[bench]
    results = {p: benchmark.score(items, p) for p in benchmark.protocols}
    written = results_file(benchmark, results, {"model": f"step {folder}", "no_audio": no_audio})
    path = run / "eval" / bench / folder / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(written))
    return written


def full_run(run: Path, steps: int = 30) -> Path:
    """A run: checkpoints 10..`steps`, completions every 5 steps, MMAU and MMSU at steps 0, 10
    and `steps`, step 0 and the last also without the audio."""
    write_config(run)
    for step in range(10, steps + 1, 10):
        write_state(run / f"checkpoint-{step}", step, max_steps=100)
    for step in range(5, steps + 1, 5):
        write_completions(run, step)
    for step, correct in ((0, 4), (10, 6), (steps, 9)):
        write_result(run, "mmau", str(step), mmau_items(correct))
        write_result(run, "mmsu", str(step), mmsu_items(correct // 2))
    for step in (0, steps):
        write_result(run, "mmau", f"{step}-no_audio", mmau_items(3), no_audio=True)
        write_result(run, "mmsu", f"{step}-no_audio", mmsu_items(2), no_audio=True)
    return run


# ---------------------------------------------------------------------------------------------
# What a written report must hold
# ---------------------------------------------------------------------------------------------


def linked_pngs(report: str) -> list[str]:
    """The PNGs a markdown report shows, as linked (relative to the report)."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)


def assert_every_section(report: str) -> None:
    for heading in SECTIONS.values():
        assert f"\n## {heading}\n" in report, heading


def assert_every_plot_has_data(md: Path) -> list[str]:
    """Every PNG the report links exists, is a PNG, and each of its panels has series with
    points (plots.json beside it); returns the linked files."""
    links = linked_pngs(md.read_text())
    for link in links:
        png = md.parent / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        data = json.loads((png.parent / DATA_FILE).read_text())[png.stem]
        assert data["panels"], png
        for panel in data["panels"]:
            assert panel["lines"] and all(panel["lines"].values()), (png, panel)
    return links
