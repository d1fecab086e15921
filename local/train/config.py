"""Training configuration: TRL's `GRPOConfig` with the reference recipe's defaults, plus options.

The defaults below are those of the reference recipe (WeST's GRPO example), so a run gets them
with or without `conf/grpo.yaml`; every TRL knob (loss_type, scale_rewards, epsilon,
num_iterations, reward_weights, ...) stays settable from the YAML or the command line. LoRA
options come from TRL's `ModelConfig` (`--use_peft --lora_r 64 ...`). bf16 is on by default (TRL's
default, as the reference recipe); on a machine without a GPU pass `--use_cpu true --bf16 false`
(conf/demo.yaml does). README's "Differences from the reference recipe" lists where the recipe
and TRL's defaults part.

`read_config` checks what it reads before anything is loaded (local/train/config_checks.py): a
key given twice in the YAML, an unknown key or option, a value of the wrong type, TRL's batch
rules, reward names and weights, ... each stop with one line naming the key and where it was
given. `--dtype` (TRL's ModelConfig) is an alias of `--model_dtype`.

Example:
    >>> from local.train.config import parse_args
    >>> config, model_args = parse_args(["--output_dir", "exp/x", "--use_cpu", "true"])
    >>> config.learning_rate, config.beta, config.loss_type, config.temperature
    (1e-06, 0.04, 'grpo', 0.7)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Literal, NamedTuple, NoReturn, get_type_hints

from transformers.integrations.deepspeed import unset_hf_deepspeed_config
from trl import GRPOConfig, ModelConfig, TrlParser

from local.train.config_checks import (
    COMMAND_LINE,
    ConfigError,
    check_settings,
    command_line_error,
    dataclass_error,
    load_yaml_config,
    split_config_flag,
    stray_argument,
    unknown_key,
    world_size,
    yaml_value,
)


@dataclass
class AudioGRPOConfig(GRPOConfig):
    """GRPOConfig with the reference recipe's defaults and the audio/data options."""

    # --- the reference recipe's optimisation and sampling (TRL's own defaults differ) --------
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate."})
    beta: float = field(default=0.04, metadata={"help": "KL coefficient (k3 estimator)."})
    # TRL 1.16 defaults this to True: the k3 term is multiplied by the importance ratio, which
    # changes the KL gradient even on-policy (trl/trainer/grpo_config.py, use_bias_correction_kl;
    # applied in grpo_trainer.py's _compute_loss). The reference recipe's loss has no such weight.
    use_bias_correction_kl: bool = field(default=False, metadata={
        "help": "Multiply the k3 KL term by the importance ratio (TRL's default; off: the "
                "reference recipe's -(A*ratio - beta*k3))."})
    loss_type: str = field(default="grpo", metadata={
        "help": "TRL loss: grpo (reference recipe: per-sequence token mean), dapo, dr_grpo, "
                "bnpo, ..."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling."})
    top_k: int = field(default=50, metadata={
        "help": "Top-k sampling (0 = off); 50 is the reference's: transformers' default, which "
                "WeST's GenerationConfig leaves in place (conf/grpo.yaml says how we know)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Repetition penalty."})
    num_generations: int = field(default=4, metadata={"help": "Completions per prompt (G)."})
    per_device_train_batch_size: int = field(default=4, metadata={
        "help": "Completions per device per micro-step (TRL counts completions: 1 prompt x 4)."})
    gradient_accumulation_steps: int = field(default=2, metadata={
        "help": "Micro-steps per update."})
    max_completion_length: int = field(default=1024, metadata={
        "help": "Max new tokens per rollout."})
    num_iterations: int = field(default=1, metadata={"help": "Updates per rollout batch."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=0, metadata={"help": "Warm-up steps."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    save_steps: float = field(default=100, metadata={"help": "Checkpoint every N steps."})
    save_only_model: bool = field(default=False, metadata={
        "help": "False keeps optimizer, scheduler and RNG state so runs resume exactly."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N steps."})
    seed: int = field(default=42, metadata={"help": "Random seed."})
    log_completions: bool = field(default=True, metadata={
        "help": "Log sampled completions with their rewards (rank 0)."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Must stay False: the audio and reward columns are not model inputs."})

    # --- the recipe's own options ------------------------------------------------------------
    train_data: str = field(default="data/avqa", metadata={
        "help": "Training data: an AVQA save_to_disk folder, an MMAU-style json or an MMSU "
                "folder (see train_format)."})
    train_format: Literal["avqa", "mmau", "mmsu"] = field(default="avqa", metadata={
        "help": "Training data format (local.train.dataset.FORMATS)."})
    train_split: str = field(default="train", metadata={"help": "Split of train_data."})
    train_audio_dir: str | None = field(default=None, metadata={
        "help": "Audio folder for train_format mmau."})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "Use only the first N records (quick runs)."})
    train_selection: str | None = field(default=None, metadata={
        "help": "selection.json of a curation (`bash run.sh --stage curate`, python -m "
                "local.curate) made from this train_data: train only on the rows its rule kept, "
                "by id (nothing copied)."})
    template: Literal["default", "think", "new"] = field(default="default", metadata={
        "help": "Prompt template (local.core.prompts.TEMPLATES)."})
    reward_funcs: list[str] | None = field(default=None, metadata={
        "help": "Reward names from local.core.rewards.REWARDS; default: the template's. Weights "
                "(reward_weights unset) follow the names: the template's, else 1.0."})
    robust_rewards: bool = field(default=False, metadata={
        "help": "Use the robust reward variants (case/space-insensitive, letters accepted)."})
    max_audio_duration_in_seconds: float | None = field(default=None, metadata={
        "help": "Cut longer clips (counted); default: the model's window (30 s / 300 s)."})
    freeze_audio_encoder: bool = field(default=False, metadata={
        "help": "Keep the audio encoder fixed (the reference recipe trains it)."})
    freeze_router: bool = field(default=True, metadata={
        "help": "Mixture-of-experts models (Qwen3-Omni): keep the router (mlp.gate) fixed; the "
                "load-balancing loss then stays off unless router_aux_loss_coef is given. false: "
                "the router trains with TRL's load-balancing loss (the model's coefficient). "
                "No effect on dense models."})
    bad_records: Literal["skip", "raise"] = field(default="skip", metadata={
        "help": "skip: drop malformed records with a warning and a count; raise: stop."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start over in output_dir instead of resuming from its last complete checkpoint."})
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "Unset: resume from output_dir's last complete checkpoint (if any). true: the "
                "same, refused when there is none. A checkpoint-N folder: resume from it. "
                "Refused with overwrite_output_dir, and for anything that is not a checkpoint."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={
        "help": "Where metrics go: tensorboard (the default: event files under "
                "<output_dir>/runs, no network), wandb (needs `pip install wandb`; run name from "
                "--run_name, project from WANDB_PROJECT), none, all, or a list."})
    model_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="bfloat16", metadata={
            "help": "dtype the policy is loaded in; --dtype (TRL's ModelConfig) is an alias: "
                    "given alone it sets this, both given they must agree."})
    keep_optimizer_states: Literal["newest", "all"] = field(default="newest", metadata={
        "help": "newest: only the newest checkpoint keeps the optimizer, scheduler, RNG and "
                "DeepSpeed states (removed from the previous one once the new one is complete); "
                "every checkpoint keeps its weights and processor, so each evaluates, and resume "
                "takes the newest. all: every checkpoint keeps them (a 7B ZeRO-1 checkpoint: "
                "~135 GB instead of ~18 GB)."})
    check_disk: bool = field(default=True, metadata={
        "help": "At start, estimate one checkpoint and the run against output_dir's free "
                "space: warn when the run may not fit, stop in one line when two checkpoints do "
                "not. false: go on anyway."})
    check_memory: bool = field(default=True, metadata={
        "help": "Before the weights load, stop in one line when model states + reference model + "
                "vLLM's share alone exceed the GPU (local.train.plan; activations only warn in "
                "the plan). false: go on anyway."})


class ParsedConfig(NamedTuple):
    config: AudioGRPOConfig
    model_args: ModelConfig
    sources: dict[str, str]  # given key -> "command line" | "<yaml> line N"


def _parser() -> TrlParser:
    """TRL's parser of the two dataclasses; argparse's errors raise instead of printing the
    usage, and options are exact (no `--learning 1` for --learning_rate)."""

    class Parser(TrlParser):
        def error(self, message: str) -> NoReturn:
            raise command_line_error(message, self._option_string_actions)

    return Parser((AudioGRPOConfig, ModelConfig), allow_abbrev=False)


def _apply_yaml(parser: TrlParser, path: str, sources: dict[str, str]) -> None:
    """The recipe's values as the parser's defaults (as TRL's parse_args_and_config, `env`
    included), each checked and typed as the command line would type it."""
    data, lines = load_yaml_config(path)
    env = data.pop("env", None)
    if env is not None:
        if not isinstance(env, dict):
            raise ConfigError("env is not a mapping of variable: value", "env",
                              {"env": f"{path} line {lines.get('env')}"},
                              "write env:, then one indented VARIABLE: value per line")
        os.environ.update({str(k): str(v) for k, v in env.items()})
    actions = {a.dest: a for a in parser._actions if a.option_strings
               and a.option_strings[0] == f"--{a.dest}"}
    hints = {**get_type_hints(AudioGRPOConfig), **get_type_hints(ModelConfig)}
    typed = {}
    for key, value in data.items():
        source = f"{path} line {lines.get(str(key), '?')}"
        if key not in actions:
            raise unknown_key(str(key), actions, source, on_command_line=False)
        typed[key] = yaml_value(key, value, actions[key], hints[key], source)
        sources[key] = source
    parser.set_defaults_with_config(**typed)


def _build(cls: type, values: dict[str, Any], sources: dict[str, str]) -> Any:
    inputs = {f.name: values[f.name] for f in fields(cls) if f.init and f.name in values}
    try:
        return cls(**inputs)
    except (ValueError, TypeError, OSError, ImportError) as error:
        # transformers registers its DeepSpeed config globally before reading the file, so a
        # refused --deepspeed leaves a half-built one behind that every later from_pretrained in
        # this process would read (is_deepspeed_zero3_enabled: no attribute '_stage')
        problem = dataclass_error(error, cls, inputs, sources)  # may build the class again
        unset_hf_deepspeed_config()
        raise problem from None


def read_config(argv: list[str] | None = None) -> ParsedConfig:
    """`--config <yaml>` plus command-line overrides (the command line wins), checked.

    Each problem stops with one line (`local.train.config_checks.ConfigError`, a SystemExit)
    naming the key and where it was given, before anything is loaded; `sources` says where each
    given key came from (`command line` or `<yaml> line N`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    sources: dict[str, str] = {}
    path, args = split_config_flag(args)
    if path is not None:
        _apply_yaml(parser, path, sources)
    namespace, rest = parser.parse_known_args(args)
    options = parser._option_string_actions
    for token in args:
        action = options.get(token.split("=", 1)[0]) if token.startswith("--") else None
        if action is not None:
            sources[action.dest] = COMMAND_LINE
    if rest:
        token = rest[0]
        if not token.startswith("--"):
            raise stray_argument(token, args, options)
        key = token.split("=", 1)[0][2:]
        raise unknown_key(key, [a.dest for a in parser._actions], COMMAND_LINE, True)
    values = vars(namespace)
    check_settings(values, sources, world_size())
    config = _build(AudioGRPOConfig, values, sources)
    model_args = _build(ModelConfig, values, sources)
    return ParsedConfig(config, model_args, sources)


def parse_args(argv: list[str] | None = None) -> tuple[AudioGRPOConfig, ModelConfig]:
    """Parse `--config conf/grpo.yaml` plus command-line overrides (CLI wins), checked."""
    parsed = read_config(argv)
    return parsed.config, parsed.model_args
