"""The run report on run folders with a file of the wrong shape: each kind of bad input (half
written, not UTF-8, an array where an object belongs, a missing key, text/null/NaN/Infinity where
a number belongs, a folder where a file belongs, ...) in each file the report reads is one
warning line naming the file and what is wrong; the report is still written, its other sections
as for the good run, the file listed under "Left out", no NaN in a table or a plot. An
unwritable output is one line naming the path, exit status 1, no traceback.

The plots are not drawn here (`draw` is replaced by a stub): plots.json, the numbers each PNG
would show, is what is checked; tests/test_report.py draws them."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from local.run_report import plots, run_folder
from local.run_report.build import main
from local.run_report.markdown import SECTIONS
from tests.helpers import REPO
from tests.helpers_report import assert_every_plot_has_data, assert_every_section, full_run

PNG = b"\x89PNG\r\n\x1a\n"


def _stub_draw(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    return path


def _fixed(patch: pytest.MonkeyPatch) -> None:
    """No drawing; one code version (a commit made meanwhile does not change the report)."""
    patch.setattr(plots, "draw", _stub_draw)
    patch.setattr(run_folder, "code_version", lambda: "abc1234")


@pytest.fixture(autouse=True)
def no_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed(monkeypatch)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """`full_run` and its report (the run the cases below spoil one file of)."""
    run = full_run(tmp_path_factory.mktemp("good") / "run")
    with pytest.MonkeyPatch.context() as patch:
        _fixed(patch)
        md = main(["--run_dir", str(run)])
    report = md.read_text()
    md.unlink()
    shutil.rmtree(run / "plots")
    yield run, report


# ---------------------------------------------------------------------------------------------
# How a file is spoiled
# ---------------------------------------------------------------------------------------------

Spoil = Callable[[Path], None]


def text(content: str) -> Spoil:
    return lambda path: path.write_text(content)


def raw(content: bytes) -> Spoil:
    return lambda path: path.write_bytes(content)


def half() -> Spoil:
    return lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def folder() -> Spoil:
    def spoil(path: Path) -> None:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        path.mkdir(parents=True)
        (path / "x").write_text("{}")
    return spoil


def a_file() -> Spoil:
    def spoil(path: Path) -> None:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        path.write_text("{}")
    return spoil


def json_edit(edit: Callable[[Any], Any]) -> Spoil:
    """Load the JSON, edit it (in place, or return the new value), write it (NaN as NaN)."""
    def spoil(path: Path) -> None:
        data = json.loads(path.read_text()) if path.exists() else {}
        changed = edit(data)
        path.write_text(json.dumps(data if changed is None else changed))
    return spoil


def yaml_edit(edit: Callable[[dict[str, Any]], None]) -> Spoil:
    def spoil(path: Path) -> None:
        data = yaml.safe_load(path.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data))
    return spoil


def parquet_edit(edit: Callable[[pd.DataFrame], pd.DataFrame | None]) -> Spoil:
    def spoil(path: Path) -> None:
        frame = pd.read_parquet(path)
        changed = edit(frame)
        (frame if changed is None else changed).to_parquet(path)
    return spoil


def put(keys: str, value: Any) -> Callable[[Any], None]:
    """Set a value deep inside parsed JSON: put("protocols.letter.accuracy", "x")."""
    def edit(data: Any) -> None:
        *parents, last = [int(k) if k.lstrip("-").isdigit() else k for k in keys.split(".")]
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


def drop(keys: str) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        *parents, last = keys.split(".")
        for key in parents:
            data = data[key]
        del data[last]
    return edit


def cell(column: str, value: Any) -> Callable[[pd.DataFrame], None]:
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[0, column] = value
    return edit


NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------------------------------------
# The cases: one file, one kind of bad input
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bad:
    path: str  # the spoiled file, relative to the run folder
    spoil: Spoil
    reason: str  # what the warning and the "Left out" row say is wrong
    affects: tuple[str, ...]  # the sections that may differ from the good run's
    expect: str = ""  # more text the report holds (what it used instead)


STATE = "checkpoint-30/trainer_state.json"
COMPLETIONS = "completions/completions_00030.parquet"
MMAU = "eval/mmau/10/results.json"
MMSU = "eval/mmsu/10/results.json"
NO_AUDIO = "eval/mmau/30-no_audio/results.json"
LABELS = "benchmark_labels.json"
CONFIG = "resolved_config.yaml"
COMMAND = "command.txt"
TRAINING = ("training",)
OLDER_STATE = "`checkpoint-20/trainer_state.json`, global step 20 of 100"
SAMPLES = ("training", "samples")
ACCURACY = ("accuracy",)
CONFIGURATION = ("config", "training")

CASES = {
    # checkpoint-N/trainer_state.json: a file left out falls back to the previous checkpoint
    "state-half-written": Bad(STATE, half(), "not valid JSON", TRAINING, OLDER_STATE),
    "state-empty": Bad(STATE, text(""), "empty", TRAINING, OLDER_STATE),
    "state-not-utf8": Bad(STATE, raw(b'{"global_step": \xff}'), "not UTF-8 text", TRAINING,
                          OLDER_STATE),
    "state-array": Bad(STATE, text("[]"), "an array, not an object", TRAINING, OLDER_STATE),
    "state-null": Bad(STATE, text("null"), "null, not an object", TRAINING, OLDER_STATE),
    "state-folder": Bad(STATE, folder(), "a folder, not a file", TRAINING, OLDER_STATE),
    "state-no-log-history": Bad(STATE, json_edit(drop("log_history")), "no log_history",
                                TRAINING, OLDER_STATE),
    "state-log-history-object": Bad(STATE, json_edit(put("log_history", {"step": 1})),
                                    "log_history is an object, not an array", TRAINING,
                                    OLDER_STATE),
    "state-global-step-text": Bad(STATE, json_edit(put("global_step", "thirty")),
                                  "global_step is 'thirty', not a whole number", TRAINING,
                                  OLDER_STATE),
    "state-max-steps-text": Bad(STATE, json_edit(put("max_steps", "100")),
                                "max_steps is '100'", TRAINING),
    "state-value-nan": Bad(STATE, json_edit(put("log_history.-1.reward", NAN)),
                           "step 30 'reward' is NaN", TRAINING),
    "state-value-infinity": Bad(STATE, json_edit(put("log_history.-1.grad_norm", INF)),
                                "step 30 'grad_norm' is Infinity", TRAINING),
    "state-value-text": Bad(STATE, json_edit(put("log_history.-1.kl", "high")),
                            "step 30 'kl' is 'high'", TRAINING),
    "state-value-null": Bad(STATE, json_edit(put("log_history.0.loss", None)),
                            "step 1 'loss' is null", TRAINING),
    "state-entry-not-object": Bad(STATE, json_edit(lambda d: d["log_history"].append("x")),
                                  "log_history[30] is a string", TRAINING),
    "state-entry-step-text": Bad(STATE, json_edit(put("log_history.0.step", "one")),
                                 "log_history[0] step is 'one'", TRAINING),
    # completions/completions_<step>.parquet
    "completions-half-written": Bad(COMPLETIONS, half(), "not a readable parquet file", SAMPLES),
    "completions-folder": Bad(COMPLETIONS, folder(), "a folder, not a file", SAMPLES),
    "completions-no-step-column": Bad(COMPLETIONS, parquet_edit(lambda f: f.drop(
        columns="step")), "no 'step' column", SAMPLES),
    "completions-step-text": Bad(COMPLETIONS, parquet_edit(lambda f: f.assign(step="x")),
                                 "row 0: step is 'x'", SAMPLES),
    "completions-prompt-number": Bad(COMPLETIONS, parquet_edit(
        lambda f: f.assign(prompt=7)), "prompt is a number, not text or chat messages",
        SAMPLES),
    "completions-reward-nan": Bad(COMPLETIONS, parquet_edit(cell("accuracy", NAN)),
                                  "row 0 'accuracy' is NaN", SAMPLES),
    "completions-reward-as-text": Bad(COMPLETIONS, parquet_edit(
        lambda f: f.assign(accuracy=f["accuracy"].astype(str))),
        "column 'accuracy' holds numbers as text", SAMPLES),
    "completions-advantage-infinity": Bad(COMPLETIONS, parquet_edit(cell("advantage", INF)),
                                          "row 0 'advantage' is Infinity", SAMPLES),
    "completions-a-file": Bad("completions", a_file(), "a file, not the completions/ folder",
                              ("training", "samples")),
    # eval/<bench>/<step>/results.json
    "results-half-written": Bad(MMAU, half(), "not valid JSON", ACCURACY),
    "results-array": Bad(MMAU, text("[1, 2]"), "an array, not an object", ACCURACY),
    "results-folder": Bad(MMAU, folder(), "a folder, not a file", ACCURACY),
    "results-no-accuracy": Bad(MMAU, json_edit(drop("accuracy")), "no accuracy", ACCURACY),
    "results-accuracy-text": Bad(MMAU, json_edit(put("accuracy", "50%")),
                                 "accuracy is '50%', not a percentage", ACCURACY),
    "results-accuracy-null": Bad(MMAU, json_edit(put("accuracy", None)),
                                 "accuracy is null, not a percentage", ACCURACY),
    "results-accuracy-nan": Bad(MMAU, json_edit(put("accuracy", NAN)),
                                "accuracy is NaN, not a percentage", ACCURACY),
    "results-accuracy-over-100": Bad(MMAU, json_edit(put("accuracy", 150)),
                                     "accuracy is 150, not a percentage", ACCURACY),
    "results-total-text": Bad(MMAU, json_edit(put("total", "twelve")),
                              "total is 'twelve', not a whole number", ACCURACY),
    "results-correct-over-total": Bad(MMAU, json_edit(put("correct", 99)),
                                      "correct (99) is more than total (12)", ACCURACY),
    "results-no-prediction-nan": Bad(MMAU, json_edit(put("no_prediction", NAN)),
                                     "no_prediction is NaN", ACCURACY, "| 10 | 50.00 | 6/12 | - |"),
    "results-tables-array": Bad(MMAU, json_edit(put("tables", [])),
                                "tables is an array, not an object", ACCURACY),
    "results-group-accuracy-nan": Bad(MMAU, json_edit(put("tables.task.0.accuracy", NAN)),
                                      "accuracy is NaN", ACCURACY),
    "results-table-row-text": Bad(MMAU, json_edit(put("tables.task.0", "sound")),
                                  "table 'task' row 0 is a string", ACCURACY),
    "results-protocols-array": Bad(MMSU, json_edit(put("protocols", [1])),
                                   "protocols is an array, not an object", ACCURACY),
    "results-one-protocol-bad": Bad(MMSU, json_edit(put("protocols.letter.accuracy", "x")),
                                    "protocol 'letter': accuracy is 'x'", ACCURACY),
    "results-settings-array": Bad(NO_AUDIO, json_edit(put("settings", [])),
                                  "not made with --no_audio (settings.no_audio is null",
                                  ("audio",)),
    "results-no-audio-text": Bad(NO_AUDIO, json_edit(put("settings.no_audio", "yes")),
                                 "settings.no_audio is 'yes', not true", ("audio",)),
    "eval-a-file": Bad("eval", a_file(), "a file, not the eval/ folder", ("accuracy", "audio")),
    "eval-bench-a-file": Bad("eval/notes.txt", text("notes"), "a file, not a benchmark folder",
                             ()),
    "eval-step-a-file": Bad("eval/mmau/40", text("{}"), "a file, not a step folder", ()),
    "eval-not-a-step-folder": Bad("eval/mmau/latest/results.json", lambda p: (
        p.parent.mkdir(), shutil.copy(p.parents[1] / "10" / "results.json", p)),
        "latest/ is not a step folder", ()),
    "eval-step-not-canonical": Bad("eval/mmau/010/results.json", lambda p: (
        p.parent.mkdir(), shutil.copy(p.parents[1] / "10" / "results.json", p)),
        "010/ is not a step folder", ()),
    # benchmark_labels.json (the good run has none: a bad one changes nothing)
    "labels-half-written": Bad(LABELS, text('{"mmau": {"title": '), "not valid JSON", ()),
    "labels-array": Bad(LABELS, text('["mmau"]'), "an array, not an object", ()),
    "labels-entry-text": Bad(LABELS, text('{"mmau": "demo"}'),
                             "'mmau' is a string, not an object", ()),
    "labels-title-number": Bad(LABELS, text('{"mmau": {"title": 5}}'),
                               "'mmau' title is 5, not a text", ()),
    "labels-unknown-breakdown": Bad(LABELS, text('{"mmau": {"breakdown": "speaker"}}'),
                                    "breakdown 'speaker' of 'mmau' is no table", ()),
    # resolved_config.yaml and command.txt
    "config-bad-yaml": Bad(CONFIG, text("training: [a\n"), "not valid YAML", CONFIGURATION),
    "config-empty": Bad(CONFIG, text(""), "empty", CONFIGURATION),
    "config-list": Bad(CONFIG, text("- a\n- b\n"), "an array, not a mapping", CONFIGURATION),
    "config-folder": Bad(CONFIG, folder(), "a folder, not a file", CONFIGURATION),
    "config-not-utf8": Bad(CONFIG, raw(b"training: \xff\n"), "not UTF-8 text", CONFIGURATION),
    "config-training-list": Bad(CONFIG, yaml_edit(put("training", [1, 2])),
                                "'training' is an array, not a mapping", CONFIGURATION),
    "config-model-text": Bad(CONFIG, yaml_edit(put("model", "qwen")),
                             "'model' is a string, not a mapping", CONFIGURATION),
    "config-num-generations-text": Bad(CONFIG, yaml_edit(put("training.num_generations", "four")),
                                       "training.num_generations is 'four'", CONFIGURATION),
    "config-reward-weights-number": Bad(CONFIG, yaml_edit(put("training.reward_weights", 5)),
                                        "training.reward_weights is 5", CONFIGURATION),
    "config-value-nan": Bad(CONFIG, yaml_edit(put("training.beta", NAN)),
                            "training.beta is NaN", CONFIGURATION),
    "config-key-not-a-name": Bad(CONFIG, yaml_edit(put("training.1", "x")),
                                 "key 1 in training is not a name", CONFIGURATION),
    "config-unknown-template": Bad(CONFIG, yaml_edit(put("training.template", "nope")),
                                   "rewards not resolved", CONFIGURATION),
    "command-folder": Bad(COMMAND, folder(), "a folder, not a file", ("config",)),
    "command-not-utf8": Bad(COMMAND, raw(b"python train.py \xff\n"), "not UTF-8 text",
                            ("config",)),
}


# ---------------------------------------------------------------------------------------------
# What every case must give
# ---------------------------------------------------------------------------------------------

def sections(report: str, run: Path) -> dict[str, str]:
    """{section key: its body}, the run folder's path written as <run>."""
    keys = {heading: key for key, heading in SECTIONS.items()}
    parts = report.replace(str(run), "<run>").split("\n## ")[1:]
    return {keys[part.split("\n", 1)[0]]: part.split("\n", 1)[1] for part in parts}


def table_lines(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("|")]


def assert_no_nan(md: Path) -> None:
    """No NaN or Infinity in a table of the report (but the "Left out" one, which names them)
    or in a series of plots.json."""
    shown = md.read_text().split(f"\n## {SECTIONS['left_out']}\n")[0]
    for line in table_lines(shown):
        assert not re.search(r"\b(nan|inf|infinity)\b", line, flags=re.I), line

    def refuse(constant: str) -> None:
        raise AssertionError(f"plots.json holds {constant}")

    data = json.loads((md.parent / "plots" / plots.DATA_FILE).read_text(),
                      parse_constant=refuse)
    for figure in data.values():
        for panel in figure["panels"]:
            for points in panel["lines"].values():
                assert all(math.isfinite(v) for point in points for v in point), points


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("local.run_report") and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_bad_file_is_left_out_named_and_the_rest_written(
        case: Bad, good: tuple[Path, str], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    good_run, good_report = good
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    bad = run / case.path
    case.spoil(bad)
    caplog.set_level(logging.WARNING, logger="local.run_report")

    md = main(["--run_dir", str(run)])  # (a) no exception, no exit

    # (b) one warning line, naming the file and what is wrong
    lines = warnings(caplog)
    assert len(lines) == 1 and lines[0].startswith(f"{bad}: "), lines
    line = lines[0]
    assert case.reason in line and line.endswith("; left out") and "\n" not in line, line
    # (c) every section written; those the file has no part in as for the good run
    report = md.read_text()
    assert_every_section(report)
    now, before = sections(report, run), sections(good_report, good_run)
    for key in SECTIONS:
        if key not in (*case.affects, "overview", "left_out"):
            assert now[key] == before[key], key
    assert case.expect in report
    # (d) the file and the reason listed under "Left out"
    rows = [row for row in table_lines(now["left_out"]) if f"`{case.path}`" in row]
    assert len(rows) == 1 and case.reason.replace("<", "&lt;") in rows[0], now["left_out"]
    assert '- Left out: 1 entry (listed under "Left out")' in now["overview"]
    # (e) no NaN in a table or a plot; every linked plot has data
    assert_no_nan(md)
    assert_every_plot_has_data(md)


def test_the_good_run_leaves_nothing_out(good: tuple[Path, str]) -> None:
    run, report = good
    assert sections(report, run)["left_out"].strip().startswith("Nothing: every file read")
    assert "Left out:" not in sections(report, run)["overview"]


def test_the_cli_warns_in_one_line_on_stderr(tmp_path: Path) -> None:
    """`python -m local.run_report` in its own process: exit 0, the warning one stderr line."""
    run = full_run(tmp_path / "run", steps=10)
    bad = run / "eval" / "mmau" / "10" / "results.json"
    bad.write_text('{"accuracy": "high"}')
    done = subprocess.run([sys.executable, "-m", "local.run_report", "--run_dir", str(run),
                           "--plot_dir", str(tmp_path / "plots")], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    named = [line for line in done.stderr.splitlines() if str(bad) in line]
    assert named == [f"WARNING {bad}: accuracy is 'high', not a percentage; left out"], \
        done.stderr
    assert "Traceback" not in done.stderr
    assert "| `eval/mmau/10/results.json` | accuracy is 'high'" in (run / "report.md").read_text()


def test_a_folder_with_only_bad_files_is_a_one_line_error(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    run = tmp_path / "run"
    (run / "checkpoint-10").mkdir(parents=True)
    (run / "checkpoint-10" / "trainer_state.json").write_text("[]")
    with pytest.raises(SystemExit) as exit_:
        main(["--run_dir", str(run)])
    message = str(exit_.value.code)
    assert "\n" not in message and message.startswith(f"{run}: nothing to report yet (1 left out")
    assert warnings(caplog) == [f"{run}/checkpoint-10/trainer_state.json: an array, not an "
                                "object (the HF Trainer's state); left out"]
    assert not (run / "report.md").exists() and not (run / "plots").exists()


# ---------------------------------------------------------------------------------------------
# An output that cannot be written
# ---------------------------------------------------------------------------------------------

def _under_a_file(tmp: Path) -> tuple[list[str], Path, str]:
    (tmp / "a_file").write_text("x")
    return ["--out", str(tmp / "a_file" / "report.md")], tmp / "a_file" / "report.md", \
        f"{tmp / 'a_file'} is not a folder"


def _a_folder(tmp: Path) -> tuple[list[str], Path, str]:
    (tmp / "out.md").mkdir()
    return ["--out", str(tmp / "out.md")], tmp / "out.md", "it is a folder"


def _plots_under_a_file(tmp: Path) -> tuple[list[str], Path, str]:
    (tmp / "a_file").write_text("x")
    return ["--plot_dir", str(tmp / "a_file" / "plots")], tmp / "a_file" / "plots", \
        f"{tmp / 'a_file'} is not a folder"


def _read_only(tmp: Path) -> tuple[list[str], Path, str]:
    (tmp / "locked").mkdir()
    (tmp / "locked").chmod(0o555)
    return ["--out", str(tmp / "locked" / "sub" / "report.md")], \
        tmp / "locked" / "sub" / "report.md", f"{tmp / 'locked'} is not writable"


OUTPUTS = {"out-under-a-file": _under_a_file, "out-is-a-folder": _a_folder,
           "plot-dir-under-a-file": _plots_under_a_file,
           "out-in-a-read-only-folder": pytest.param(_read_only, marks=pytest.mark.skipif(
               os.geteuid() == 0, reason="root writes into read-only folders"))}


@pytest.mark.parametrize("make", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_an_unwritable_output_is_one_line_naming_the_path(make: Any, tmp_path: Path) -> None:
    run = full_run(tmp_path / "run", steps=10)
    argv, path, reason = make(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--run_dir", str(run), *argv])
    assert str(exit_.value.code) == f"{path}: cannot write the report there ({reason})"
    assert not (run / "report.md").exists()


def test_an_unwritable_output_exits_1_without_a_traceback(tmp_path: Path) -> None:
    run = full_run(tmp_path / "run", steps=10)
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "report.md"
    done = subprocess.run([sys.executable, "-m", "local.run_report", "--run_dir", str(run),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"{out}: cannot write the report there ({tmp_path / 'a_file'} is not a folder)"]


def test_an_error_while_writing_is_one_line_naming_the_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk filling up while the plots are written: the same one line."""
    run = full_run(tmp_path / "run", steps=10)

    def full(figure: Any, path: Path) -> Path:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(plots, "draw", full)
    with pytest.raises(SystemExit) as exit_:
        main(["--run_dir", str(run)])
    assert re.fullmatch(rf"{re.escape(str(run / 'plots'))}/\w+\.png: cannot write the report "
                        r"there \(No space left on device\)", str(exit_.value.code))
