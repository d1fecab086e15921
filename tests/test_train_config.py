"""The resolved training config carries the reference recipe's values, with or without
conf/grpo.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.train.config import parse_args
from tests.helpers import REPO

REFERENCE = {  # the reference recipe (WeST's GRPO example); README, differences
    "loss_type": "grpo", "beta": 0.04, "learning_rate": 1e-6, "temperature": 0.7,
    "num_generations": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
    "max_completion_length": 1024, "num_iterations": 1, "weight_decay": 0.0,
    "lr_scheduler_type": "linear", "max_grad_norm": 1.0, "max_steps": 1000, "save_steps": 100,
    "seed": 42, "scale_rewards": "group", "template": "default", "freeze_audio_encoder": False,
    "bf16": True, "use_bias_correction_kl": False,
}
BASE = ["--output_dir", "exp/test", "--use_cpu", "true"]


def _value(config, key):
    value = getattr(config, key)
    return getattr(value, "value", value)  # enums (lr_scheduler_type) compare by value


@pytest.mark.parametrize("with_yaml", [False, True], ids=["built-in-defaults", "conf-grpo-yaml"])
def test_resolved_defaults_are_the_reference_recipes(with_yaml: bool) -> None:
    argv = BASE + (["--config", str(REPO / "conf" / "grpo.yaml")] if with_yaml else [])
    config, model_args = parse_args(argv)
    for key, expected in REFERENCE.items():
        assert _value(config, key) == expected, key
    assert config.top_k == 50 and config.top_p == 1.0  # transformers' default, as the reference
    if with_yaml:
        assert model_args.model_name_or_path == "Qwen/Qwen2.5-Omni-7B"


@pytest.mark.parametrize(
    ("flag", "value", "key", "expected"),
    [
        pytest.param("--loss_type", "dapo", "loss_type", "dapo", id="loss-type"),
        pytest.param("--scale_rewards", "none", "scale_rewards", "none", id="scale-rewards"),
        pytest.param("--epsilon", "0.3", "epsilon", 0.3, id="clip-epsilon"),
        pytest.param("--num_iterations", "2", "num_iterations", 2, id="num-iterations"),
        pytest.param("--reward_weights", "0.5 2", "reward_weights", [0.5, 2.0],
                     id="reward-weights"),  # one weight per reward (default: 2)
        pytest.param("--template", "think", "template", "think", id="template"),
        pytest.param("--learning_rate", "5e-7", "learning_rate", 5e-7, id="cli-beats-yaml"),
    ],
)
def test_trl_and_recipe_knobs_stay_reachable(flag, value, key, expected) -> None:
    config, _ = parse_args(BASE + ["--config", str(REPO / "conf" / "grpo.yaml"), flag,
                                   *value.split()])
    assert _value(config, key) == expected


def test_lora_options_come_from_trl_model_config() -> None:
    _, model_args = parse_args(BASE + ["--use_peft", "true", "--lora_r", "8"])
    assert model_args.use_peft and model_args.lora_r == 8


def test_unknown_options_are_rejected() -> None:
    with pytest.raises((ValueError, SystemExit)):
        parse_args(BASE + ["--no_such_option", "1"])


# -- every configuration problem: one line, before the data and the model are touched ----------
#
# The line is `train.py: <what is wrong> (<key>, <where>): <what to do>`; <where> is `command
# line`, `<yaml file> line N` or `default`. The model path does not exist and the loaders fail
# the test if called: the refusal has to come first.

CL = "command line"


def _refusal(monkeypatch, tmp_path: Path, extra: list[str], yaml_text: str | None = None) -> str:
    """train.main's one-line exit for `extra` (after a base that is valid on CPU)."""
    import train

    def not_yet(*_: Any, **__: Any) -> None:
        raise AssertionError("the data or the model was loaded before the configuration check")

    for name in ("policy_source", "load_model_and_processor", "build_train_dataset"):
        monkeypatch.setattr(train, name, not_yet)
    argv = ["--model_name_or_path", str(tmp_path / "no-model"), "--train_data",
            str(tmp_path / "no-data"), "--output_dir", str(tmp_path / "run"),
            "--use_cpu", "true", "--bf16", "false"]
    if yaml_text is not None:
        (tmp_path / "recipe.yaml").write_text(yaml_text)
        argv = ["--config", str(tmp_path / "recipe.yaml"), *argv]
    with pytest.raises(SystemExit) as stop:
        train.main([*argv, *extra])
    line = stop.value.code
    assert isinstance(line, str) and "\n" not in line, line  # a message (exit 1), no traceback
    assert line.startswith("train.py: ") and "): " in line, line
    assert not (tmp_path / "run").exists(), "a refused run wrote its folder"
    return line


@pytest.mark.parametrize(
    ("extra", "key", "says"),
    [
        pytest.param(["--no_such_option", "1"], "no_such_option", "unknown", id="unknown-option"),
        pytest.param(["--learning_rat", "1e-5"], "learning_rat", "learning_rate",
                     id="misspelt-option-no-abbreviation"),
        pytest.param(["--report_to", "tensorboard", "wandb"], "report_to", "'wandb'",
                     id="stray-value"),
        pytest.param(["--max_steps", "abc"], "max_steps", "'abc'", id="int-not-a-number"),
        pytest.param(["--learning_rate", "fast"], "learning_rate", "'fast'", id="float-word"),
        pytest.param(["--bf16", "maybe"], "bf16", "maybe", id="bool-word"),
        pytest.param(["--learning_rate"], "learning_rate", "value", id="missing-value"),
        pytest.param(["--model_dtype", "bf16"], "model_dtype", "bfloat16", id="dtype-choice"),
        pytest.param(["--save_strategy", "sometimes"], "save_strategy", "steps", id="choice"),
        pytest.param(["--lr_scheduler_type", "foo"], "lr_scheduler_type", "cosine",
                     id="transformers-enum"),
        pytest.param(["--template", "fancy"], "template", "think", id="template"),
        pytest.param(["--train_format", "csv"], "train_format", "mmau", id="train-format"),
        pytest.param(["--bad_records", "ignore"], "bad_records", "skip", id="bad-records"),
        pytest.param(["--report_to", "tensorboardx"], "report_to", "tensorboard",
                     id="report-to"),
        pytest.param(["--num_generations", "1"], "num_generations", "2", id="one-generation"),
        pytest.param(["--per_device_train_batch_size", "6", "--gradient_accumulation_steps",
                      "1"], "per_device_train_batch_size", "num_generations 4",
                     id="indivisible-generation-batch"),
        pytest.param(["--per_device_train_batch_size", "0"], "per_device_train_batch_size",
                     "0", id="zero-batch"),
        pytest.param(["--generation_batch_size", "10"], "generation_batch_size", "4",
                     id="generation-batch-not-a-multiple-of-the-step"),
        pytest.param(["--generation_batch_size", "8", "--steps_per_generation", "2"],
                     "steps_per_generation", "generation_batch_size", id="both-generation-knobs"),
        pytest.param(["--auto_find_batch_size", "true"], "auto_find_batch_size",
                     "per_device_train_batch_size", id="auto-find-batch-size"),
        pytest.param(["--eval_strategy", "steps"], "eval_strategy", "no", id="eval-strategy"),
        pytest.param(["--reward_funcs", "accuracy", "acuracy"], "reward_funcs", "accuracy",
                     id="unknown-reward"),
        pytest.param(["--reward_weights", "1", "2", "3"], "reward_weights", "2 rewards",
                     id="weights-for-default-rewards"),
        pytest.param(["--reward_funcs", "accuracy", "--reward_weights", "1", "2"],
                     "reward_weights", "1 reward", id="weights-for-named-rewards"),
        pytest.param(["--dtype", "float16", "--model_dtype", "float32"], "dtype", "model_dtype",
                     id="dtype-and-model-dtype-disagree"),
        pytest.param(["--load_in_8bit", "true", "--load_in_4bit", "true"], "load_in_4bit",
                     "4 bit", id="trl-model-config-rule"),
        pytest.param(["--deepspeed", "no-such-ds.json"], "deepspeed", "no-such-ds.json",
                     id="deepspeed-file"),
    ],
)
def test_command_line_problems_stop_in_one_line_before_the_model(monkeypatch, tmp_path,
                                                                 extra, key, says) -> None:
    line = _refusal(monkeypatch, tmp_path, extra)
    assert f"{key}, {CL}" in line and says in line, line


def test_use_vllm_without_vllm_says_how_to_build_its_environment(monkeypatch, tmp_path) -> None:
    from local.train import config_checks

    monkeypatch.setattr(config_checks, "vllm_installed", lambda: False)
    line = _refusal(monkeypatch, tmp_path, ["--use_vllm", "true"])
    assert f"use_vllm, {CL}" in line, line
    assert "bash run.sh --stage train --vllm true -- --use_vllm true" in line, line


@pytest.mark.parametrize(("extra", "key"), [
    pytest.param(["--vllm_mode", "server"], "vllm_mode", id="server-mode"),
    pytest.param(["--vllm_tensor_parallel_size", "2"], "vllm_tensor_parallel_size", id="tp"),
])
def test_vllm_settings_that_cannot_carry_audio_stop_before_the_model(monkeypatch, tmp_path,
                                                                     extra, key) -> None:
    from local.train import config_checks

    monkeypatch.setattr(config_checks, "vllm_installed", lambda: True)
    line = _refusal(monkeypatch, tmp_path, ["--use_vllm", "true", *extra])
    assert f"{key}, {CL}" in line, line


@pytest.mark.parametrize(
    ("yaml_text", "key", "line_no", "says"),
    [
        pytest.param("num_generations: 4\nlearning_rate: 1.0e-6\nnum_generations: 8\n",
                     "num_generations", 3, "line 1", id="duplicate-key"),
        pytest.param("env:\n  A: 1\n  A: 2\n", "A", 3, "line 2", id="duplicate-nested-key"),
        pytest.param("learnig_rate: 1.0e-6\n", "learnig_rate", 1, "learning_rate",
                     id="unknown-key"),
        pytest.param("max_steps: 10\nnum_generations: 4.5\n", "num_generations", 2, "4.5",
                     id="float-for-int"),
        pytest.param("max_steps: true\n", "max_steps", 1, "True", id="bool-for-int"),
        pytest.param("learning_rate: [1, 2]\n", "learning_rate", 1, "list", id="list-for-float"),
        pytest.param("bf16: maybe\n", "bf16", 1, "maybe", id="word-for-bool"),
        pytest.param("model_dtype: bf16\n", "model_dtype", 1, "bfloat16", id="choice"),
        pytest.param("template: null\n", "template", 1, "null", id="null"),
        pytest.param("train_data: {a: 1}\n", "train_data", 1, "mapping", id="mapping-for-str"),
        pytest.param("per_device_train_batch_size: 3\ngradient_accumulation_steps: 1\n",
                     "per_device_train_batch_size", 1, "num_generations", id="indivisible"),
        pytest.param("reward_funcs: [accuracy, nope]\n", "reward_funcs", 1, "nope",
                     id="unknown-reward"),
        pytest.param("reward_weights: [1.0]\n", "reward_weights", 1, "2 rewards",
                     id="weights-count"),
        pytest.param("lr_scheduler_type: foo\n", "lr_scheduler_type", 1, "foo",
                     id="transformers-enum"),
        pytest.param("dtype: float16\nmodel_dtype: bfloat16\n", "dtype", 1, "model_dtype",
                     id="dtype-alias-conflict"),
    ],
)
def test_yaml_problems_name_the_key_and_its_line(monkeypatch, tmp_path, yaml_text, key, line_no,
                                                 says) -> None:
    line = _refusal(monkeypatch, tmp_path, [], yaml_text)
    assert f"{key}, {tmp_path / 'recipe.yaml'} line {line_no}" in line, line
    assert says in line, line


@pytest.mark.parametrize(("yaml_text", "says"), [
    pytest.param("learning_rate: [1.0e-6\n", "line", id="syntax-error"),
    pytest.param("- a\n- b\n", "mapping", id="not-a-mapping"),
    pytest.param("", "mapping", id="empty"),
])
def test_unreadable_yaml_is_one_line(monkeypatch, tmp_path, yaml_text, says) -> None:
    line = _refusal(monkeypatch, tmp_path, [], yaml_text)
    assert "config, " in line and str(tmp_path / "recipe.yaml") in line and says in line, line


def test_a_missing_config_file_is_one_line(monkeypatch, tmp_path) -> None:
    line = _refusal(monkeypatch, tmp_path, ["--config", str(tmp_path / "nope.yaml")])
    assert f"config, {CL}" in line and "nope.yaml" in line, line


@pytest.mark.parametrize(("model", "says"), [
    pytest.param("{tmp}/no-such-model", "does not exist", id="missing-folder"),
    pytest.param("./no-such-model", "does not exist", id="missing-relative-folder"),
    pytest.param("{tmp}/weights.bin", "a file", id="a-file"),
    pytest.param("{tmp}/cut", "truncated", id="weights-cut-short"),
])
def test_a_local_model_that_cannot_load_stops_before_loading(monkeypatch, tmp_path, model,
                                                             says) -> None:
    """After the data (that check comes first), before policy_source and the loader."""
    import datasets
    import torch
    from safetensors.torch import save_file

    import train

    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "cut").mkdir()
    save_file({"w": torch.zeros(4)}, tmp_path / "cut" / "model.safetensors")
    whole = (tmp_path / "cut" / "model.safetensors").read_bytes()
    (tmp_path / "cut" / "model.safetensors").write_bytes(whole[:-8])
    report = type("Report", (), {"summary": lambda self: "1 row"})()
    monkeypatch.setattr(train, "build_train_dataset",
                        lambda *a, **k: (datasets.Dataset.from_list([{"id": "a"}]), report))
    for name in ("policy_source", "load_model_and_processor"):
        monkeypatch.setattr(train, name, lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as stop:
        train.main(["--model_name_or_path", model.replace("{tmp}", str(tmp_path)),
                    "--output_dir", str(tmp_path / "run"), "--use_cpu", "true"])
    line = stop.value.code
    assert isinstance(line, str) and line.startswith("train.py: ") and "\n" not in line, line
    assert f"model_name_or_path, {CL}" in line and says in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("extra", "key"), [
    pytest.param(["--temperature", "0"], "temperature", id="temperature-0"),
    pytest.param(["--top_p", "1.5"], "top_p", id="top-p"),
    pytest.param(["--max_completion_length", "0"], "max_completion_length", id="length-0"),
    pytest.param(["--num_iterations", "0"], "num_iterations", id="iterations-0"),
    pytest.param(["--max_train_samples", "0"], "max_train_samples", id="no-samples"),
    pytest.param(["--attn_implementation", "sdpa2"], "attn_implementation", id="attention"),
])
def test_values_out_of_range_stop_before_the_model(monkeypatch, tmp_path, extra, key) -> None:
    line = _refusal(monkeypatch, tmp_path, extra)
    assert f"{key}, {CL}" in line, line


def test_the_model_must_be_named(monkeypatch, tmp_path) -> None:
    import train

    with pytest.raises(SystemExit) as stop:
        train.main(["--output_dir", str(tmp_path / "run"), "--use_cpu", "true"])
    assert str(stop.value.code).startswith("train.py: ") and "model_name_or_path" in str(
        stop.value.code)


@pytest.mark.parametrize(("yaml_text", "key", "expected"), [
    pytest.param("reward_funcs: accuracy\n", "reward_funcs", ["accuracy"], id="scalar-as-list"),
    pytest.param("learning_rate: 1e-6\n", "learning_rate", 1e-6, id="yaml-1.1-exponent"),
    pytest.param("report_to: [tensorboard]\n", "report_to", ["tensorboard"], id="list-kept"),
    pytest.param("max_audio_duration_in_seconds: 12\n", "max_audio_duration_in_seconds", 12.0,
                 id="int-for-float"),
    pytest.param("max_train_samples: null\n", "max_train_samples", None, id="null-optional"),
])
def test_yaml_values_get_the_command_line_types(tmp_path, yaml_text, key, expected) -> None:
    (tmp_path / "recipe.yaml").write_text(yaml_text)
    config, _ = parse_args(BASE + ["--config", str(tmp_path / "recipe.yaml")])
    assert _value(config, key) == expected and type(_value(config, key)) is type(expected)


def test_the_shipped_recipes_pass_the_checks() -> None:
    for name in ("grpo.yaml", "demo.yaml"):
        parse_args(["--config", str(REPO / "conf" / name), *BASE])


def test_choice_fields_list_the_values_their_consumers_accept() -> None:
    """template, train_format, bad_records, model_dtype are Literal fields (argparse choices);
    their values are those of the modules that use them."""
    import dataclasses
    import typing

    from trl import ModelConfig

    from local.core.prompts import TEMPLATES
    from local.core.records import BAD_RECORD_POLICIES
    from local.core.rewards import default_rewards
    from local.train.config import AudioGRPOConfig
    from local.train.dataset import FORMATS

    hints = typing.get_type_hints(AudioGRPOConfig)
    assert set(typing.get_args(hints["template"])) == set(TEMPLATES)
    for template in TEMPLATES:
        default_rewards(template)
    assert set(typing.get_args(hints["train_format"])) == set(FORMATS)
    assert set(typing.get_args(hints["bad_records"])) == set(BAD_RECORD_POLICIES)
    dtype = next(f for f in dataclasses.fields(ModelConfig) if f.name == "dtype")
    assert set(typing.get_args(hints["model_dtype"])) == set(dtype.metadata["choices"])
    assert {f.name for f in dataclasses.fields(AudioGRPOConfig)} >= set(REFERENCE)


# -- TRL's batch rules (trl/trainer/grpo_config.py, GRPOConfig.__post_init__), world sizes > 1 --

@pytest.mark.parametrize(
    ("world", "settings", "refused"),
    [
        pytest.param(8, {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2},
                     None, id="reference-8-gpus"),
        pytest.param(3, {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
                         "num_generations": 8}, "per_device_train_batch_size", id="3x4-vs-8"),
        pytest.param(2, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                         "num_generations": 4}, None, id="2x2-is-one-group"),
        pytest.param(2, {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
                         "steps_per_generation": 2, "num_generations": 4}, None,
                     id="groups-span-micro-steps"),
        pytest.param(2, {"per_device_train_batch_size": 4, "generation_batch_size": 12},
                     "generation_batch_size", id="generation-batch-vs-2x4"),
        pytest.param(1, {"per_device_train_batch_size": 4, "generation_batch_size": 12,
                         "num_generations": 8}, "num_generations", id="12-vs-8"),
    ],
)
def test_batch_rules_are_trls(world, settings, refused) -> None:
    from trl import GRPOConfig

    from local.train.config_checks import ConfigError, check_batch

    values = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
              "num_generations": 4, "generation_batch_size": None, "steps_per_generation": None,
              "auto_find_batch_size": False, **settings}
    sources = dict.fromkeys(settings, CL)
    if refused is None:
        check_batch(values, sources, world)
    else:
        with pytest.raises(ConfigError) as error:
            check_batch(values, sources, world)
        assert f"{refused}, {CL}" in str(error.value.code)
    if world == 1:  # TRL agrees (its world size here is 1)
        args = {k: v for k, v in values.items() if v is not None}
        if refused is None:
            GRPOConfig(output_dir="exp/x", use_cpu=True, **args)
        else:
            with pytest.raises(ValueError):
                GRPOConfig(output_dir="exp/x", use_cpu=True, **args)


@pytest.mark.parametrize(
    ("world", "settings", "line"),
    [
        pytest.param(8, {}, "8 processes x 4 per_device_train_batch_size x 2 "
                     "gradient_accumulation_steps = 64 completions = 16 prompts x 4 "
                     "num_generations per optimizer step", id="reference"),
        pytest.param(1, {"per_device_train_batch_size": 32, "gradient_accumulation_steps": 1,
                         "num_generations": 8}, "1 process x 32 per_device_train_batch_size x 1 "
                     "gradient_accumulation_steps = 32 completions = 4 prompts x 8 "
                     "num_generations per optimizer step", id="demo"),
        pytest.param(2, {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
                         "steps_per_generation": 2},
                     "= 2 completions = 0.5 prompts x 4 num_generations per optimizer step; "
                     "rollouts of 4 completions (1 prompts) every 2 micro-steps", id="spg"),
    ],
)
def test_the_global_batch_line(world, settings, line) -> None:
    from local.train.config_checks import batch_summary

    config = small_namespace(**settings)
    assert line in batch_summary(config, world)


def small_namespace(**settings: Any) -> Any:
    from types import SimpleNamespace

    values = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
              "num_generations": 4, "steps_per_generation": None, **settings}
    values["steps_per_generation"] = (values["steps_per_generation"]
                                      or values["gradient_accumulation_steps"])
    return SimpleNamespace(**values)


# -- --dtype is an alias of --model_dtype -------------------------------------------------------

@pytest.mark.parametrize(("extra", "expected"), [
    pytest.param(["--dtype", "float16"], "float16", id="dtype-alone-sets-model-dtype"),
    pytest.param(["--dtype", "float32", "--model_dtype", "float32"], "float32", id="both-agree"),
    pytest.param(["--model_dtype", "float32"], "float32", id="model-dtype-alone"),
    pytest.param([], "bfloat16", id="neither"),
])
def test_dtype_aliases_model_dtype(caplog, extra, expected) -> None:
    import logging

    with caplog.at_level(logging.INFO):
        config, model_args = parse_args(BASE + extra)
    assert config.model_dtype == expected and model_args.dtype == expected
    said = [r.getMessage() for r in caplog.records if "sets model_dtype" in r.getMessage()]
    assert len(said) == (1 if extra[:1] == ["--dtype"] and len(extra) == 2 else 0), said


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "yaml_text", "says"), [
    pytest.param(["--num_generations", "3"], None, "num_generations, command line",
                 id="indivisible"),
    pytest.param([], "template: think\ntemplate: new\n", "template, ", id="duplicate-yaml-key"),
    pytest.param(["--use_vllm", "true"], None, "--vllm true -- --use_vllm true",
                 id="use-vllm"),
])
def test_train_py_prints_one_line_and_no_traceback(tmp_path, extra, yaml_text, says) -> None:
    import subprocess
    import sys

    from local.train.config_checks import vllm_installed

    if "--use_vllm" in extra and vllm_installed():
        pytest.skip("vLLM is installed here")
    config = ["--config", str(REPO / "conf/demo.yaml")]
    if yaml_text is not None:
        (tmp_path / "recipe.yaml").write_text(yaml_text)
        config = ["--config", str(tmp_path / "recipe.yaml"), "--use_cpu", "true"]
    result = subprocess.run(
        [sys.executable, "train.py", *config, "--model_name_or_path", str(tmp_path / "none"),
         "--output_dir", str(tmp_path / "run"), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: ") and says in last, last
    assert not (tmp_path / "run").exists()


def test_a_refused_deepspeed_file_leaves_no_half_built_deepspeed_config(monkeypatch,
                                                                        tmp_path) -> None:
    """transformers registers its DeepSpeed config globally before reading the file: a refused
    --deepspeed must not leave it behind for every later from_pretrained in the process (CI saw
    72 tests fail with "'HfTrainerDeepSpeedConfig' object has no attribute '_stage'")."""
    import gc

    from transformers.integrations import deepspeed as hf_deepspeed

    gc.disable()  # the half-built object is kept alive by a reference cycle until collected
    try:
        _refusal(monkeypatch, tmp_path, ["--deepspeed", "no-such-ds.json"])
        ref = hf_deepspeed._hf_deepspeed_config_weak_ref
        assert ref is None or ref() is None
        assert not hf_deepspeed.is_deepspeed_zero3_enabled()
    finally:
        gc.enable()
