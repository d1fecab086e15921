"""Training: the GRPO config, training rows, the AudioGRPOTrainer, rewards, the frozen-encoder
cache and checkpoints."""
