"""local/eval/prediction_log.py: prediction logs survive a kill, final files are written
atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from local.eval.prediction_log import PredictionLog, check_settings, clear, read_logs
from local.util.fsio import atomic_write_json, atomic_write_text


def _log(folder: Path, rank: int) -> Path:
    return folder / "partial" / f"rank{rank}.jsonl"


def test_appended_predictions_are_on_disk_before_close(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, rank=0)
    log.append({"id": "a", "response": "x"})
    assert read_logs(tmp_path) == {"a": {"id": "a", "response": "x"}}  # flushed, not buffered
    log.close()


@pytest.mark.parametrize(
    ("tail", "expected_ids", "why"),
    [
        pytest.param("", ["a", "b"], "a clean log", id="clean"),
        pytest.param('{"id": "c", "resp', ["a", "b"], "killed mid-line: the torn line is cut",
                     id="torn-last-line"),
        pytest.param('{"id": "c"}', ["a", "b"], "a full object but no newline: not known to be "
                     "complete, redone", id="no-final-newline"),
    ],
)
def test_a_torn_last_line_is_repaired_before_appending(tmp_path: Path, tail: str,
                                                       expected_ids: list[str], why: str) -> None:
    path = _log(tmp_path, 0)
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "a"}\n{"id": "b"}\n' + tail)
    with PredictionLog(tmp_path, rank=0) as log:
        assert sorted(read_logs(tmp_path)) == expected_ids, why
        log.append({"id": "d"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [*expected_ids, "d"], why


def test_read_logs_merges_ranks_and_skips_unreadable_lines(tmp_path: Path) -> None:
    for rank, body in [(0, '{"id": "a", "r": 0}\nGARBAGE\n{"id": "b"}\n'),
                       (1, '{"id": "a", "r": 1}\n{"no_id": 1}\n{"id": "c"}\n{"id": "d", "re')]:
        _log(tmp_path, rank).parent.mkdir(parents=True, exist_ok=True)
        _log(tmp_path, rank).write_text(body)
    done = read_logs(tmp_path)
    assert sorted(done) == ["a", "b", "c"]
    assert done["a"]["r"] == 0  # first wins, rank order


def test_atomic_write_leaves_no_temporary_files_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "results.json"
    atomic_write_json(target, {"accuracy": 1.0})
    atomic_write_text(target, '{"accuracy": 2.0}')
    assert json.loads(target.read_text()) == {"accuracy": 2.0}
    assert os.listdir(target.parent) == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    atomic_write_json(target, {"accuracy": 1.0})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"accuracy": 1.0}
    assert os.listdir(tmp_path) == ["results.json"]


def test_settings_guard_refuses_to_mix_runs(tmp_path: Path) -> None:
    check_settings(tmp_path, {"model": "a", "template": "default"})
    check_settings(tmp_path, {"model": "b", "template": "default"})  # no predictions yet: fine
    with PredictionLog(tmp_path, 0) as log:
        log.append({"id": "q"})
    check_settings(tmp_path, {"model": "b", "template": "default"})  # same settings: resume
    with pytest.raises(SystemExit, match="model: 'b' -> 'c'.*--overwrite"):
        check_settings(tmp_path, {"model": "c", "template": "default"})
    clear(tmp_path, [])
    check_settings(tmp_path, {"model": "c", "template": "default"})
    assert read_logs(tmp_path) == {}
