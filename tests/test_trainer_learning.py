"""On a reward a random tiny model earns some of the time, GRPO raises the mean reward."""

from __future__ import annotations

import pytest

from tests.helpers_train import make_trainer


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_omni"])
def test_mean_reward_rises_over_training(tmp_path, family: str) -> None:
    trainer = make_trainer(family, tmp_path, rows=16, max_steps=40, learning_rate=1e-2,
                           beta=0.0, max_completion_length=12)
    trainer.train()
    rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
    assert len(rewards) == 40
    first, last = sum(rewards[:8]) / 8, sum(rewards[-8:]) / 8
    assert last > first + 0.1, f"mean reward {first:.3f} -> {last:.3f}"
