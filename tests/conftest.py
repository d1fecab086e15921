"""Session fixtures: tiny checkpoints built once per run (cached under .cache/tests), offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import MODEL_CONFIGS, tiny_checkpoint

# Tests never reach the hub: anything that tries fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_qwen2_audio() -> Path:
    return tiny_checkpoint("qwen2_audio")


@pytest.fixture(scope="session")
def tiny_omni() -> Path:
    return tiny_checkpoint("qwen2_5_omni")


@pytest.fixture(scope="session")
def tiny_qwen3_omni() -> Path:
    """The tiny Qwen3-Omni MoE thinker (head_dim 32, 4 experts, 2 per token)."""
    return tiny_checkpoint("qwen3_omni_moe")


@pytest.fixture(scope="session", params=["qwen2_audio", "qwen2_5_omni"])
def tiny_family_checkpoint(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """Each family's tiny checkpoint in turn: (family, path)."""
    return request.param, tiny_checkpoint(request.param)


@pytest.fixture(scope="session")
def model_configs() -> Path:
    """The official config files of the three models (../shared/data); skip where absent."""
    if not MODEL_CONFIGS.is_dir():
        pytest.skip("../shared/data/model-configs is absent (only in the development workspace)")
    return MODEL_CONFIGS
