"""Training configuration: TRL's `GRPOConfig` with the reference recipe's defaults, plus options.

The defaults below are those of the reference recipe (WeST's GRPO example), so a run gets them
with or without `conf/grpo.yaml`; every TRL knob (loss_type, scale_rewards, epsilon,
num_iterations, reward_weights, ...) stays settable from the YAML or the command line. LoRA
options come from TRL's `ModelConfig` (`--use_peft --lora_r 64 ...`). bf16 is on by default (TRL's
default, as the reference recipe); on a machine without a GPU pass `--use_cpu true --bf16 false`
(conf/demo.yaml does). README's "Differences from the reference recipe" lists where the recipe
and TRL's defaults part.

Example:
    >>> from local.train.config import parse_args
    >>> config, model_args = parse_args(["--output_dir", "exp/x", "--use_cpu", "true"])
    >>> config.learning_rate, config.beta, config.loss_type, config.temperature
    (1e-06, 0.04, 'grpo', 0.7)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, ModelConfig, TrlParser


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
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0 = off)."})
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
    train_format: str = field(default="avqa", metadata={"help": "avqa | mmau | mmsu"})
    train_split: str = field(default="train", metadata={"help": "Split of train_data."})
    train_audio_dir: str | None = field(default=None, metadata={
        "help": "Audio folder for train_format mmau."})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "Use only the first N records (quick runs)."})
    template: str = field(default="default", metadata={
        "help": "Prompt template: default | think | new."})
    reward_funcs: list[str] | None = field(default=None, metadata={
        "help": "Reward names from local.train.rewards.REWARDS; default: the template's. Weights "
                "(reward_weights unset) follow the names: the template's, else 1.0."})
    robust_rewards: bool = field(default=False, metadata={
        "help": "Use the robust reward variants (case/space-insensitive, letters accepted)."})
    max_audio_duration_in_seconds: float | None = field(default=None, metadata={
        "help": "Cut longer clips (counted); default: the model's window (30 s / 300 s)."})
    freeze_audio_encoder: bool = field(default=False, metadata={
        "help": "Keep the audio encoder fixed (the reference recipe trains it)."})
    bad_records: str = field(default="skip", metadata={
        "help": "skip: drop malformed records with a warning and a count; raise: stop."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start over in output_dir instead of resuming from its last complete checkpoint."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={
        "help": "Where metrics go: tensorboard (the default: event files under "
                "<output_dir>/runs, no network), wandb (needs `pip install wandb`; run name from "
                "--run_name, project from WANDB_PROJECT), none, all, or a list."})
    model_dtype: str = field(default="bfloat16", metadata={
        "help": "dtype the policy is loaded in (bfloat16 | float32 | auto)."})


def parse_args(argv: list[str] | None = None) -> tuple[AudioGRPOConfig, ModelConfig]:
    """Parse `--config conf/grpo.yaml` plus command-line overrides (CLI wins)."""
    parser = TrlParser((AudioGRPOConfig, ModelConfig))
    config, model_args = parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    return config, model_args
