"""Read a run folder as it is on disk, finished or still going, without TensorBoard.

What a run folder holds (each part optional; what is absent is reported, never guessed):

  checkpoint-N/trainer_state.json   the HF Trainer's `log_history` (TRL's metric names); the
                                    newest usable one is read (a root trainer_state.json counts)
  completions/completions_*.parquet TRL's sampled completions with each reward and advantage
  eval/<bench>/<step>/results.json  one evaluation per step (0 = the starting model)
  eval/<bench>/<step>-no_audio/     the same step evaluated without the audio (--no_audio)
  resolved_config.yaml, command.txt what train.py ran with (`local.train.checkpoints`)
  benchmark_labels.json             optional: {bench: {"title": ..., "breakdown": ...}} for a
                                    question set that is not the benchmark's own (the demo's)

Every file goes through `files` (read) and `shapes` (what it must look like); a file, or a part
of one, that is not usable is recorded in `RunFolder.left_out` (path and reason, one warning
line each) and the rest is read as usual. The names are `local.runs.layout`'s.

Example:
    >>> from local.run_report.run_folder import question_of
    >>> question_of("How many beeps? Please choose the answer from the following options: "
    ...             "['1', '2']. Output the final answer in <answer> </answer>.")
    "How many beeps? ['1', '2']"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.run_report import shapes
from local.run_report.completions import Completion, question_of, read_completions
from local.run_report.files import read_json, read_text, read_yaml
from local.run_report.left_out import PART, SETTING, LeftOut, LeftOutList
from local.runs.eval_results import protocols_of
from local.runs.layout import (
    CHECKPOINT_PREFIX,
    COMMAND_FILE,
    EVAL_DIR,
    LABELS_FILE,
    NO_AUDIO_SUFFIX,
    RESULTS_FILE,
    RUN_RECORD,
    SUBMISSION_FILE,
    TRAINER_STATE,
    checkpoint_step,
    eval_step,
)
from local.util.fsio import atomic_write_json
from local.util.gitinfo import code_version

__all__ = ["BenchmarkEval", "Completion", "RunFolder", "TrainerLog", "question_of", "read_run",
           "write_labels"]

Results = dict[str, Any]


@dataclass
class TrainerLog:
    """The newest usable `trainer_state.json`: where it is and its (checked) log history."""

    source: Path
    global_step: int
    max_steps: int | None
    history: list[dict[str, Any]]


@dataclass
class BenchmarkEval:
    """One benchmark's evaluations of a run, by step; `no_audio` the steps also evaluated
    without the audio."""

    name: str  # the folder under eval/ (mmau, mmsu)
    title: str  # from the results (or benchmark_labels.json)
    results: dict[int, Results]
    no_audio: dict[int, Results] = field(default_factory=dict)
    breakdown: str | None = None  # the table of per-group lines (None: the benchmark's default)


@dataclass
class RunFolder:
    """Everything the report reads from one run folder; `left_out` the files (or parts) that
    could not be used, `notes` anything else the reader should know."""

    path: Path
    log: TrainerLog | None
    completions: list[Completion]
    evals: list[BenchmarkEval]
    config: dict[str, Any] | None
    commands: list[str]
    code_version: str
    notes: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    submissions: list[Path] = field(default_factory=list)  # unscored: answers withheld

    @property
    def training(self) -> dict[str, Any]:
        """The resolved training arguments ({} when resolved_config.yaml is absent)."""
        return dict((self.config or {}).get("training") or {})


def _step_of(folder: Path) -> int:
    step = checkpoint_step(folder.name)
    return -1 if step is None else step


def read_trainer_log(run: Path, left_out: LeftOutList) -> TrainerLog | None:
    """The usable trainer state with the most steps among checkpoint-*/ and the run folder."""
    checkpoints = sorted(run.glob(f"{CHECKPOINT_PREFIX}*/{TRAINER_STATE}"),
                         key=lambda p: _step_of(p.parent))
    found = []
    for path in [p for p in [run / TRAINER_STATE] if p.exists()] + checkpoints:
        with left_out.reading(path):
            state, dropped = shapes.trainer_state(read_json(path))
            left_out.add_parts(path, dropped)
            found.append(TrainerLog(path, state.global_step, state.max_steps, state.history))
    return max(found, key=lambda s: (s.global_step, len(s.history)), default=None)


def read_labels(run: Path, left_out: LeftOutList) -> dict[str, dict[str, str]]:
    """benchmark_labels.json, if the run has one (its usable entries)."""
    path = run / LABELS_FILE
    if not path.exists():
        return {}
    with left_out.reading(path):
        labels, dropped = shapes.labels(read_json(path))
        left_out.add_parts(path, dropped, PART)
        return labels
    return {}


def write_labels(run: str | Path, labels: dict[str, dict[str, Any]]) -> Path:
    """Name a run's question sets for the report, e.g. {"mmau": {"title": "synthetic demo set
    (MMAU format)", "breakdown": "sub-category"}}."""
    return atomic_write_json(Path(run) / LABELS_FILE, labels)


def _read_result(path: Path, left_out: LeftOutList) -> tuple[Results, list[str]] | None:
    """A checked results.json and the parts of it left out (None: the file is left out)."""
    with left_out.reading(path):
        return shapes.result(read_json(path))
    return None


def read_bench(bench_dir: Path, left_out: LeftOutList) -> tuple[dict[int, Results],
                                                                 dict[int, Results]]:
    """({step: results}, {step: no-audio results}) of one benchmark folder. A no-audio folder
    whose results were not made with --no_audio and a results.json in a folder that is not a
    step are left out."""
    results: dict[int, Results] = {}
    no_audio: dict[int, Results] = {}
    for folder in sorted(p for p in bench_dir.iterdir() if not p.name.startswith(".")):
        path, step = folder / RESULTS_FILE, eval_step(folder.name)
        if not folder.is_dir():
            if step is not None:
                left_out.add(folder, "a file, not a step folder (<step>/results.json)")
            continue  # the evaluation summary (summary.md, summary.png)
        if not path.exists():
            continue  # an evaluation under way, or not one at all
        if step is None:
            left_out.add(path, f"{folder.name}/ is not a step folder (<step> or "
                               f"<step>{NO_AUDIO_SUFFIX}, e.g. 10 or 10{NO_AUDIO_SUFFIX})")
            continue
        read = _read_result(path, left_out)
        if read is None:
            continue
        result, dropped = read
        if folder.name.endswith(NO_AUDIO_SUFFIX) and not shapes.no_audio(result):
            left_out.add(path, "not made with --no_audio (settings.no_audio is "
                               f"{shapes.shown(result['settings'].get('no_audio'))}, not true)")
            continue
        left_out.add_parts(path, dropped, PART)
        (no_audio if folder.name.endswith(NO_AUDIO_SUFFIX) else results)[step] = result
    return dict(sorted(results.items())), dict(sorted(no_audio.items()))


def _tables(results: list[Results]) -> set[str]:
    return {t for r in results for one in protocols_of(r).values() for t in one["tables"]}


def read_evals(run: Path, left_out: LeftOutList) -> list[BenchmarkEval]:
    """Every usable `eval/<bench>/<step>[-no_audio]/results.json`, by benchmark and step."""
    labels = read_labels(run, left_out)
    eval_dir = run / EVAL_DIR
    if eval_dir.exists() and not eval_dir.is_dir():
        left_out.add(eval_dir, "a file, not the eval/ folder")
        return []
    evals = []
    for bench_dir in sorted(p for p in eval_dir.glob("*") if not p.name.startswith(".")):
        if not bench_dir.is_dir():
            left_out.add(bench_dir, "a file, not a benchmark folder (eval/<bench>/<step>/)")
            continue
        results, no_audio = read_bench(bench_dir, left_out)
        if not results and not no_audio:
            continue
        label = labels.get(bench_dir.name, {})
        breakdown = label.get("breakdown")
        tables = _tables([*results.values(), *no_audio.values()])
        if breakdown and breakdown not in tables:
            left_out.add(run / LABELS_FILE, f"breakdown '{breakdown}' of '{bench_dir.name}' is "
                         f"no table of its results ({', '.join(sorted(tables)) or 'none'}); "
                         "the default groups are shown")
            breakdown = None
        named = (r["benchmark"] for r in [*results.values(), *no_audio.values()]
                 if "benchmark" in r)
        evals.append(BenchmarkEval(
            name=bench_dir.name, title=label.get("title") or next(named, bench_dir.name),
            results=results, no_audio=no_audio, breakdown=breakdown))
    return evals


def read_config(run: Path, left_out: LeftOutList) -> dict[str, Any] | None:
    """resolved_config.yaml (its usable settings), None when absent or not usable."""
    path = run / RUN_RECORD
    if not path.exists():
        return None
    with left_out.reading(path):
        config, dropped = shapes.config(read_yaml(path))
        left_out.add_parts(path, dropped, SETTING)
        return config
    return None


def read_commands(run: Path, left_out: LeftOutList) -> list[str]:
    """The non-empty lines of command.txt (one per start of the run)."""
    path = run / COMMAND_FILE
    if not path.exists():
        return []
    with left_out.reading(path):
        return [line for line in read_text(path).splitlines() if line.strip()]
    return []


def read_run(run_dir: str | Path) -> RunFolder:
    """Read `run_dir`; SystemExit with a clear message when there is nothing to report."""
    run = Path(run_dir)
    if not run.is_dir():
        raise SystemExit(f"{run}: no such run folder. Pass the folder train.py wrote "
                         "(--exp_dir/--run_name of run.sh, e.g. exp/grpo).")
    left_out = LeftOutList(run)
    config = read_config(run, left_out)
    folder = RunFolder(path=run, log=read_trainer_log(run, left_out),
                       completions=read_completions(run, left_out),
                       evals=read_evals(run, left_out), config=config,
                       commands=read_commands(run, left_out), code_version=code_version(),
                       left_out=left_out,
                       submissions=sorted((run / EVAL_DIR).glob(f"*/*/{SUBMISSION_FILE}")))
    if not (folder.log or folder.completions or folder.evals or folder.config
            or folder.submissions):
        bad = f" ({len(left_out)} left out: named above)" if left_out else ""
        raise SystemExit(
            f"{run}: nothing to report yet{bad}: no usable checkpoint-N/trainer_state.json, no "
            "completions/*.parquet, no eval/<bench>/<step>/results.json and no "
            "resolved_config.yaml. Is this the run folder train.py writes (e.g. exp/grpo)? A run "
            "gets its first trainer_state.json at its first checkpoint (save_steps).")
    return folder
