"""The whole recipe on a CPU in minutes: data -> tiny model -> warm-up -> GRPO -> eval -> report.

The single call behind `bash run.sh --stage demo`. Every part goes through the recipe's real
entry points: `local.demo.data` writes the synthetic set in the AVQA and MMAU layouts,
`local.demo.tiny` builds a random Qwen2.5-Omni thinker (`--family qwen3_omni_moe`: the
Qwen3-Omni MoE thinker), `local.demo.warmup` gives it the answer format (a random model earns
no reward, so GRPO would have nothing to learn from), `train.py`
runs GRPO with `conf/demo.yaml` (a subprocess, as on a cluster), `local.eval.steps` scores the
starting model (step 0) and every checkpoint with the MMAU evaluator, and
`local.demo.demo_report` writes `<out>/report.md` with the curves, the before -> after table,
sample completions and a check that the audio encoder's weights changed (the demo fails if they
did not).

Why GRPO visibly learns here: the warm-up's teacher is biased (`--label_bias`, see
`local.demo.warmup`). On most rows it teaches the question's default option whatever the audio
says, on the rest the right one, so the starting model hears the audio but, answering greedily,
says the default: near chance at step 0. Sampled at temperature 1 it still gives the right
answer on a good share of completions, so the completions of a group earn different rewards,
and GRPO raises the probability of the right (audio-dependent) answer until the greedy answer
follows the audio. Step 0 is evaluated after the warm-up, so the gain from step 0 to the last
step is GRPO's. `python -m local.demo.seeds` measures it over several seeds.

Each part is skipped when its output is complete (`.done` markers, finished checkpoints, logged
predictions); `--overwrite` redoes everything.

Example:
    $ python -m local.demo --out exp/demo                         # a few minutes on 2 CPU cores
    $ python -m local.demo --out exp/demo-seed1 --seed 1          # another seed
    $ python -m local.demo --out exp/demo-qwen3 --family qwen3_omni_moe  # the MoE thinker
    $ python -m local.demo --out /tmp/demo --n_train 32 --n_eval 8 --warmup_steps 5 \\
        --grpo_steps 2                                            # a smoke run (the slow test)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local.demo.data import write_demo_data
from local.demo.demo_report import DEMO_SET_TITLE, encoder_change, write_report
from local.demo.tiny import build_tiny_checkpoint
from local.demo.warmup import warmup, warmup_settings
from local.eval import steps as eval_steps
from local.runs.checkpoints import complete_checkpoints
from local.runs.layout import TRAINER_STATE, bench_dir
from local.util.fsio import building, is_done

REPO = Path(__file__).resolve().parents[2]  # the repository root (local/demo/run.py)
# The families the demo is tested with (tests/test_demo.py): Qwen2.5-Omni by default, the
# Qwen3-Omni MoE thinker with --family qwen3_omni_moe.
DEMO_FAMILIES = ("qwen2_5_omni", "qwen3_omni_moe")
PARTS = ("data", "tiny model", "warm-up", "GRPO training", "evaluation", "report")
THREADS_NOTE = (
    "torch threads for the warm-up, GRPO (train.py's OMP_NUM_THREADS) and the evaluation. The "
    "tiny model's matrices are too small for a second thread to pay off much (2 threads: 30 "
    "warm-up steps in 3.9 s instead of 4.9 s on 2 idle cores), and on a busy machine two "
    "threads keep waiting for each other (20 steps: 44-72 s with 2 threads, 8-10 s with 1, "
    "while 3 other processes shared the 2 cores); default: %(default)s")


@dataclass
class DemoSettings:
    """What the demo does; the defaults are `bash run.sh --stage demo`'s."""

    out: Path = Path("exp/demo")
    config: str = "conf/demo.yaml"
    family: str = "qwen2_5_omni"  # the tiny random model's family (DEMO_FAMILIES)
    n_train: int = 256
    n_eval: int = 256
    warmup_steps: int = 300
    warmup_lr: float = 1e-3
    label_noise: float = 0.0
    label_bias: float = 0.6
    grpo_steps: int | None = None  # None: max_steps of the config
    eval_batch_size: int = 16
    eval_max_new_tokens: int = 16
    seed: int = 0
    threads: int = 1  # torch threads here and in train.py (see THREADS_NOTE)
    overwrite: bool = False
    train_args: list[str] = field(default_factory=list)

    @property
    def paths(self) -> dict[str, Path]:
        out = self.out
        return {"data": out / "data", "random": out / "models" / "random",
                "initial": out / "models" / "initial", "run": out / "run",
                "eval": bench_dir(out / "run", "mmau"), "plots": out / "plots",
                "report": out / "report.md", "timings": out / "timings.json"}

    def max_steps(self) -> int:
        if self.grpo_steps is not None:
            return self.grpo_steps
        return int(yaml.safe_load((REPO / self.config).read_text()).get("max_steps", 0))


def _timed(name: str, timings: dict[str, Any], fn: Callable[[], Any]) -> Any:
    print(f"\n=== demo: {name} ===", flush=True)
    start = time.perf_counter()
    result = fn()
    timings[name] = round(time.perf_counter() - start, 1)
    return result


def tiny_settings(seed: int, family: str = "qwen2_5_omni") -> dict[str, Any]:
    """What the demo's random model is built with (recorded in its `.done`)."""
    # Text head_dim 32 (2 heads of the 64-wide model): vLLM's CPU attention runs 32 and up, so
    # the demo's checkpoints also evaluate with `--eval_backend vllm`.
    return {"family": family, "vocab": "tiny", "seed": seed, "text_head_dim": 32}


def _tiny(paths: dict[str, Path], seed: int, family: str = "qwen2_5_omni") -> Path:
    out, settings = paths["random"], tiny_settings(seed, family)
    if is_done(out, settings):
        print(f"tiny model: {out} is done")
        return out
    with building(out, settings) as tmp:
        build_tiny_checkpoint(settings["family"], tmp, vocab=settings["vocab"], seed=seed,
                              text_head_dim=settings["text_head_dim"])
    print(f"tiny random {family} model written to {out}")
    return out


def finished_checkpoint(run: Path, max_steps: int) -> Path | None:
    """The run's last complete checkpoint if it reached `max_steps`, else None."""
    done = complete_checkpoints(run, resumable=True)
    if not done:
        return None
    state = json.loads((done[-1] / TRAINER_STATE).read_text())
    return done[-1] if state.get("global_step", 0) >= max_steps else None


def train_command(settings: DemoSettings) -> list[str]:
    """The train.py call (one CPU process, as `run.sh --stage train --nproc 1` would make)."""
    paths = settings.paths
    command = [sys.executable, "train.py", "--config", settings.config,
               "--model_name_or_path", str(paths["initial"]),
               "--train_data", str(paths["data"] / "avqa"), "--output_dir", str(paths["run"]),
               "--seed", str(settings.seed)]
    if settings.grpo_steps is not None:
        command += ["--max_steps", str(settings.grpo_steps)]
    return command + list(settings.train_args)


def train_env(settings: DemoSettings) -> dict[str, str]:
    """train.py's environment: this one, the repository importable, `settings.threads` threads."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(settings.threads)}


def _train(settings: DemoSettings) -> Path:
    paths, steps = settings.paths, settings.max_steps()
    final = finished_checkpoint(paths["run"], steps)
    if final is not None:
        print(f"GRPO: {final} is done")
        return final
    command = train_command(settings)
    print("+ " + " ".join(command), flush=True)
    paths["run"].mkdir(parents=True, exist_ok=True)
    log = paths["run"] / "train_stdout.log"  # TRL's per-step completion tables; bars on stderr
    with open(log, "w") as stdout:
        result = subprocess.run(command, cwd=REPO, stdout=stdout, check=False,
                                env=train_env(settings))
    if result.returncode != 0:
        raise SystemExit(f"train.py failed (exit {result.returncode}); see the log above and {log}")
    final = finished_checkpoint(paths["run"], steps)
    if final is None:
        raise SystemExit(f"train.py ended without a checkpoint at step {steps} in {paths['run']}")
    return final


def _evaluate(settings: DemoSettings) -> Path:
    paths = settings.paths
    mmau = paths["data"] / "mmau"
    summary = eval_steps.main([
        "--bench", "mmau", "--model", str(paths["initial"]), "--run_dir", str(paths["run"]),
        "--title", f"{DEMO_SET_TITLE} across steps",
        "--", "--mmau_json", str(mmau / "mmau-test-mini.json"),
        "--mmau_audio_dir", str(mmau / "test-mini-audios"), "--dtype", "float32",
        "--batch_size", str(settings.eval_batch_size), "--set_title", DEMO_SET_TITLE,
        "--max_new_tokens", str(settings.eval_max_new_tokens)])
    assert summary is not None  # one process: always the main one
    return summary


def _clear(paths: dict[str, Path]) -> None:
    for key in ("data", "random", "initial", "run", "plots", "report", "timings"):
        target = paths[key]
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def data_settings(settings: DemoSettings) -> dict[str, Any]:
    """What `write_demo_data` records in the data's `.done`."""
    return {"n_train": settings.n_train, "n_eval": settings.n_eval, "seed": settings.seed}


def demo_warmup_settings(settings: DemoSettings) -> dict[str, Any]:
    """What the demo's warm-up records in `models/initial/.done` (`local.demo.warmup`)."""
    paths = settings.paths
    return warmup_settings(paths["random"], paths["data"] / "avqa", steps=settings.warmup_steps,
                           learning_rate=settings.warmup_lr, label_noise=settings.label_noise,
                           label_bias=settings.label_bias, seed=settings.seed)


def clear_stale(paths: dict[str, Path], settings: DemoSettings, inputs_done: bool) -> None:
    """Remove what was built from other inputs: a warm-up made from other data or another
    random model, and a GRPO run (with its evaluation) started from another warmed-up model.
    Their `.done` markers record paths, not contents, so they would otherwise be reused."""
    stale = []
    if not inputs_done:
        stale.append(paths["initial"])
    if not inputs_done or not is_done(paths["initial"], demo_warmup_settings(settings)):
        stale.append(paths["run"])
    for folder in stale:
        if folder.is_dir():
            print(f"demo: {folder} was built from other settings; removing it", flush=True)
            shutil.rmtree(folder)


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """Run every part (skipping finished ones); returns what the report shows."""
    import torch

    start = time.perf_counter()
    torch.set_num_threads(settings.threads)
    paths = settings.paths
    if settings.overwrite:
        _clear(paths)
    settings.out.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(paths["timings"].read_text()) if paths["timings"].exists() else {}
    done_before = {"data": is_done(paths["data"], data_settings(settings)),
                   "tiny model": is_done(paths["random"],
                                         tiny_settings(settings.seed, settings.family))}
    clear_stale(paths, settings, done_before["data"] and done_before["tiny model"])
    done_before["warm-up"] = is_done(paths["initial"], demo_warmup_settings(settings))
    done_before["GRPO training"] = (finished_checkpoint(paths["run"], settings.max_steps())
                                    is not None)
    timings: dict[str, Any] = {}
    _timed("data", timings, lambda: write_demo_data(paths["data"], settings.n_train,
                                                    settings.n_eval, settings.seed))
    _timed("tiny model", timings, lambda: _tiny(paths, settings.seed, settings.family))
    _timed("warm-up", timings, lambda: warmup(
        paths["random"], paths["data"] / "avqa", paths["initial"], steps=settings.warmup_steps,
        learning_rate=settings.warmup_lr, label_noise=settings.label_noise,
        label_bias=settings.label_bias, seed=settings.seed))
    final = _timed("GRPO training", timings, lambda: _train(settings))
    _timed("evaluation", timings, lambda: _evaluate(settings))
    change = encoder_change(paths["initial"], final)
    # A part skipped as done keeps the time it took when it ran (timings.json).
    recorded = {k: earlier[k] if done_before.get(k) and k in earlier else v
                for k, v in timings.items()}
    info = {"settings": {k: str(v) if isinstance(v, Path) else v
                         for k, v in asdict(settings).items()},
            "final_checkpoint": str(final), "encoder": change, "timings": timings,
            "recorded_timings": recorded, "skipped": [k for k, v in done_before.items() if v],
            "train_command": train_command(settings)}
    info["wall_s"] = round(time.perf_counter() - start, 1)  # before the report: it is printed in it
    _timed("report", timings, lambda: write_report(settings.out, paths, info))
    recorded["report"] = timings["report"]
    paths["timings"].write_text(json.dumps(recorded, indent=1))
    info["wall_s"] = round(time.perf_counter() - start, 1)
    if not change["changed"]:
        raise SystemExit(f"FAILED: the audio encoder of {final} equals the initial model's; the "
                         "audio did not reach the loss. See " + str(paths["report"]))
    print(f"\ndemo finished in {info['wall_s']:.0f} s (measured wall time); audio encoder "
          f"changed: {change['changed_tensors']}/{change['tensors']} tensors; report: "
          f"{paths['report']}", flush=True)
    return info


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--out", type=Path, default=defaults.out, help="demo folder (default: %(default)s)")
    add("--config", default=defaults.config, help="GRPO recipe (default: %(default)s)")
    add("--family", default=defaults.family, choices=DEMO_FAMILIES,
        help="the tiny random model's family (default: %(default)s); qwen3_omni_moe is the "
        "mixture-of-experts Qwen3-Omni thinker")
    add("--n_train", type=int, default=defaults.n_train, help="synthetic training items")
    add("--n_eval", type=int, default=defaults.n_eval, help="synthetic MMAU-shaped eval items")
    add("--warmup_steps", type=int, default=defaults.warmup_steps)
    add("--warmup_lr", type=float, default=defaults.warmup_lr)
    add("--label_noise", type=float, default=defaults.label_noise,
        help="share of warm-up rows taught a random option (keeps the start uncertain)")
    add("--label_bias", type=float, default=defaults.label_bias,
        help="share of warm-up rows taught the default option whatever the audio says (above "
        "0.5 the starting model answers the default; GRPO makes it follow the audio)")
    add("--grpo_steps", type=int, default=None, help="override the config's max_steps")
    add("--eval_batch_size", type=int, default=defaults.eval_batch_size)
    add("--eval_max_new_tokens", type=int, default=defaults.eval_max_new_tokens)
    add("--seed", type=int, default=defaults.seed,
        help="seeds the data, the random model, the warm-up and GRPO (default: %(default)s)")
    add("--threads", type=int, default=defaults.threads, help=THREADS_NOTE)
    add("--overwrite", action="store_true", help="redo every part")
    add("train_args", nargs=argparse.REMAINDER, help="after --: extra train.py options")
    args = vars(parser.parse_args(argv))
    rest = args.pop("train_args")
    args["train_args"] = rest[1:] if rest[:1] == ["--"] else rest
    return run_demo(DemoSettings(**args))


if __name__ == "__main__":
    main()
