"""Half-written checkpoints: one rule for the mmau/mmsu stages (`local.eval.steps`) and for
`evaluate_*.py --model`, skipped ones named one line each, truncated weights named in one line.

The rule (`local.runs.checkpoints.checkpoint_problem`): a training checkpoint (a `checkpoint-N`
folder, or one holding files only a Trainer save writes) is evaluable when it holds weights and
trainer_state.json (the HF Trainer writes it last) and its weight files are whole
(`local.core.models.weights_problem`); any other local folder (a base model) only needs whole
weight files; a hub id is left to the loader.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import evaluate_mmau
from local.core.models import ModelLoadError, load_model_and_processor, weights_problem
from local.eval.steps import steps
from local.runs.checkpoints import checkpoint_problem, is_evaluable, model_problem
from tests.helpers import REPO


def _safetensors(path: Path, cut: int = 0) -> None:
    """A small valid safetensors file at `path`, its last `cut` bytes removed (a killed save)."""
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path))
    if cut:
        path.write_bytes(path.read_bytes()[:-cut])


def _torch_bin(path: Path, cut: int = 0) -> None:
    torch.save({"w": torch.arange(64, dtype=torch.float32)}, path)
    if cut:
        path.write_bytes(path.read_bytes()[:-cut])


def _index(folder: Path, shards: list[str]) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {f"w{i}": s for i, s in enumerate(shards)}}))


# Each layout: files to write, as {name: how}; how = "ok", "cut" (truncated), "json", "bin-ok",
# "bin-cut", or ("index", [shards]) for a shard index.
def _build(folder: Path, files: dict) -> Path:
    folder.mkdir(parents=True)
    for name, how in files.items():
        target = folder / name
        if how == "ok":
            _safetensors(target)
        elif how == "cut":
            _safetensors(target, cut=100)
        elif how == "bin-ok":
            _torch_bin(target)
        elif how == "bin-cut":
            _torch_bin(target, cut=200)
        elif isinstance(how, tuple):
            _index(folder, how[1])
        else:
            target.write_text("{}")
    return folder


STATE = {"trainer_state.json": "json"}
LAYOUTS = [
    # (folder name, files, the problem's words, or None: evaluable)
    pytest.param("checkpoint-5", {"model.safetensors": "ok", **STATE}, None, id="complete"),
    pytest.param("checkpoint-5", {"model.safetensors": "ok"}, "no trainer_state.json",
                 id="checkpoint-without-trainer-state"),
    pytest.param("checkpoint-5", STATE, "no weights", id="checkpoint-without-weights"),
    pytest.param("checkpoint-5", {}, "no weights", id="empty-checkpoint"),
    pytest.param("checkpoint-5", {"model.safetensors": "cut", **STATE},
                 "model.safetensors: truncated", id="checkpoint-with-truncated-weights"),
    pytest.param("checkpoint-5", {"model-1.safetensors": "ok", "model-2.safetensors": "cut",
                                  "index": ("index", ["model-1.safetensors",
                                                      "model-2.safetensors"]), **STATE},
                 "model-2.safetensors: truncated", id="sharded-one-shard-truncated"),
    pytest.param("checkpoint-5", {"model-1.safetensors": "ok",
                                  "index": ("index", ["model-1.safetensors",
                                                      "model-2.safetensors"]), **STATE},
                 "model-2.safetensors: missing", id="sharded-one-shard-missing"),
    pytest.param("checkpoint-5", {"adapter_model.safetensors": "ok", **STATE}, None,
                 id="lora-adapter-complete"),
    pytest.param("checkpoint-5", {"adapter_model.safetensors": "cut", **STATE},
                 "adapter_model.safetensors: truncated", id="lora-adapter-truncated"),
    pytest.param("checkpoint-5", {"pytorch_model.bin": "bin-cut", **STATE},
                 "pytorch_model.bin: truncated", id="torch-bin-truncated"),
    pytest.param("checkpoint-5", {"pytorch_model.bin": "bin-ok", **STATE}, None,
                 id="torch-bin-complete"),
    pytest.param("final", {"model.safetensors": "ok", "training_args.bin": "json"},
                 "no trainer_state.json", id="trainer-save-under-another-name"),
    pytest.param("base-model", {"model.safetensors": "ok", "config.json": "json"}, None,
                 id="base-model-folder-stays-loadable"),
    pytest.param("base-model", {"model.safetensors": "cut", "config.json": "json"},
                 "model.safetensors: truncated", id="base-model-truncated"),
    pytest.param("base-model", {"config.json": "json"}, None,
                 id="base-model-without-weights-left-to-the-loader"),
]


@pytest.mark.parametrize(("name", "files", "problem"), LAYOUTS)
def test_one_rule_for_the_stage_and_for_model(tmp_path: Path, name: str, files: dict,
                                              problem: str | None) -> None:
    folder = _build(tmp_path / "run" / name, files)
    found = model_problem(str(folder))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found
        assert "\n" not in found
    if name.startswith("checkpoint-"):  # the stage takes exactly the folders --model takes
        assert checkpoint_problem(folder) == found
        assert is_evaluable(folder) == (problem is None)
        assert [s for s, _ in steps("base", tmp_path / "run", quiet=True)] == (
            [0, 5] if problem is None else [0])


def test_a_hub_id_is_left_to_the_loader() -> None:
    assert model_problem("Qwen/Qwen2.5-Omni-7B") is None


@pytest.mark.parametrize(
    ("files", "words"),
    [
        pytest.param({"model.safetensors": "cut"}, ["truncated", "interrupted",
                                                    "evaluate another step"], id="cut"),
        pytest.param({"model.safetensors": "json"}, ["not a safetensors file"], id="garbage"),
    ],
)
def test_a_broken_weight_file_is_named_with_what_to_do(tmp_path: Path, files: dict,
                                                       words: list[str]) -> None:
    folder = _build(tmp_path / "m", files)
    problem = weights_problem(folder)
    assert problem is not None and problem.startswith(str(folder / "model.safetensors"))
    for word in words:
        assert word in problem, problem


def test_skipped_checkpoints_are_logged_one_line_each(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    _build(run / "checkpoint-10", {"model.safetensors": "ok", **STATE})
    _build(run / "checkpoint-20", {"model.safetensors": "ok"})  # being written
    _build(run / "checkpoint-30", {"model.safetensors": "cut", **STATE})
    with caplog.at_level(logging.INFO, logger="local.eval.steps"):
        plan = steps("base", run)
    assert [s for s, _ in plan] == [0, 10]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2, skipped
    assert "checkpoint-20" in skipped[0] and "no trainer_state.json" in skipped[0]
    assert "checkpoint-30" in skipped[1] and "truncated" in skipped[1]
    assert all("\n" not in line for line in skipped)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="local.eval.steps"):
        steps("base", run, quiet=True)  # ranks other than 0: nothing
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    with pytest.raises(SystemExit, match="checkpoint-30/model.safetensors: truncated"):
        steps("base", run, "10 30")  # named explicitly: refused, with the reason


@pytest.fixture()
def mmau_args(tmp_path: Path) -> list[str]:
    """Data options that are never read: the model is refused before the data is loaded."""
    return ["--mmau_json", str(tmp_path / "never-read.json"), "--out_dir", str(tmp_path / "out")]


def test_model_without_completion_marker_is_refused_as_by_the_stage(
        tiny_omni: Path, tmp_path: Path, mmau_args: list[str]) -> None:
    folder = tmp_path / "run" / "checkpoint-5"
    shutil.copytree(tiny_omni, folder)  # weights, but no trainer_state.json
    with pytest.raises(SystemExit, match=r"--model: .*checkpoint-5 is incomplete .*no "
                       "trainer_state.json"):
        evaluate_mmau.main(["--model", str(folder), *mmau_args])
    assert [s for s, _ in steps("base", tmp_path / "run", quiet=True)] == [0]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_truncated_weights_are_one_line_without_a_traceback(tiny_omni: Path, tmp_path: Path,
                                                            mmau_args: list[str]) -> None:
    folder = tmp_path / "base-model"  # not a checkpoint-N folder: a base model, still checked
    shutil.copytree(tiny_omni, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelLoadError, match="model.safetensors: truncated"):
        load_model_and_processor(str(folder))
    done = subprocess.run([sys.executable, "evaluate_mmau.py", "--model", str(folder),
                           *mmau_args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"--model: {weights}: truncated safetensors file")
    assert "interrupted" in lines[0]
