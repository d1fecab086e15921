"""`run.sh --stage curate` walked with training: curate the tiny set, then train on what it kept.

One call, `--stage curate --stop_stage train --train_selection curate`: the curation writes its
table and selection under `<data_dir>/curate/`, and train.py gets that selection.json (found by
`python -m local.curate --where` with the same options) and trains on those rows only. Without
--train_selection curate a range skips the stage (it costs items x 2k generations).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, tiny_checkpoint
from tests.helpers_train import demo_data_small

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run_sh(ws: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "CONDA_PREFIX": "", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "run.sh", "--exp_dir", str(ws / "exp"), "--data_dir",
                           str(ws / "data"), "--config", "conf/demo.yaml", "--model",
                           str(tiny_checkpoint("qwen2_5_omni")), "--nproc", "1", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_curate_then_train_on_the_selection_in_one_call(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "avqa").symlink_to(demo_data_small() / "avqa")
    result = _run_sh(tmp_path, "--stage", "curate", "--stop_stage", "train", "--train_selection",
                     "curate", "--run_name", "curated", "--deepspeed", "none",
                     "--curate_args", "--k 2 --max_new_tokens 4 --limit 12 --rule all "
                     "--dtype float32",
                     "--train_args", "--max_steps 1 --num_generations 4 "
                     "--per_device_train_batch_size 4 --max_completion_length 6 "
                     "--ddp_backend gloo")
    assert result.returncode == 0, result.stderr[-4000:]
    selections = list((tmp_path / "data" / "curate").glob("*/*/selection.json"))
    assert len(selections) == 1
    kept = json.loads(selections[0].read_text())["ids"]
    assert len(kept) == 12  # --rule all over --limit 12 items
    assert f"--train_selection {selections[0]}" in result.stderr
    assert f"train_selection {selections[0]}: 12 rows selected, 12 trained on" in result.stderr
    assert (tmp_path / "exp" / "curated" / "checkpoint-1").is_dir()


def test_a_range_skips_curate_unless_training_takes_its_selection(tmp_path: Path) -> None:
    result = _run_sh(tmp_path, "--stage", "prepare", "--stop_stage", "train", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Stage curate: skipped" in result.stderr and "-m local.curate" not in result.stderr
    missing = _run_sh(tmp_path, "--stage", "train", "--train_selection", "curate")
    assert missing.returncode != 0
    assert "no " in missing.stderr and "selection.json yet; run --stage curate first" \
        in missing.stderr
