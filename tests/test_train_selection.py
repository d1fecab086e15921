"""`--train_selection`: training takes the rows a curation kept (selection.json), by id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import train
from local.core.rewards import REWARDS
from local.train.dataset import build_train_dataset
from local.train.selection import SelectionError, read_selection
from tests.helpers_train import demo_data_small, length_reward, train_argv


def _selection(tmp_path: Path, ids: list[str], train_data: str | None = None,
               name: str = "selection.json") -> Path:
    avqa = str(demo_data_small() / "avqa")
    path = tmp_path / name
    path.write_text(json.dumps({"train_data": train_data or avqa, "rule": "audio_and_spread",
                                "ids": ids}))
    return path


def test_the_selected_rows_and_only_they_are_trained_on(tmp_path: Path) -> None:
    avqa = demo_data_small() / "avqa"
    ids = read_selection(_selection(tmp_path, ["avqa-train-3", "avqa-train-0", "avqa-train-17"]),
                         avqa)
    dataset, report = build_train_dataset(avqa, "avqa", selection=ids)
    assert [row["id"] for row in dataset] == ["avqa-train-0", "avqa-train-3", "avqa-train-17"]
    assert report.read == 3 and report.skipped == 0
    full, _ = build_train_dataset(avqa, "avqa")
    by_id = {row["id"]: row for row in full}
    for row in dataset:  # the same row, audio included, as without the selection
        assert row["answer"] == by_id[row["id"]]["answer"]
        assert row["audio_bytes"] == by_id[row["id"]]["audio_bytes"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "not found"),
    ("{not json", "not a selection file"),
    ({"ids": "avqa-train-0"}, "no list of row ids"),
    ({"ids": [], "rule": "spread"}, "kept no row"),
    ({"ids": ["avqa-train-0"], "train_data": "/elsewhere/avqa"}, "was made from /elsewhere/avqa"),
], ids=["missing", "not-json", "ids-not-a-list", "empty", "other-data"])
def test_a_selection_training_cannot_use_is_named(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "selection.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(SelectionError, match=message):
        read_selection(path, demo_data_small() / "avqa")


def test_ids_the_data_does_not_have_are_refused(tmp_path: Path) -> None:
    avqa = demo_data_small() / "avqa"
    ids = read_selection(_selection(tmp_path, ["avqa-train-0", "avqa-train-999",
                                               "avqa-val-1"]), avqa)
    with pytest.raises(SelectionError, match=r"2 of its 3 ids are not rows.*avqa-train-999"):
        build_train_dataset(avqa, "avqa", selection=ids)


def test_train_py_trains_on_the_selection_and_says_so(tmp_path: Path, monkeypatch,
                                                      caplog) -> None:
    monkeypatch.setitem(REWARDS, "length", length_reward)
    selection = _selection(tmp_path, [f"avqa-train-{i}" for i in range(4)])
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        train.main([*train_argv("qwen2_5_omni", out, max_steps=1), "--train_selection",
                    str(selection)])
    assert "train_selection" in caplog.text and "4 rows selected, 4 trained on" in caplog.text
    assert (out / "checkpoint-1").is_dir()


def test_train_py_refuses_a_selection_of_other_data_in_one_line(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.setitem(REWARDS, "length", length_reward)
    selection = _selection(tmp_path, ["avqa-train-0"], train_data=str(tmp_path / "other"))
    with pytest.raises(SystemExit, match="was made from .*other, not from --train_data"):
        train.main([*train_argv("qwen2_5_omni", tmp_path / "run", max_steps=1),
                    "--train_selection", str(selection)])
