"""The recipe's Python package: audio, records, prompts, answers, rewards, models, trainer, eval."""
