"""Read a run folder as it is on disk, finished or still going, without TensorBoard.

What a run folder holds (each part optional; what is absent is reported, never guessed):

  checkpoint-N/trainer_state.json   the HF Trainer's `log_history` (TRL's metric names); the
                                    newest one is read (a root trainer_state.json counts too)
  completions/completions_*.parquet TRL's sampled completions with each reward and advantage
  eval/<bench>/<step>/results.json  one evaluation per step (0 = the starting model)
  eval/<bench>/<step>-no_audio/     the same step evaluated without the audio (--no_audio)
  resolved_config.yaml, command.txt what train.py ran with (`local.train.checkpoints`)
  benchmark_labels.json             optional: {bench: {"title": ..., "breakdown": ...}} for a
                                    question set that is not the benchmark's own (the demo's)

Example:
    >>> from local.report.run_folder import question_of
    >>> question_of("How many beeps? Please choose the answer from the following options: "
    ...             "['1', '2']. Output the final answer in <answer> </answer>.")
    "How many beeps? ['1', '2']"
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local.core.prompts import TEMPLATES
from local.eval.summary import collect, collect_no_audio
from local.train.rewards import completion_text
from local.util.fsio import atomic_write_json
from local.util.gitinfo import code_version

LABELS_FILE = "benchmark_labels.json"
REPO = Path(__file__).resolve().parents[2]  # the recipe checkout (local/report/run_folder.py)


@dataclass
class TrainerLog:
    """The newest `trainer_state.json` found: where it is and its log history."""

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
    results: dict[int, dict[str, Any]]
    no_audio: dict[int, dict[str, Any]] = field(default_factory=dict)
    breakdown: str | None = None  # the table of per-group lines (None: the benchmark's default)


@dataclass
class Completion:
    """One logged completion: its step, question, text, rewards by name and advantage."""

    step: int
    question: str
    completion: str
    rewards: dict[str, float]
    advantage: float | None


@dataclass
class RunFolder:
    """Everything the report reads from one run folder; `notes` lists what could not be read."""

    path: Path
    log: TrainerLog | None
    completions: list[Completion]
    evals: list[BenchmarkEval]
    config: dict[str, Any] | None
    commands: list[str]
    code_version: str
    notes: list[str] = field(default_factory=list)

    @property
    def training(self) -> dict[str, Any]:
        """The resolved training arguments ({} when resolved_config.yaml is absent)."""
        return dict((self.config or {}).get("training") or {})


def _read_json(path: Path, notes: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:  # being written, or damaged
        notes.append(f"{path}: not readable ({err}); left out")
        return None


def read_trainer_log(run: Path, notes: list[str]) -> TrainerLog | None:
    """The trainer state with the most steps among checkpoint-*/ and the run folder itself."""
    found = []
    for path in [run / "trainer_state.json", *run.glob("checkpoint-*/trainer_state.json")]:
        state = _read_json(path, notes) if path.is_file() else None
        if isinstance(state, dict):
            history = [h for h in state.get("log_history", []) if isinstance(h, dict)]
            found.append(TrainerLog(path, int(state.get("global_step") or 0),
                                    state.get("max_steps"), history))
    return max(found, key=lambda s: (s.global_step, len(s.history)), default=None)


def question_of(prompt_text: str) -> str:
    """The question and options of a templated prompt, without the template's instructions.

    >>> question_of(TEMPLATES["default"].format(question="Who speaks?", choices="['a', 'b']"))
    "Who speaks? ['a', 'b']"
    >>> question_of("free text")
    'free text'
    """
    for template in TEMPLATES.values():
        head, _, rest = template.partition("{question}")
        between, _, tail = rest.partition("{choices}")
        if head or not between or between not in prompt_text:
            continue
        question, _, choices = prompt_text.partition(between)
        if tail and choices.endswith(tail):
            choices = choices[: -len(tail)]
        return f"{question.strip()} {choices.strip()}".strip()
    return prompt_text.strip()


def _prompt_text(prompt: Any) -> str:
    """The text of a logged prompt's last message (chat messages) or the prompt itself."""
    prompt = _plain(prompt)
    if isinstance(prompt, list) and prompt:
        prompt = prompt[-1]
    return completion_text(prompt)


def read_completions(run: Path, notes: list[str]) -> list[Completion]:
    """Every row of TRL's completions parquet files, by step."""
    files = sorted((run / "completions").glob("completions_*.parquet"))
    if not files:
        return []
    import pandas as pd  # deferred: only a run with completion logs needs it

    rows = []
    for path in files:
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - a file TRL is still writing: skip, say so
            notes.append(f"{path}: not readable ({type(err).__name__}: {err}); left out")
            continue
        fixed = {"step", "prompt", "completion", "advantage"}
        names = [c for c in frame.columns if c not in fixed
                 and pd.api.types.is_numeric_dtype(frame[c])]
        for record in frame.to_dict("records"):
            advantage = record.get("advantage")
            rows.append(Completion(
                step=int(record["step"]), question=question_of(_prompt_text(record.get("prompt"))),
                completion=completion_text(_plain(record.get("completion"))),
                rewards={n: float(record[n]) for n in names},
                advantage=None if advantage is None else float(advantage)))
    return sorted(rows, key=lambda r: r.step)


def _plain(value: Any) -> Any:
    """Parquet gives nested lists back as numpy arrays (inside dicts too): plain lists again."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def read_labels(run: Path, notes: list[str]) -> dict[str, dict[str, Any]]:
    """benchmark_labels.json, if the run has one."""
    path = run / LABELS_FILE
    labels = _read_json(path, notes) if path.is_file() else None
    return labels if isinstance(labels, dict) else {}


def write_labels(run: str | Path, labels: dict[str, dict[str, Any]]) -> Path:
    """Name a run's question sets for the report, e.g. {"mmau": {"title": "synthetic demo set
    (MMAU format)", "breakdown": "sub-category"}}."""
    return atomic_write_json(Path(run) / LABELS_FILE, labels)


def read_evals(run: Path, notes: list[str]) -> list[BenchmarkEval]:
    """Every `eval/<bench>/<step>[-no_audio]/results.json`, by benchmark and step (through
    `local.eval.summary`, which also leaves out no-audio folders not made with --no_audio)."""
    labels = read_labels(run, notes)
    evals = []
    for bench_dir in sorted(p for p in (run / "eval").glob("*") if p.is_dir()):
        try:
            results = dict(collect(bench_dir))
            no_audio, left_out = collect_no_audio(bench_dir)
        except (OSError, json.JSONDecodeError) as err:  # a results.json being written
            notes.append(f"{bench_dir}: a results.json is not readable ({err}); left out")
            continue
        notes += [f"{bench_dir}: {note}" for note in left_out]
        if not results and not no_audio:
            continue
        label = labels.get(bench_dir.name, {})
        first = next(iter({**no_audio, **results}.values()))
        evals.append(BenchmarkEval(
            name=bench_dir.name, title=label.get("title") or first.get("benchmark")
            or bench_dir.name, results=results, no_audio=no_audio,
            breakdown=label.get("breakdown")))
    return evals


def read_run(run_dir: str | Path) -> RunFolder:
    """Read `run_dir`; SystemExit with a clear message when there is nothing to report."""
    run = Path(run_dir)
    if not run.is_dir():
        raise SystemExit(f"{run}: no such run folder. Pass the folder train.py wrote "
                         "(--exp_dir/--run_name of run.sh, e.g. exp/grpo).")
    notes: list[str] = []
    config_path, command_path = run / "resolved_config.yaml", run / "command.txt"
    try:
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
    except yaml.YAMLError as err:
        notes.append(f"{config_path}: not readable ({err}); left out")
        config = None
    commands = command_path.read_text().splitlines() if command_path.is_file() else []
    folder = RunFolder(path=run, log=read_trainer_log(run, notes),
                       completions=read_completions(run, notes), evals=read_evals(run, notes),
                       config=config if isinstance(config, dict) else None,
                       commands=[c for c in commands if c.strip()], code_version=code_version(),
                       notes=notes)
    if not (folder.log or folder.completions or folder.evals or folder.config):
        raise SystemExit(
            f"{run}: nothing to report yet: no checkpoint-N/trainer_state.json, no "
            "completions/*.parquet, no eval/<bench>/<step>/results.json and no "
            "resolved_config.yaml. Is this the run folder train.py writes (e.g. exp/grpo)? A run "
            "gets its first trainer_state.json at its first checkpoint (save_steps).")
    return folder
