"""Training: the GRPO config, training rows, the AudioGRPOTrainer, the frozen-encoder cache,
and what train.py writes besides the checkpoint rules (the run record, the weights reload;
which checkpoints count is `local.runs.checkpoints`). The rewards are `local.core.rewards`."""
