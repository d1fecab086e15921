"""train.py under torchrun: 2 CPU processes (gloo) with DeepSpeed ZeRO-1 and ZeRO-3, and resume
(bit-identical to the uninterrupted run; the single-process case is tests/test_train_resume.py;
the run helpers are tests/helpers_train.py's).

Slow (a minute per run): each run starts two Python processes that load torch, DeepSpeed and a
tiny model. They go through `bash run.sh --stage train`, the launch the README documents.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from local.core.models import load_model_and_processor
from local.runs.checkpoints import complete_checkpoints
from tests.helpers import REPO, tiny_checkpoint
from tests.helpers_train import assert_same_run, cut_after, demo_data_small, train_argv

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _launch(out: Path, deepspeed: str, max_steps: int, port: int) -> list[str]:
    """The README's launch (`run.sh --stage train`) on 2 CPU processes over gloo."""
    data = demo_data_small()
    return ["bash", "run.sh", "--stage", "train", "--config", "conf/demo.yaml",
            "--model", str(tiny_checkpoint("qwen2_5_omni")), "--data_dir", str(data),
            "--exp_dir", str(out.parent), "--run_name", out.name, "--deepspeed", deepspeed,
            "--nproc", "2", "--master_port", str(port), "--",
            "--ddp_backend", "gloo", "--per_device_train_batch_size", "4",
            "--max_steps", str(max_steps), "--save_steps", "2"]


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc), so a kill reaches torchrun's workers."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _env() -> dict[str, str]:
    # run.sh uses the active environment (this one) when it satisfies requirements.txt.
    return {**os.environ, "VIRTUAL_ENV": sys.prefix, "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1"}


def _launch_entry(out: Path, family: str, deepspeed: str, port: int) -> list[str]:
    """train.py on 2 CPU processes (gloo) with the tests' reward that moves the weights: torchrun
    directly, as run.sh's stage train does (the run.sh launch itself is the kill test's)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(port), "tests/train_entry.py", *train_argv(family, out),
            "--deepspeed", deepspeed, "--ddp_backend", "gloo"]


# Each family once, each ZeRO stage once (a run pair costs about a minute).
@pytest.mark.parametrize("family,deepspeed,port,processor", [
    ("qwen2_audio", "conf/ds_zero1.json", 29631, "Qwen2AudioProcessor"),
    ("qwen2_5_omni", "conf/ds_zero3.json", 29636, "Qwen2_5OmniProcessor")],
    ids=["qwen2_audio-zero1", "qwen2_5_omni-zero3"])
def test_two_process_run_saves_loadable_checkpoints_and_resumes_bit_identical(
        tmp_path, family: str, deepspeed: str, port: int, processor: str):
    """A 2-process run and the same run cut after checkpoint-1 and resumed: same final weights
    and logs. DeepSpeed resumes from its own `global_stepN` states, strictly (transformers 5.24
    trainer.py: deepspeed_load_checkpoint(..., load_module_strict=not _is_peft_model(model)))."""
    full = tmp_path / "full"
    result = subprocess.run(_launch_entry(full, family, deepspeed, port), cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in complete_checkpoints(full, resumable=True)] == [
        "checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert (full / "resolved_config.yaml").exists() and (full / "command.txt").exists()
    loaded = load_model_and_processor(str(full / "checkpoint-3"), dtype="float32")
    initial = load_model_and_processor(str(tiny_checkpoint(family)), dtype="float32")
    saved, start = loaded.model.state_dict(), initial.model.state_dict()
    assert saved.keys() == start.keys()
    for key, value in saved.items():  # full tensors came back (ZeRO-3 gathers them on save)
        assert value.shape == start[key].shape and torch.isfinite(value).all(), key
    assert type(loaded.processor).__name__ == processor

    cut = cut_after(full, 1, tmp_path / "cut")
    result = subprocess.run(_launch_entry(cut, family, deepspeed, port + 10), cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {cut / 'checkpoint-1'}" in result.stderr
    assert_same_run(full, cut, 3)


def test_killed_run_resumes_from_its_last_complete_checkpoint(tmp_path):
    out = tmp_path / "run"
    steps = 40  # long enough to be killed mid-run
    process = subprocess.Popen(_launch(out, "conf/ds_zero1.json", steps, 29633), cwd=REPO,
                               env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 480
    while not complete_checkpoints(out, resumable=True) and time.time() < deadline:
        assert process.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.5)
    for pid in _descendants(process.pid):  # mid-run, every rank at once, as a node failure
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    time.sleep(1)
    done = complete_checkpoints(out, resumable=True)
    assert done, "no checkpoint before the deadline"
    last_step = int(done[-1].name.split("-")[1])
    assert last_step < steps, "the run finished before it could be killed"
    # An interrupted save (no trainer_state.json) must be passed over on resume.
    partial = out / f"checkpoint-{last_step + 1}"
    partial.mkdir(exist_ok=True)
    (partial / "model.safetensors").write_bytes(b"")

    result = subprocess.run(_launch(out, "conf/ds_zero1.json", steps, 29634), cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = [line for line in result.stderr.splitlines() if "resuming from" in line]
    assert resumed and resumed[0].endswith(f"resuming from {done[-1]}"), (resumed, done)
    state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == list(range(1, steps + 1)), logged  # to the checkpoint, then the next steps

    again = subprocess.run(_launch(out, "conf/ds_zero1.json", steps, 29635), cwd=REPO,
                           env=_env(), capture_output=True, text=True, timeout=540)
    assert again.returncode == 0 and "already finished" in again.stderr  # a re-run is a no-op
