"""The names and paths of a run folder, defined here only.

    <run>/                              train.py's --output_dir (run.sh: <exp_dir>/<run_name>)
      checkpoint-N/                     a Trainer save at step N (`checkpoint_dir`)
        trainer_state.json              written last: a save without it is unfinished
      resolved_config.yaml              the run record (`RUN_RECORD`): what train.py resolved
      command.txt                       each command line that started the run
      completions/                      TRL's completion logs (completions_<step>.parquet)
      benchmark_labels.json             optional: names of question sets (the demo's)
      eval/<bench>/                     one benchmark's evaluations (`bench_dir`)
        <step>/results.json             step 0 = the starting model (`step_dir`)
        <step>-no_audio/results.json    the same step, text only (`no_audio_dir`)
        summary.md, summary.png         accuracy across steps (`local.eval.summary`)

Which checkpoint-N folders count (finished, evaluable, resumable) is `local.runs.checkpoints`.
Standard library only: `local.train.run_settings`, run.sh's first call (perhaps before the
environment exists), reads `RUN_RECORD` here.

Example:
    >>> from local.runs.layout import checkpoint_step, eval_step, no_audio_dir
    >>> checkpoint_step("checkpoint-100"), checkpoint_step("checkpoint-final")
    (100, None)
    >>> no_audio_dir("exp/grpo/eval/mmau", 100).as_posix(), eval_step("100-no_audio")
    ('exp/grpo/eval/mmau/100-no_audio', 100)
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # the HF Trainer writes it last in a checkpoint
RUN_RECORD = "resolved_config.yaml"  # local.train.checkpoints.write_run_record writes it
COMMAND_FILE = "command.txt"
COMPLETIONS_DIR = "completions"
LABELS_FILE = "benchmark_labels.json"
EVAL_DIR = "eval"
RESULTS_FILE = "results.json"
SUBMISSION_FILE = "submission.json"  # an unscored benchmark's predictions (the full MMAU test)
SUMMARY_FILE = "summary.md"
SUMMARY_PLOT = "summary.png"
NO_AUDIO_SUFFIX = "-no_audio"


def checkpoint_step(name: str) -> int | None:
    """The step of a folder named `checkpoint-N`, None for any other name."""
    match = CHECKPOINT_NAME.match(name)
    return int(match.group(1)) if match else None


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """`<run_dir>/checkpoint-<step>`."""
    return Path(run_dir) / f"{CHECKPOINT_PREFIX}{step}"


def bench_dir(run_dir: str | Path, bench: str) -> Path:
    """Where a run's evaluations on `bench` go: `<run_dir>/eval/<bench>`."""
    return Path(run_dir) / EVAL_DIR / bench


def step_dir(eval_dir: str | Path, step: int) -> Path:
    """Where a step's evaluation (with audio) goes: `<eval_dir>/<step>`."""
    return Path(eval_dir) / str(step)


def no_audio_dir(eval_dir: str | Path, step: int) -> Path:
    """Where a step's text-only (`--no_audio`) evaluation goes: `<eval_dir>/<step>-no_audio`."""
    return Path(eval_dir) / f"{step}{NO_AUDIO_SUFFIX}"


def eval_step(name: str) -> int | None:
    """The step of a folder named `<step>` or `<step>-no_audio`, written as `step_dir` writes
    it (no leading zeros); None for any other name."""
    step = name.removesuffix(NO_AUDIO_SUFFIX)
    return int(step) if step.isdigit() and str(int(step)) == step else None
