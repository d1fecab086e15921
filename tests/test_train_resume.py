"""Resume restores everything: weights, optimizer, schedule and RNG (single process, no DeepSpeed).

`save_pretrained` writes a checkpoint in the original hub layout (`audio_tower.*`,
`language_model.*`) while the loaded model holds `model.audio_tower.*`, ... (transformers 5.24
renames on load: .venv/.../transformers/conversion_mapping.py, "qwen2_audio" and
"Qwen2_5OmniThinkerForConditionalGeneration"). The Trainer's own resume
(`Trainer._load_from_checkpoint`, trainer.py line 3703) loads the file with a raw
`load_state_dict(strict=False)`: no tensor matched and training went on from the initial weights
with only a warning. The strong check: a run cut after checkpoint N and resumed ends bit-identical
(weights and logged metrics) to the run that was never interrupted.

The DeepSpeed (ZeRO-1/3) variants are in tests/test_train_distributed.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from local.core.rewards import REWARDS
from local.train.checkpoints import CheckpointError
from tests.helpers_train import assert_same_run, cut_after, length_reward, make_trainer, train_argv

# Qwen3-Omni (MoE thinker): its experts are saved split and fused again on resume
# (tests/test_resume_qwen3_omni.py has the expert-level checks).
FAMILIES = ["qwen2_audio", "qwen2_5_omni", "qwen3_omni_moe"]


def _perturbed_checkpoint(trainer: Any, folder: Path) -> dict[str, torch.Tensor]:
    """Save the trainer's model with every trained weight changed (the Trainer's save path), then
    put the weights back; returns the saved state."""
    model = trainer.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.5)
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer.save_model(str(folder))
    model.load_state_dict(before)
    return expected


@pytest.fixture(scope="module", params=FAMILIES)
def trainer_and_checkpoint(request, tmp_path_factory) -> tuple[Any, Path, dict]:
    root = tmp_path_factory.mktemp(request.param)
    trainer = make_trainer(request.param, root / "run", rows=4)
    folder = root / "checkpoint-7"
    return trainer, folder, _perturbed_checkpoint(trainer, folder)


def test_resume_loads_every_weight_of_the_checkpoint(trainer_and_checkpoint) -> None:
    trainer, folder, expected = trainer_and_checkpoint
    trainer._load_from_checkpoint(str(folder))
    loaded = trainer.model.state_dict()
    assert loaded.keys() == expected.keys()
    differ = [k for k in expected if not torch.equal(loaded[k], expected[k])]
    assert not differ, f"{len(differ)} of {len(expected)} tensors not restored, e.g. {differ[:3]}"


def test_resume_loads_a_sharded_checkpoint(trainer_and_checkpoint, tmp_path: Path) -> None:
    trainer, _, expected = trainer_and_checkpoint
    model = trainer.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(expected)
    model.save_pretrained(tmp_path, max_shard_size="200KB")
    model.load_state_dict(before)
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    trainer._load_from_checkpoint(str(tmp_path))
    loaded = model.state_dict()
    assert [k for k in expected if not torch.equal(loaded[k], expected[k])] == []


@pytest.mark.parametrize("edit", ["drop", "extra", "reshape"])
def test_resume_fails_loudly_on_a_checkpoint_that_does_not_match(trainer_and_checkpoint,
                                                                tmp_path: Path, edit: str) -> None:
    trainer, folder, _ = trainer_and_checkpoint
    broken = tmp_path / "checkpoint-7"
    shutil.copytree(folder, broken)
    tensors = load_file(broken / "model.safetensors")
    name = sorted(k for k in tensors if "audio_tower" in k)[0]
    if edit == "drop":
        del tensors[name]
    elif edit == "extra":
        tensors["audio_tower.not_a_weight"] = torch.zeros(2)
        name = "audio_tower.not_a_weight"
    else:
        tensors[name] = torch.zeros(3, 1)
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as error:
        trainer._load_from_checkpoint(str(broken))
    assert name in str(error.value) and str(broken) in str(error.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_resume_restores_the_adapter(tmp_path: Path, family: str) -> None:
    """A PEFT model resumes from its adapter (PEFT's own names), not through the full loader."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = make_trainer(family, tmp_path / "run", rows=4, peft_config=lora)
    expected = _perturbed_checkpoint(trainer, tmp_path / "checkpoint-7")
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint-7"))
    loaded = trainer.model.state_dict()
    assert [k for k in expected if not torch.equal(loaded[k], expected[k])] == []


# -- the strong check: cut after checkpoint N, resume, compare with the uninterrupted run -------

@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_resumed_run_is_bit_identical_to_the_uninterrupted_one(tmp_path: Path, monkeypatch,
                                                               caplog, family: str) -> None:
    import logging

    import train

    caplog.set_level(logging.INFO)  # as train.py's own root logger on rank 0

    monkeypatch.setitem(REWARDS, "length", length_reward)
    full = tmp_path / "full"
    train.main(train_argv(family, full))
    log = json.loads((full / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert all(entry["grad_norm"] > 0 for entry in log)  # every step moved the weights
    cut = cut_after(full, 1, tmp_path / "cut")
    train.main(train_argv(family, cut))
    assert_same_run(full, cut, 3)
    log = (cut / "train.log").read_text()  # the copied run's log, continued by the resumed run
    assert log.index("starting fresh") < log.index(f"resuming from {cut / 'checkpoint-1'}")
    assert log.count('train.metrics: step 3: {"loss"') == 2  # the full run's, the resumed's


# -- --resume_from_checkpoint: honoured (a checkpoint, or `true`: output_dir's last) or refused --

class _Stop(Exception):
    """Raised where the model would load: what train.py decided before it is in the log."""


def _checkpoint(folder: Path, step: int, *, state: bool = True, states: bool = True) -> Path:
    """A checkpoint as the checks see it: weights, the optimizer and scheduler states (unless
    `states` is false: removed by keep_optimizer_states newest, or save_only_model) and (unless
    an interrupted save) the trainer state, written last."""
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
    if states:
        for name in ("optimizer.pt", "scheduler.pt"):
            (folder / name).write_bytes(b"states")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def _run_until_the_model(monkeypatch, tmp_path: Path, extra: list[str],
                         at_model: Any = None) -> tuple[str, Path]:
    """train.main up to the model load (rows stubbed; `at_model` runs there, then raises
    `_Stop`): returns train.log and the run folder."""
    import logging

    import datasets

    import train

    report = type("Report", (), {"summary": lambda self: "1 row"})()
    monkeypatch.setattr(train, "build_train_dataset",
                        lambda *a, **k: (datasets.Dataset.from_list([{"id": "a"}]), report))

    def stop(*_: Any, **__: Any) -> None:
        if at_model is not None:
            at_model()
        raise _Stop

    monkeypatch.setattr(train, "policy_source", stop)
    (tmp_path / "model").mkdir(exist_ok=True)  # a local model folder (nothing in it is read)
    run = tmp_path / "run"
    root = logging.getLogger()
    level, root.level = root.level, logging.INFO
    try:
        with pytest.raises(_Stop):
            train.main(["--model_name_or_path", str(tmp_path / "model"), "--output_dir",
                        str(run), "--use_cpu", "true", "--bf16", "false", "--report_to", "none",
                        "--max_steps", "5", *extra])
    finally:
        root.level = level
    return (run / "train.log").read_text(), run


@pytest.mark.parametrize(("extra", "expected"), [
    pytest.param([], "run/checkpoint-3", id="default-last-complete-of-output-dir"),
    pytest.param(["--resume_from_checkpoint", "true"], "run/checkpoint-3", id="true"),
    pytest.param(["--resume_from_checkpoint", "True"], "run/checkpoint-3", id="True"),
    pytest.param(["--resume_from_checkpoint", "{tmp}/other/checkpoint-1"],
                 "other/checkpoint-1", id="a-checkpoint-path"),
    pytest.param(["--resume_from_checkpoint", "{tmp}/run/checkpoint-2"], "run/checkpoint-2",
                 id="an-earlier-checkpoint"),
])
def test_resume_from_checkpoint_is_honoured(monkeypatch, tmp_path, extra, expected) -> None:
    for step in (2, 3):
        _checkpoint(tmp_path / "run" / f"checkpoint-{step}", step)
    _checkpoint(tmp_path / "run" / "checkpoint-4", 4, state=False)  # interrupted save
    _checkpoint(tmp_path / "other" / "checkpoint-1", 1)
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    log, _ = _run_until_the_model(monkeypatch, tmp_path, extra)
    assert f"resuming from {tmp_path / expected}\n" in log, log


def test_a_finished_checkpoint_named_explicitly_ends_the_run(monkeypatch, tmp_path,
                                                            caplog) -> None:
    import logging

    import train

    caplog.set_level(logging.INFO)
    _checkpoint(tmp_path / "run" / "checkpoint-2", 2)
    done = _checkpoint(tmp_path / "elsewhere" / "checkpoint-5", 5)
    monkeypatch.setattr(train, "policy_source", lambda *a, **k: pytest.fail("model loaded"))
    run = train.main(["--model_name_or_path", str(tmp_path / "no-model"), "--output_dir",
                      str(tmp_path / "run"), "--use_cpu", "true", "--max_steps", "5",
                      "--resume_from_checkpoint", str(done)])
    assert f"already finished at {done}" in (run / "train.log").read_text()


@pytest.mark.parametrize(
    ("extra", "keys", "says"),
    [
        pytest.param(["{tmp}/notes"], ["resume_from_checkpoint"], "{tmp}/notes",
                     id="a-folder-that-is-not-a-checkpoint"),
        pytest.param(["{tmp}/missing"], ["resume_from_checkpoint"], "{tmp}/missing",
                     id="no-such-path"),
        pytest.param(["{tmp}/old"], ["resume_from_checkpoint"], "{tmp}/old/checkpoint-2",
                     id="a-run-folder-names-its-checkpoint"),
        pytest.param(["{tmp}/run/checkpoint-4"], ["resume_from_checkpoint"], "trainer_state.json",
                     id="an-interrupted-save"),
        pytest.param(["{tmp}/weights.safetensors"], ["resume_from_checkpoint"], "folder",
                     id="a-file"),
        pytest.param(["{tmp}/run/checkpoint-5"], ["resume_from_checkpoint"],
                     "{tmp}/run/checkpoint-3", id="weights-cut-short-names-an-earlier-one"),
        pytest.param(["true"], ["resume_from_checkpoint"], "{tmp}/run/checkpoint-5",
                     id="true-and-the-last-is-cut-short"),
        pytest.param(["true", "--overwrite_output_dir", "true"],
                     ["resume_from_checkpoint", "overwrite_output_dir"], "starts over",
                     id="true-and-overwrite"),
        pytest.param(["{tmp}/run/checkpoint-3", "--overwrite_output_dir", "true"],
                     ["resume_from_checkpoint", "overwrite_output_dir"], "starts over",
                     id="path-and-overwrite"),
        pytest.param(["false"], ["resume_from_checkpoint"], "overwrite_output_dir",
                     id="false"),
    ],
)
def test_resume_from_checkpoint_that_cannot_be_honoured_is_refused(monkeypatch, tmp_path, request,
                                                                   extra, keys, says) -> None:
    import train

    _checkpoint(tmp_path / "run" / "checkpoint-3", 3)
    _checkpoint(tmp_path / "run" / "checkpoint-4", 4, state=False)
    if "cut-short" in request.node.callspec.id:
        cut = _checkpoint(tmp_path / "run" / "checkpoint-5", 5) / "model.safetensors"
        cut.write_bytes(cut.read_bytes()[:-4])  # a save cut short, trainer_state.json written
    _checkpoint(tmp_path / "old" / "checkpoint-2", 2)
    (tmp_path / "notes").mkdir()
    (tmp_path / "weights.safetensors").write_bytes(b"")
    for name in ("policy_source", "load_model_and_processor", "build_train_dataset"):
        monkeypatch.setattr(train, name, lambda *a, **k: pytest.fail("loaded before the check"))
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", str(tmp_path / "no-model"), "--output_dir",
                    str(tmp_path / "run"), "--use_cpu", "true", "--resume_from_checkpoint",
                    *extra])
    line = stop.value.code
    assert isinstance(line, str) and "\n" not in line and line.startswith("train.py: "), line
    assert all(f"{key}, command line" in line for key in keys), line
    assert says.replace("{tmp}", str(tmp_path)) in line, line


@pytest.mark.parametrize(("output_dir", "says"), [
    pytest.param("{tmp}/a-file", "is a file", id="a-file"),
    pytest.param("{tmp}/a-file/run", "cannot be created", id="under-a-file"),
    pytest.param("{tmp}/locked/run", "not writable", id="not-writable"),
])
def test_an_output_dir_that_cannot_be_written_is_refused(tmp_path, output_dir, says) -> None:
    import os

    import train

    (tmp_path / "a-file").write_text("")
    (tmp_path / "locked").mkdir(mode=0o500)
    if os.access(tmp_path / "locked", os.W_OK) and "locked" in output_dir:
        pytest.skip("running as a user who can write anywhere (root)")
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", str(tmp_path / "no-model"), "--output_dir",
                    output_dir.replace("{tmp}", str(tmp_path)), "--use_cpu", "true"])
    assert "output_dir, command line" in stop.value.code and says in stop.value.code


def test_resume_true_without_a_checkpoint_is_refused(monkeypatch, tmp_path) -> None:
    import train

    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", str(tmp_path / "no-model"), "--output_dir",
                    str(tmp_path / "run"), "--use_cpu", "true", "--resume_from_checkpoint",
                    "true"])
    assert "resume_from_checkpoint, command line" in stop.value.code
    assert str(tmp_path / "run") in stop.value.code


# -- only the newest checkpoint keeps its optimizer states: the others evaluate, never resume ------

def test_resume_from_an_only_evaluable_checkpoint_is_refused_by_name(monkeypatch,
                                                                     tmp_path) -> None:
    """Without its optimizer states the Trainer would go on with a fresh optimizer (DeepSpeed:
    a warning, or a ValueError about global_step folders): refused before anything loads."""
    import train

    _checkpoint(tmp_path / "run" / "checkpoint-2", 2, states=False)
    _checkpoint(tmp_path / "run" / "checkpoint-3", 3)
    named = tmp_path / "run" / "checkpoint-2"
    for name in ("policy_source", "load_model_and_processor", "build_train_dataset"):
        monkeypatch.setattr(train, name, lambda *a, **k: pytest.fail("loaded before the check"))
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", str(tmp_path / "no-model"), "--output_dir",
                    str(tmp_path / "run"), "--use_cpu", "true", "--resume_from_checkpoint",
                    str(named)])
    line = stop.value.code
    assert isinstance(line, str) and "\n" not in line and line.startswith("train.py: "), line
    assert f"{named} can be evaluated but not resumed" in line, line
    assert "optimizer.pt" in line and "resume_from_checkpoint, command line" in line, line
    assert str(tmp_path / "run" / "checkpoint-3") in line, line  # the one to resume from


def test_resume_passes_over_a_newer_only_evaluable_checkpoint_by_name(monkeypatch,
                                                                      tmp_path) -> None:
    _checkpoint(tmp_path / "run" / "checkpoint-2", 2)
    _checkpoint(tmp_path / "run" / "checkpoint-3", 3, states=False)  # e.g. save_only_model
    log, run = _run_until_the_model(monkeypatch, tmp_path, [])
    assert f"resume passes over {run / 'checkpoint-3'}" in log, log
    assert f"resuming from {run / 'checkpoint-2'}\n" in log, log


@pytest.mark.parametrize("extra", [[], ["--resume_from_checkpoint", "true"]],
                         ids=["default", "true"])
def test_a_run_folder_without_a_resumable_checkpoint_is_refused(monkeypatch, tmp_path,
                                                               extra) -> None:
    """Starting at step 0 would write over checkpoints a resume cannot continue: refused."""
    import train

    _checkpoint(tmp_path / "run" / "checkpoint-2", 2, states=False)
    _checkpoint(tmp_path / "run" / "checkpoint-3", 3, states=False)
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", str(tmp_path / "no-model"), "--output_dir",
                    str(tmp_path / "run"), "--use_cpu", "true", *extra])
    line = stop.value.code
    assert f"{tmp_path / 'run' / 'checkpoint-3'} can be evaluated but not resumed" in line, line
    assert "--overwrite_output_dir true" in line, line


_KILLER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import torch
torch.set_num_threads({threads})  # the test process's: an earlier test may have set it (the demo)
from transformers import Trainer
import train
from local.train import checkpoint_policy
from local.core.rewards import REWARDS
from tests.helpers_train import length_reward

REWARDS["length"] = length_reward
point = {point!r}
if point == "mid-save":  # checkpoint-2: weights and optimizer written, trainer_state.json not
    original = Trainer._save_rng_state
    def save_rng_state(self, output_dir):
        if self.state.global_step == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, output_dir)
    Trainer._save_rng_state = save_rng_state
else:  # checkpoint-2 complete; killed after the first file removed from checkpoint-1
    remove = checkpoint_policy._remove
    def remove_then_die(path):
        remove(path)
        os.kill(os.getpid(), signal.SIGKILL)
    checkpoint_policy._remove = remove_then_die
train.main({argv!r})
"""


@pytest.mark.slow
@pytest.mark.parametrize(("point", "resumes_from"), [
    pytest.param("mid-save", 1, id="during-the-save-of-checkpoint-2"),
    pytest.param("mid-removal", 2, id="while-checkpoint-1-loses-its-states"),
])
def test_kill_9_during_a_save_still_resumes_bit_identical(tmp_path, monkeypatch, caplog, point,
                                                          resumes_from) -> None:
    """A real SIGKILL (subprocess) inside the Trainer's save, or inside the removal of the older
    checkpoint's states: a resumable checkpoint is always left, and the resumed run ends
    bit-identical to the uninterrupted one."""
    import subprocess
    import sys

    import train
    from local.runs.checkpoints import is_resumable
    from tests.helpers import REPO

    caplog.set_level("INFO")  # as train.py's own root logger on rank 0
    family = "qwen2_5_omni"
    monkeypatch.setitem(REWARDS, "length", length_reward)
    full = tmp_path / "full"
    newest = ["--keep_optimizer_states", "newest"]  # the default (train_argv keeps all)
    train.main(train_argv(family, full) + newest)
    killed = tmp_path / "killed"
    import torch

    script = _KILLER.format(repo=str(REPO), point=point, threads=torch.get_num_threads(),
                            argv=train_argv(family, killed) + newest)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=300)  # this process's threads: the same sums
    assert result.returncode == -9, result.stderr[-3000:]
    assert not (killed / "checkpoint-3").exists()
    assert is_resumable(killed / f"checkpoint-{resumes_from}")
    if point == "mid-save":
        assert (killed / "checkpoint-2" / "optimizer.pt").exists()
        assert not (killed / "checkpoint-2" / "trainer_state.json").exists()
    train.main(train_argv(family, killed) + newest)
    log = (killed / "train.log").read_text()
    assert f"resuming from {killed / f'checkpoint-{resumes_from}'}\n" in log, log
    assert_same_run(full, killed, 3)
    assert [is_resumable(killed / f"checkpoint-{n}") for n in (1, 2, 3)] == [False, False, True]


# -- the run folder keeps rank 0's log: train.log, appended across resumes ------------------------

def test_train_log_holds_the_run_lines_warnings_and_the_global_batch(monkeypatch,
                                                                    tmp_path) -> None:
    import logging
    import warnings

    import transformers

    handlers = (list(logging.getLogger().handlers),
                list(logging.getLogger("transformers").handlers))

    def warn() -> None:
        transformers.utils.logging.get_logger("transformers.somewhere").error("tf-error")
        warnings.warn("py-warning", UserWarning, stacklevel=1)

    log, run = _run_until_the_model(monkeypatch, tmp_path, ["--dtype", "float32"], warn)
    for said in ("training rows: 1 row", "starting fresh", "dtype float32 (command line) sets "
                 "model_dtype", "global batch: 1 process x 4 per_device_train_batch_size x 2 "
                 "gradient_accumulation_steps = 8 completions = 2 prompts x 4 num_generations "
                 "per optimizer step", "tf-error", "py-warning"):
        assert said in log, (said, log)
    assert (logging.getLogger().handlers, logging.getLogger("transformers").handlers) == \
        tuple(handlers)  # nothing left behind
    _checkpoint(run / "checkpoint-1", 1)
    again, _ = _run_until_the_model(monkeypatch, tmp_path, [])
    assert again.startswith(log) and f"resuming from {run / 'checkpoint-1'}" in again


def test_trainer_metrics_go_to_train_log_only(tmp_path) -> None:
    import logging

    from transformers import TrainerState

    from local.train.run_log import MetricsLog, RunLog

    with RunLog(enabled=True) as run_log:
        run_log.open(tmp_path)
        state = TrainerState()
        state.global_step = 7
        MetricsLog().on_log(None, state, None, logs={"loss": 0.25, "reward": 1.0})
        logging.getLogger("train").info("a line")
    text = (tmp_path / "train.log").read_text()
    assert 'step 7: {"loss": 0.25, "reward": 1.0}' in text and "a line" in text
    assert not logging.getLogger("train.metrics").propagate  # the console has the bar's copy
