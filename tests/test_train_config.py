"""The resolved training config carries the reference recipe's values, with or without
conf/grpo.yaml."""

from __future__ import annotations

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
    assert config.top_k in (0, None) and config.top_p == 1.0
    if with_yaml:
        assert model_args.model_name_or_path == "Qwen/Qwen2.5-Omni-7B"


@pytest.mark.parametrize(
    ("flag", "value", "key", "expected"),
    [
        pytest.param("--loss_type", "dapo", "loss_type", "dapo", id="loss-type"),
        pytest.param("--scale_rewards", "none", "scale_rewards", "none", id="scale-rewards"),
        pytest.param("--epsilon", "0.3", "epsilon", 0.3, id="clip-epsilon"),
        pytest.param("--num_iterations", "2", "num_iterations", 2, id="num-iterations"),
        pytest.param("--reward_weights", "0.5", "reward_weights", [0.5], id="reward-weights"),
        pytest.param("--template", "think", "template", "think", id="template"),
        pytest.param("--learning_rate", "5e-7", "learning_rate", 5e-7, id="cli-beats-yaml"),
    ],
)
def test_trl_and_recipe_knobs_stay_reachable(flag, value, key, expected) -> None:
    config, _ = parse_args(BASE + ["--config", str(REPO / "conf" / "grpo.yaml"), flag, value])
    assert _value(config, key) == expected


def test_lora_options_come_from_trl_model_config() -> None:
    _, model_args = parse_args(BASE + ["--use_peft", "true", "--lora_r", "8"])
    assert model_args.use_peft and model_args.lora_r == 8


def test_unknown_options_are_rejected() -> None:
    with pytest.raises((ValueError, SystemExit)):
        parse_args(BASE + ["--no_such_option", "1"])
