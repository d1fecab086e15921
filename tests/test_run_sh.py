"""run.sh: option parsing and checks, stage selection, per-stage options, the settings every
stage shares (model, template, training data) and the environment set-up, by dry runs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def run_sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": "", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", "run.sh", *args], cwd=REPO, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def commands(stderr: str) -> list[str]:
    """The command lines run.sh printed (`[run.sh] + ...`)."""
    return [line.split("[run.sh] + ", 1)[1] for line in stderr.splitlines()
            if "[run.sh] + " in line]


def command_of(stderr: str, needle: str) -> list[str]:
    return shlex.split(next(c for c in commands(stderr) if needle in c))


def value_after(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


def test_help_lists_every_option_with_its_default() -> None:
    result = run_sh("--help")
    assert result.returncode == 0
    for option, default in [("--stage", ""), ("--model", "from --config"),
                            ("--deepspeed", "conf/ds_zero1.json"), ("--nproc", "auto"),
                            ("--template", "from --config"), ("--dry_run", "false"),
                            ("--train_args", ""), ("--master_port", "auto")]:
        line = next(line for line in result.stdout.splitlines()
                    if line.strip().startswith(option + " "))
        assert line.rstrip().endswith(f"[{default}]"), line


# (arguments, the one error line); each is refused before anything runs, also under --dry_run.
BAD_COMMAND_LINES = [
    ([], "--stage is required"),
    (["--stage", "bogus"], "unknown stage 'bogus'"),
    (["--stage", "test", "--frobnicate", "1"], "unknown option --frobnicate"),
    (["--stage", "train", "--nproc"], "--nproc needs a value"),
    (["--stage", "mmsu", "--stop_stage", "train"], "comes before"),
    (["--stage", "test", "--stop_stage", "mmsu"], "runs alone"),
    (["--stage", "test", "stray"], "unexpected argument 'stray'"),
    (["--stage", "prepare", "--dry_run", "yes"], "--dry_run takes true or false, not 'yes'"),
    (["--stage", "prepare", "--dry_run=1"], "--dry_run takes true or false, not '1'"),
    (["--stage", "prepare", "--with_no_audio", "maybe"], "--with_no_audio takes true or false"),
    (["--stage", "mmau", "--overwrite", "1"], "--overwrite takes true or false, not '1'"),
    (["--stage", "mmau", "--eval_backend", "vlm"], "--eval_backend takes one of: hf vllm"),
    (["--stage", "train", "--template", "thinking"],
     "template 'thinking' (command line) is not one of default, think, new"),
    (["--stage", "test", "--use_active_env", "yes"], "--use_active_env takes one of"),
    (["--stage", "train", "--deepspeed", "conf/no_such.json"],
     "--deepspeed conf/no_such.json: no such file"),
    (["--stage", "train", "--config", "conf/no_such.yaml"], "--config conf/no_such.yaml: no such"),
    (["--stage", "mmau", "--nproc", "0"], "--nproc takes a whole number >= 1, not '0'"),
    (["--stage", "train", "--nproc", "eight"], "--nproc takes a whole number >= 1, not 'eight'"),
    (["--stage", "train", "--nnodes", "2", "--node_rank", "2"], "must be below --nnodes 2"),
    (["--stage", "train", "--master_port", "99999"], "--master_port takes a port"),
    (["--stage", "mmau", "--checkpoints", "last"], "--checkpoints takes step numbers"),
    (["--stage", "mmau", "--eval_batch_size", "-1"], "--eval_batch_size takes a whole number"),
    (["--stage", "mmau", "--eval_batch_size", "0"], "--eval_batch_size takes a whole number"),
    (["--stage", "train", "--stop_stage", "mmsu", "--", "--learning_rate", "5e-7"],
     "pass them with --prepare_args, --curate_args, --train_args, --eval_args"),
    (["--stage", "prepare", "--stop_stage", "mmsu", "--", "--mmau_audio", "X"],
     "options after -- go to one stage's script"),
    (["--stage", "train", "--", "--template", "think"], "give --template to run.sh itself"),
    (["--stage", "train", "--train_args", "--model_name_or_path=x"],
     "give --model_name_or_path to run.sh itself"),
    (["--stage", "plan", "--gpu_memory_gb", "eighty"], "--gpu_memory_gb takes a number of GB"),
    (["--stage", "plan", "--stop_stage", "mmsu"], "runs alone"),
    (["--stage", "mmau", "--eval_args", "--template think"],
     "give --template to run.sh itself"),
    (["--stage", "mmsu", "--mmsu_args", "--model=Qwen/Qwen2.5-Omni-3B"],
     "give --model to run.sh itself"),
    (["--stage", "mmau", "--", "--out_dir", "/tmp/x"], "give --out_dir to run.sh itself"),
    (["--stage", "train", "--train_args", '--lr 5e-7 "x'], "cannot split"),
    (["--stage", "train", "--learning_rate", "5e-7"],
     'a script\'s options go in --train_args "--learning_rate ..."'),
    (["--stage", "mmau", "--train_args", "--max_steps 5"], "--train_args is given but this call "
     "runs mmau, not train"),
]


@pytest.mark.parametrize(("args", "message"), BAD_COMMAND_LINES,
                         ids=[" ".join(a) or "empty" for a, _ in BAD_COMMAND_LINES])
def test_bad_command_lines_are_refused_in_one_line(args: list[str], message: str) -> None:
    result = run_sh(*args, *([] if "--dry_run" in " ".join(args) else ["--dry_run", "true"]))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not commands(result.stderr), "nothing may run (or be printed as run) before the check"


def test_dry_run_prints_the_test_command_and_says_nothing_ran() -> None:
    result = run_sh("--stage", "test", "--dry_run", "--test_args", "-x -q")
    assert result.returncode == 0, result.stderr
    assert "Stage test: tests/ -> pytest report" in result.stderr
    assert "-m pytest -x -q tests" in result.stderr
    assert "dry run: nothing was run" in result.stderr and "Done" not in result.stderr


@pytest.mark.parametrize("form", [["--nproc", "4"], ["--nproc=4"], ["--nproc", "4", "--dry-run"],
                                  ["--dry_run", "true"], ["--dry_run=true"]])
def test_options_accept_both_spellings(form: list[str]) -> None:
    result = run_sh("--stage", "test", "--dry_run", *form)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], "-m torch.distributed.run --standalone --nproc_per_node 1 train.py "
                     "--config conf/grpo.yaml --model_name_or_path Qwen/Qwen2.5-Omni-7B "
                     "--template default --train_data data/avqa --output_dir exp/grpo "
                     "--deepspeed conf/ds_zero1.json", id="defaults-one-node-free-port"),
        pytest.param(["--nnodes", "2", "--node_rank", "1", "--master_addr", "10.0.0.1",
                      "--nproc", "8", "--deepspeed", "conf/ds_zero3.json", "--model",
                      "Qwen/Qwen2-Audio-7B-Instruct", "--template", "think", "--run_name", "qa",
                      "--", "--learning_rate", "5e-7"],
                     "--nnodes 2 --node_rank 1 --nproc_per_node 8 --master_addr 10.0.0.1 "
                     "--master_port 29500 train.py --config conf/grpo.yaml --model_name_or_path "
                     "Qwen/Qwen2-Audio-7B-Instruct --template think --train_data data/avqa "
                     "--output_dir exp/qa --deepspeed conf/ds_zero3.json --learning_rate 5e-7",
                     id="multi-node-zero3-passthrough"),
        pytest.param(["--deepspeed", "none", "--overwrite"], "--output_dir exp/grpo "
                     "--overwrite_output_dir true", id="no-deepspeed-overwrite"),
        pytest.param(["--master_port", "29600", "--nproc", "2"], "--nnodes 1 --node_rank 0 "
                     "--nproc_per_node 2 --master_addr 127.0.0.1 --master_port 29600",
                     id="typed-port"),
        pytest.param(["--data_dir", "/scratch/data"], "--train_data /scratch/data/avqa",
                     id="data-dir-moves-train-data"),
        pytest.param(["--config", "conf/qwen2_audio.yaml"], "--config conf/qwen2_audio.yaml "
                     "--model_name_or_path Qwen/Qwen2-Audio-7B-Instruct --template default",
                     id="per-model-yaml"),
    ],
)
def test_train_dry_run_prints_the_launch_line(args: list[str], expected: str) -> None:
    result = run_sh("--stage", "train", "--dry_run", *args)
    assert result.returncode == 0, result.stderr
    assert "Stage train:" in result.stderr
    launch = next(line for line in result.stderr.splitlines() if "torch.distributed.run" in line)
    assert expected in launch, launch


@pytest.mark.parametrize(("visible", "nproc"), [("0,1", 2), ("0,1,2,3,4,5,6,7", 8), ("", 1)])
def test_nproc_defaults_to_the_visible_gpus(visible: str, nproc: int) -> None:
    result = run_sh("--stage", "train", "--dry_run", env={"CUDA_VISIBLE_DEVICES": visible})
    assert result.returncode == 0, result.stderr
    assert value_after(command_of(result.stderr, "train.py"), "--nproc_per_node") == str(nproc)
    assert f"Processes per node: {nproc}" in result.stderr


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_the_yaml_is_the_recipe(tmp_path: Path) -> None:
    """model, template and train_data typed in the YAML reach training; the log says where from."""
    config = _yaml(tmp_path, "model_name_or_path: Qwen/Qwen2.5-Omni-3B\ntemplate: think\n"
                   "train_data: /data/my_avqa\nlearning_rate: 5.0e-7\n")
    result = run_sh("--stage", "train", "--dry_run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    train = command_of(result.stderr, "train.py")
    assert value_after(train, "--template") == "think"
    assert value_after(train, "--model_name_or_path") == "Qwen/Qwen2.5-Omni-3B"
    assert value_after(train, "--train_data") == "/data/my_avqa"
    assert f"Settings: template think ({config})" in result.stderr


def test_a_typed_option_beats_the_yaml(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "template: think\n")
    result = run_sh("--stage", "train", "--dry_run", "--config", str(config),
                    "--template", "new")
    assert value_after(command_of(result.stderr, "train.py"), "--template") == "new"
    assert "Settings: template new (command line)" in result.stderr


def test_a_bad_template_in_the_yaml_is_refused(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "template: thinking\n")
    result = run_sh("--stage", "train", "--dry_run", "--config", str(config))
    assert result.returncode != 0
    assert f"template 'thinking' ({config}) is not one of default, think, new" in result.stderr


def test_range_options_reach_their_stage_only() -> None:
    result = run_sh("--stage", "train", "--stop_stage", "mmsu", "--dry_run", "true",
                    "--train_args", "--learning_rate 5e-7", "--mmsu_args", "--protocols letter",
                    "--eval_args", "--max_audio_duration_in_seconds 20")
    assert result.returncode == 0, result.stderr
    train = command_of(result.stderr, "train.py")
    mmau = command_of(result.stderr, "--bench mmau")
    mmsu = command_of(result.stderr, "--bench mmsu")
    assert value_after(train, "--learning_rate") == "5e-7"
    assert "--learning_rate" not in mmau + mmsu
    assert value_after(mmsu, "--protocols") == "letter" and "--protocols" not in mmau + train
    for evaluation in (mmau, mmsu):
        assert value_after(evaluation, "--max_audio_duration_in_seconds") == "20"


def test_plan_gets_what_train_would_get() -> None:
    """The plan stage sees the training command's settings: the same model, config, DeepSpeed
    file, process count and --train_args."""
    args = ["--dry_run", "--config", "conf/qwen2_audio.yaml", "--deepspeed", "conf/ds_zero3.json",
            "--nproc", "8", "--train_args", "--use_vllm true --per_device_train_batch_size 2"]
    plan = command_of(run_sh("--stage", "plan", "--gpu_memory_gb", "80", *args).stderr,
                      "local.train.plan")
    train = command_of(run_sh("--stage", "train", *args).stderr, "train.py")
    for option in ("--config", "--deepspeed", "--template", "--train_data", "--use_vllm",
                   "--per_device_train_batch_size"):
        assert value_after(plan, option) == value_after(train, option), option
    assert value_after(plan, "--model") == value_after(train, "--model_name_or_path")
    assert value_after(plan, "--nproc") == value_after(train, "--nproc_per_node") == "8"
    assert value_after(plan, "--gpu_memory_gb") == "80"


def test_script_options_are_split_but_never_expanded(tmp_path: Path) -> None:
    """--X_args are split as a shell splits words (quotes kept), with no command substitution
    or globbing, also under --dry_run."""
    marker = tmp_path / "ran"
    result = run_sh("--stage", "train", "--dry_run", "--train_args",
                    f'--learning_rate $(touch {marker}) --report_to * --run_name "a b"')
    train = command_of(result.stderr, "train.py")
    assert not marker.exists()
    assert value_after(train, "--learning_rate") == "$(touch"  # the words as typed
    assert value_after(train, "--report_to") == "*"
    assert value_after(train, "--run_name") == "a b"


def test_an_empty_gpu_list_means_one_process() -> None:
    result = run_sh("--stage", "train", "--dry_run", env={"CUDA_VISIBLE_DEVICES": ","})
    assert result.returncode == 0, result.stderr
    assert value_after(command_of(result.stderr, "train.py"), "--nproc_per_node") == "1"


def test_evaluation_runs_on_node_0_only() -> None:
    args = ["--stage", "train", "--stop_stage", "mmsu", "--dry_run", "--nnodes", "2",
            "--master_addr", "10.0.0.1", "--nproc", "8"]
    other = run_sh(*args, "--node_rank", "1")
    assert "Stage mmau: runs on node 0 only" in other.stderr
    assert not [c for c in commands(other.stderr) if "local.eval.steps" in c]
    first = run_sh(*args, "--node_rank", "0")
    assert len([c for c in commands(first.stderr) if "local.eval.steps" in c]) == 2


def test_a_missing_local_model_path_is_not_swapped_for_a_snapshot(tmp_path: Path) -> None:
    """Only a hub id is replaced by prepare's models/<name>; a typo'd local path stays as typed
    (train.py then names it) instead of silently training another folder."""
    snapshot = tmp_path / "models" / "Qwen2-Audio-7B-Instruct"
    snapshot.mkdir(parents=True)
    (snapshot / ".done").write_text("{}")
    for model, expected in [("/mnt/typo/Qwen2-Audio-7B-Instruct",
                             "/mnt/typo/Qwen2-Audio-7B-Instruct"),
                            ("Qwen/Qwen2-Audio-7B-Instruct", str(snapshot))]:
        result = run_sh("--stage", "train", "--dry_run", "--model", model,
                        "--model_dir", str(tmp_path / "models"))
        train = command_of(result.stderr, "train.py")
        assert value_after(train, "--model_name_or_path") == expected


def test_set_title_reaches_the_evaluators() -> None:
    result = run_sh("--stage", "mmau", "--dry_run", "--set_title", "my set (MMAU format)")
    mmau = command_of(result.stderr, "--bench mmau")
    assert value_after(mmau, "--set_title") == "my set (MMAU format)"


# ---------------------------------------------------------------------------------------------
# Evaluation follows the run: train's record (written by train.py's own writer) fixes step 0's
# model and the template of every evaluated step.
# ---------------------------------------------------------------------------------------------

def _train_then_record(tmp_path: Path, *run_args: str) -> Path:
    """Dry-run the train stage, parse its printed train.py arguments with train.py's parser and
    write the run record train.py would write (local.train.checkpoints.write_run_record)."""
    from local.train.checkpoints import write_run_record
    from local.train.config import parse_args

    exp = tmp_path / "exp"
    result = run_sh("--stage", "train", "--dry_run", "--exp_dir", str(exp), *run_args)
    assert result.returncode == 0, result.stderr
    train = command_of(result.stderr, "train.py")
    args = train[train.index("train.py") + 1:]
    if "--deepspeed" in args:
        del args[args.index("--deepspeed"):args.index("--deepspeed") + 2]
    config, model_args = parse_args([*args, "--use_cpu", "true", "--bf16", "false"])
    write_run_record(config.output_dir, config, model_args, args)
    return exp


README_QWEN2_AUDIO = ["--model", "Qwen/Qwen2-Audio-7B-Instruct", "--run_name", "qwen2audio",
                      "--template", "think"]


def test_evaluation_of_a_run_uses_its_model_and_template(tmp_path: Path) -> None:
    """The README's Qwen2-Audio `think` run, then `--stage mmau --stop_stage mmsu` as printed
    (run name only): both evaluators get Qwen2-Audio as step 0 and the think template."""
    exp = _train_then_record(tmp_path, *README_QWEN2_AUDIO)
    result = run_sh("--stage", "mmau", "--stop_stage", "mmsu", "--dry_run", "--exp_dir", str(exp),
                    "--run_name", "qwen2audio")
    assert result.returncode == 0, result.stderr
    for bench in ("mmau", "mmsu"):
        evaluation = command_of(result.stderr, f"--bench {bench}")
        assert value_after(evaluation, "--model") == "Qwen/Qwen2-Audio-7B-Instruct"
        assert value_after(evaluation, "--template") == "think"
    assert "the run's template" in result.stderr


@pytest.mark.parametrize(("typed", "named"), [
    (["--model", "Qwen/Qwen2.5-Omni-7B"], ["--model Qwen/Qwen2.5-Omni-7B",
                                            "trained from Qwen/Qwen2-Audio-7B-Instruct"]),
    (["--template", "default"], ["--template default", "trained with think"]),
])
def test_evaluation_refuses_a_typed_setting_the_run_did_not_use(
        tmp_path: Path, typed: list[str], named: list[str]) -> None:
    exp = _train_then_record(tmp_path, *README_QWEN2_AUDIO)
    result = run_sh("--stage", "mmau", "--dry_run", "--exp_dir", str(exp),
                    "--run_name", "qwen2audio", *typed)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and all(text in errors[0] for text in named), result.stderr
    assert "--override_run true" in errors[0]


def test_override_run_is_a_labelled_cross_model_comparison(tmp_path: Path) -> None:
    exp = _train_then_record(tmp_path, *README_QWEN2_AUDIO)
    result = run_sh("--stage", "mmau", "--dry_run", "--exp_dir", str(exp), "--run_name",
                    "qwen2audio", "--model", "Qwen/Qwen2.5-Omni-7B", "--override_run", "true")
    assert result.returncode == 0, result.stderr
    mmau = command_of(result.stderr, "--bench mmau")
    assert value_after(mmau, "--model") == "Qwen/Qwen2.5-Omni-7B"
    assert value_after(mmau, "--template") == "think"
    assert "Cross-model comparison" in value_after(mmau, "--note")


def test_a_typed_setting_that_agrees_with_the_run_is_fine(tmp_path: Path) -> None:
    exp = _train_then_record(tmp_path, *README_QWEN2_AUDIO)
    result = run_sh("--stage", "mmau", "--dry_run", "--exp_dir", str(exp), *README_QWEN2_AUDIO)
    assert result.returncode == 0, result.stderr
    assert "--note" not in command_of(result.stderr, "--bench mmau")


def test_training_on_into_a_run_of_another_model_is_refused(tmp_path: Path) -> None:
    exp = _train_then_record(tmp_path, *README_QWEN2_AUDIO)
    result = run_sh("--stage", "train", "--dry_run", "--exp_dir", str(exp),
                    "--run_name", "qwen2audio")
    assert result.returncode != 0
    assert "holds a run of other settings" in result.stderr and "--overwrite true" in result.stderr
    again = run_sh("--stage", "train", "--dry_run", "--exp_dir", str(exp), "--run_name",
                   "qwen2audio", "--overwrite", "true")
    assert again.returncode == 0, again.stderr


def test_a_run_folder_without_a_record_evaluates_the_typed_base_model(tmp_path: Path) -> None:
    result = run_sh("--stage", "mmau", "--dry_run", "--exp_dir", str(tmp_path),
                    "--model", "Qwen/Qwen2.5-Omni-3B", "--template", "new")
    assert result.returncode == 0, result.stderr
    mmau = command_of(result.stderr, "--bench mmau")
    assert value_after(mmau, "--model") == "Qwen/Qwen2.5-Omni-3B"
    assert value_after(mmau, "--template") == "new"


# ---------------------------------------------------------------------------------------------
# Environment set-up says what it does
# ---------------------------------------------------------------------------------------------

def test_missing_python_gets_an_actionable_message(tmp_path) -> None:
    """No environment yet and no interpreter: say what to install, not a stack of errors."""
    result = run_sh("--stage", "test", "--venv", str(tmp_path / "venv"),
                    "--python", "/no/such/python3")
    assert result.returncode != 0
    assert "no '/no/such/python3' found" in result.stderr and "Python 3.11" in result.stderr


def test_an_active_environment_that_satisfies_requirements_is_used() -> None:
    result = run_sh("--stage", "test", "--dry_run", env={"VIRTUAL_ENV": sys.prefix})
    assert result.returncode == 0, result.stderr
    assert f"using the active environment ({sys.prefix}/bin/python)" in result.stderr


def _fake_env(tmp_path: Path) -> Path:
    """A 'virtualenv' whose python is this one but which reports torch at another version."""
    prefix = tmp_path / "container"
    (prefix / "bin").mkdir(parents=True)
    site = tmp_path / "site"
    (site / "torch-2.0.0.dist-info").mkdir(parents=True)
    (site / "torch-2.0.0.dist-info" / "METADATA").write_text("Name: torch\nVersion: 2.0.0\n")
    python = prefix / "bin" / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={site}:$PYTHONPATH exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    return prefix


def test_an_unmet_active_environment_is_named_package_by_package(tmp_path: Path) -> None:
    prefix = _fake_env(tmp_path)
    result = run_sh("--stage", "test", "--dry_run", "--venv", str(tmp_path / "venv"),
                    env={"VIRTUAL_ENV": str(prefix)})
    assert result.returncode == 0, result.stderr
    assert "does not satisfy requirements.txt" in result.stderr
    assert "torch: 2.0.0 installed, want 2.14.1" in result.stderr
    assert "--use_active_env force" in result.stderr and "6.5 GB" in result.stderr


def test_use_active_env_force_runs_there_with_a_warning(tmp_path: Path) -> None:
    prefix = _fake_env(tmp_path)
    result = run_sh("--stage", "test", "--dry_run", "--use_active_env", "force",
                    env={"VIRTUAL_ENV": str(prefix)})
    assert result.returncode == 0, result.stderr
    assert "WARNING: using the active environment" in result.stderr
    assert "torch: 2.0.0 installed, want 2.14.1" in result.stderr
    assert commands(result.stderr)[-1].startswith(f"{prefix}/bin/python -m pytest")


def test_use_active_env_force_without_an_active_env_is_refused() -> None:
    result = run_sh("--stage", "test", "--dry_run", "--use_active_env", "force")
    assert result.returncode != 0 and "no active environment" in result.stderr
