"""Checkpoints on disk: the two rules (evaluable, resumable), optimizer states kept in the newest
checkpoint only (`keep_optimizer_states newest`, the default), and train.py's free-disk check.

A 7B checkpoint with its ZeRO optimizer partitions is about 135 GB, its weights about 18 GB: the
states are what fills a disk. Every checkpoint keeps its weights (evaluation), only the newest its
resume states, removed from the previous one once the new one is complete. The kill -9 cases
(a save cut short, a removal cut short) are in tests/test_train_resume.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from transformers.trainer_utils import rotate_checkpoints

from local.core.rewards import REWARDS
from local.runs.checkpoints import (
    checkpoint_problem,
    is_evaluable,
    is_resumable,
    newest_resumable,
    resume_problem,
)
from local.train import checkpoint_policy
from local.train.checkpoint_policy import KeepNewestStates, estimate_disk, prune_older_states
from local.train.config import parse_args
from tests.helpers import REPO, tiny_checkpoint
from tests.helpers_train import length_reward, train_argv

KEPT = {"model.safetensors", "config.json", "tokenizer_config.json", "processor_config.json",
        "trainer_state.json", "training_args.bin"}
PLAIN = {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
DEEPSPEED = {"scheduler.pt", "latest", "rng_state_0.pth", "rng_state_1.pth", "zero_to_fp32.py",
             "global_step{n}/mp_rank_00_model_states.pt",
             "global_step{n}/zero_pp_rank_0_mp_rank_00_optim_states.pt",
             "global_step{n}/zero_pp_rank_1_mp_rank_00_optim_states.pt"}


def _write(folder: Path, step: int, names: set[str]) -> Path:
    """A checkpoint folder with `names` ({n}: the step); `latest` names global_step{step}."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name.format(n=step)
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "model.safetensors":
            save_file({"w": torch.zeros(4)}, str(path))
        elif name == "trainer_state.json":
            path.write_text(json.dumps({"global_step": step}))
        elif name == "latest":
            path.write_text(f"global_step{step}")
        else:
            path.write_bytes(b"x" * 1000)
    return folder


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# -- the two rules -------------------------------------------------------------------------------

@pytest.mark.parametrize(("names", "evaluable", "resumable", "says"), [
    pytest.param(KEPT | PLAIN, True, True, None, id="plain-with-states"),
    pytest.param(KEPT | DEEPSPEED, True, True, None, id="deepspeed-with-states"),
    pytest.param(KEPT, True, False, "optimizer.pt", id="states-removed-or-save-only-model"),
    pytest.param(KEPT | {"optimizer.pt", "rng_state.pth"}, True, False, "scheduler.pt",
                 id="no-scheduler"),
    pytest.param(KEPT | DEEPSPEED - {"latest"}, True, False, "latest", id="deepspeed-no-latest"),
    pytest.param(KEPT | {n for n in DEEPSPEED if "optim_states" not in n}, True, False,
                 "optim_states", id="deepspeed-no-optimizer-partitions"),
    pytest.param((KEPT | PLAIN) - {"trainer_state.json"}, False, False, "trainer_state.json",
                 id="torn-save"),
])
def test_evaluable_and_resumable_are_one_rule_each(tmp_path, names, evaluable, resumable,
                                                   says) -> None:
    folder = _write(tmp_path / "run" / "checkpoint-3", 3, names)
    assert is_evaluable(folder) == evaluable
    assert is_resumable(folder) == resumable
    problem = resume_problem(folder)
    assert (problem is None) == resumable
    if says is not None:
        assert says in problem and str(folder) in problem and "\n" not in problem, problem


def test_deepspeed_states_of_another_step_do_not_resume(tmp_path) -> None:
    folder = _write(tmp_path / "checkpoint-3", 3, KEPT | DEEPSPEED)
    (folder / "latest").write_text("global_step2")
    (folder / "global_step3").rename(folder / "global_step2")
    assert is_evaluable(folder) and not is_resumable(folder)
    assert "global_step3" in resume_problem(folder)


def test_resume_takes_the_newest_resumable_and_names_the_ones_passed_over(tmp_path) -> None:
    run = tmp_path / "run"
    for step in (1, 2):
        _write(run / f"checkpoint-{step}", step, KEPT | PLAIN)
    _write(run / "checkpoint-3", 3, KEPT)  # only evaluable
    _write(run / "checkpoint-4", 4, PLAIN | {"model.safetensors"})  # torn: not a finished save
    last, passed = newest_resumable(run)
    assert last == run / "checkpoint-2"
    assert [p for p, _ in passed] == [run / "checkpoint-3"]
    assert "optimizer.pt" in passed[0][1]


# -- pruning: the newest checkpoint keeps the states, every checkpoint its weights ----------------

def _save(run: Path, step: int) -> None:
    """What the Trainer calls after its save of checkpoint-`step` (main process)."""
    args = SimpleNamespace(output_dir=str(run), should_save=True)
    KeepNewestStates().on_save(args, SimpleNamespace(global_step=step), SimpleNamespace())


@pytest.mark.parametrize("layout", [PLAIN, DEEPSPEED], ids=["plain", "deepspeed"])
def test_older_states_go_once_the_new_checkpoint_is_complete(tmp_path, layout) -> None:
    run = tmp_path / "run"
    for step in (1, 2, 3):
        _write(run / f"checkpoint-{step}", step, KEPT | layout)
    before = {step: os.stat(run / f"checkpoint-{step}").st_mtime_ns for step in (1, 2, 3)}
    _save(run, 3)
    for step in (1, 2):
        assert _files(run / f"checkpoint-{step}") == KEPT  # weights, processor, trainer state
        assert is_evaluable(run / f"checkpoint-{step}")
        assert not is_resumable(run / f"checkpoint-{step}")
    assert _files(run / "checkpoint-3") == {n.format(n=3) for n in KEPT | layout}
    assert is_resumable(run / "checkpoint-3")
    after = {step: os.stat(run / f"checkpoint-{step}").st_mtime_ns for step in (1, 2, 3)}
    assert after == before  # HF's rotation orders checkpoints by mtime


@pytest.mark.parametrize("damage", ["no-trainer-state", "no-optimizer", "weights-cut-short"])
def test_a_new_checkpoint_that_cannot_resume_leaves_the_older_states(tmp_path, caplog,
                                                                     damage) -> None:
    run = tmp_path / "run"
    _write(run / "checkpoint-1", 1, KEPT | PLAIN)
    new = _write(run / "checkpoint-2", 2, KEPT | PLAIN)
    if damage == "no-trainer-state":
        (new / "trainer_state.json").unlink()
    elif damage == "no-optimizer":
        (new / "optimizer.pt").unlink()
    else:
        weights = new / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-8])
    with caplog.at_level(logging.WARNING):
        _save(run, 2)
    assert _files(run / "checkpoint-1") == KEPT | PLAIN
    assert str(new) in caplog.text and "checkpoint-1" in caplog.text


def test_newer_checkpoints_and_unfinished_saves_are_left_alone(tmp_path) -> None:
    run = tmp_path / "run"
    _write(run / "checkpoint-1", 1, PLAIN | {"model.safetensors"})  # torn earlier save
    _write(run / "checkpoint-2", 2, KEPT | PLAIN)
    _write(run / "checkpoint-3", 3, KEPT | PLAIN)
    _write(run / "checkpoint-4", 4, KEPT | PLAIN)  # from an earlier attempt, beyond the resume
    (run / "notes").mkdir()
    assert [p.name for p, _ in prune_older_states(run, 3)] == ["checkpoint-2"]
    assert _files(run / "checkpoint-1") == PLAIN | {"model.safetensors"}
    assert _files(run / "checkpoint-4") == KEPT | PLAIN


def test_save_total_limit_still_removes_the_oldest(tmp_path) -> None:
    """transformers 5.24 rotates by mtime (rotate_checkpoints(use_mtime=True)): removing files
    from an older checkpoint must not make it look newer."""
    run = tmp_path / "run"
    now = time.time()
    for step in (1, 2, 3):
        folder = _write(run / f"checkpoint-{step}", step, KEPT | PLAIN)
        os.utime(folder, (now - 100 + 10 * step, now - 100 + 10 * step))
    _save(run, 2)
    _save(run, 3)
    rotate_checkpoints(str(run), save_total_limit=2, use_mtime=True)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-2", "checkpoint-3"]


# -- a run: states in the newest checkpoint only, every checkpoint evaluable ---------------------

@pytest.mark.slow
@pytest.mark.parametrize(("extra", "kept", "with_states"), [
    pytest.param(["--keep_optimizer_states", "newest"], [1, 2, 3], [3], id="newest"),
    pytest.param(["--keep_optimizer_states", "all"], [1, 2, 3], [1, 2, 3], id="all"),
    pytest.param(["--keep_optimizer_states", "newest", "--save_total_limit", "2"], [2, 3], [3],
                 id="newest-save_total_limit-2"),
])
def test_a_run_keeps_optimizer_states_in_its_newest_checkpoint(tmp_path, monkeypatch, extra,
                                                               kept, with_states) -> None:
    import train

    monkeypatch.setitem(REWARDS, "length", length_reward)
    run = tmp_path / "run"
    train.main(train_argv("qwen2_5_omni", run) + extra)
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [int(p.name.split("-")[1]) for p in checkpoints] == kept
    assert all(checkpoint_problem(p) is None for p in checkpoints)  # every one evaluates
    assert [int(p.name.split("-")[1]) for p in checkpoints if is_resumable(p)] == with_states
    for folder in checkpoints:  # weights and processor everywhere
        assert {"model.safetensors", "tokenizer_config.json", "trainer_state.json"} <= \
            _files(folder)


# -- the free-disk check at train start ------------------------------------------------------------

class _Stop(Exception):
    """Raised where the model would load."""


def _start(monkeypatch, tmp_path: Path, free: int, extra: list[str]) -> str:
    """train.main up to the model load with `free` bytes free on output_dir's disk; train.log."""
    import datasets

    import train

    report = SimpleNamespace(summary=lambda: "1 row")
    monkeypatch.setattr(train, "build_train_dataset",
                        lambda *a, **k: (datasets.Dataset.from_list([{"id": "a"}]), report))
    monkeypatch.setattr(train, "policy_source", lambda *a, **k: (_ for _ in ()).throw(_Stop()))
    monkeypatch.setattr(checkpoint_policy.shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=10 * free, used=9 * free, free=free))
    run = tmp_path / "run"
    root = logging.getLogger()
    level, root.level = root.level, logging.INFO
    try:
        with pytest.raises(_Stop):
            train.main(["--model_name_or_path", str(tiny_checkpoint("qwen2_5_omni")),
                        "--output_dir", str(run), "--use_cpu", "true", "--bf16", "false",
                        "--report_to", "none", "--max_steps", "1000", "--save_steps", "100",
                        *extra])
    finally:
        root.level = level
    return (run / "train.log").read_text()


def _tiny_estimate(extra: list[str] = ()) -> object:
    config, model_args = parse_args(
        ["--model_name_or_path", str(tiny_checkpoint("qwen2_5_omni")), "--output_dir", "x",
         "--use_cpu", "true", "--bf16", "false", "--max_steps", "1000", "--save_steps", "100",
         *extra])
    return estimate_disk(config, model_args)


def test_disk_check_stops_in_one_line_when_two_checkpoints_do_not_fit(monkeypatch,
                                                                      tmp_path) -> None:
    import train

    one = _tiny_estimate().checkpoint
    monkeypatch.setattr(checkpoint_policy.shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=10**12, used=0, free=2 * one - 1))
    for name in ("policy_source", "load_model_and_processor"):
        monkeypatch.setattr(train, name, lambda *a, **k: pytest.fail("loaded before the check"))
    monkeypatch.setattr(train, "build_train_dataset", lambda *a, **k: (
        __import__("datasets").Dataset.from_list([{"id": "a"}]),
        SimpleNamespace(summary=lambda: "1 row")))
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", str(tiny_checkpoint("qwen2_5_omni")), "--output_dir",
                    str(tmp_path / "run"), "--use_cpu", "true", "--bf16", "false",
                    "--max_steps", "1000", "--save_steps", "100"])
    line = stop.value.code
    assert isinstance(line, str) and "\n" not in line and line.startswith("train.py: "), line
    assert "cannot hold two checkpoints" in line and str(tmp_path) in line, line
    assert "--check_disk false" in line, line


def test_disk_check_warns_when_the_run_may_not_fit(monkeypatch, tmp_path) -> None:
    estimate = _tiny_estimate()
    assert estimate.saves == 10 and estimate.run > 3 * estimate.checkpoint
    log = _start(monkeypatch, tmp_path, estimate.run - 1, [])
    assert "WARNING" in log and "may not hold this run" in log, log
    assert "10 checkpoints" in log and "keep_optimizer_states newest" in log, log


def test_disk_check_logs_the_estimate_and_can_be_skipped(monkeypatch, tmp_path) -> None:
    log = _start(monkeypatch, tmp_path, 10**15, [])
    assert "disk: one checkpoint" in log and "may not hold" not in log, log
    log = _start(monkeypatch, tmp_path / "again", 1, ["--check_disk", "false"])
    assert "disk: one checkpoint" not in log


def test_keeping_every_state_makes_the_run_larger() -> None:
    newest, every = _tiny_estimate(), _tiny_estimate(["--keep_optimizer_states", "all"])
    assert newest.checkpoint == every.checkpoint
    assert every.run - newest.run == 8 * newest.states  # 10 sets of states instead of 2


@pytest.mark.parametrize(("model", "deepspeed", "low", "high"), [
    pytest.param("Qwen2.5-Omni-7B", "conf/ds_zero1.json", 120e9, 160e9, id="omni7b-zero1"),
    pytest.param("Qwen2.5-Omni-7B", None, 50e9, 70e9, id="omni7b-no-deepspeed"),
])
def test_real_model_estimates(model_configs, model, deepspeed, low, high) -> None:
    """The issue's 120-160 GB per 7B checkpoint under ZeRO-1: weights bf16 (2 B x 8.93B) +
    DeepSpeed's 16-bit module copy (2 B x 8.93B) + fp32 master, m, v (12 B x the trained 8.25B:
    the vision tower is frozen)."""
    config, model_args = parse_args(
        ["--config", str(REPO / "conf/grpo.yaml"), "--model_name_or_path",
         str(model_configs / model), "--output_dir", "x", "--use_cpu", "true"])
    config.deepspeed = str(REPO / deepspeed) if deepspeed else None  # as train.py's, read here
    estimate = estimate_disk(config, model_args)
    assert 17.5e9 < estimate.weights < 18.2e9
    assert low < estimate.checkpoint < high, estimate
    assert estimate.saves == 10
