"""What a curation is made with: the sampling settings, their defaults, and the folder they name.

The defaults are the training recipe's own rollout settings, read from the training config
(`conf/grpo.yaml` unless `--config` names another): `k` = `num_generations` (G) and the sampling
`temperature`, `top_k`, `top_p`, `repetition_penalty`, `max_completion_length` and `template`.
Why: the question curation answers is "would GRPO learn from this item?", and GRPO sees an
item as a group of G completions sampled at that temperature. Scoring with the same G and
temperature makes "zero spread" mean exactly what a training group would show (all G rewards
equal, zero advantage, no gradient) and the per-item accuracies the ones the rollouts would
have at step 0; a larger k estimates the accuracies better but no longer predicts a G-sample
group's spread (and costs items x 2k generations).

The folder: `<out>/<model name>/<settings hash>/`, the hash over every setting that changes
the samples (model, data, k, sampling, seed, template, reward, audio cap, backend), so two
curations with different settings never share a folder and a re-run with the same ones resumes.

Example:
    >>> s = CurateSettings(model="Qwen/Qwen2.5-Omni-7B", train_data="data/avqa", k=4)
    >>> model_name(s.model), len(s.digest())
    ('Qwen--Qwen2.5-Omni-7B', 12)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local.eval.generation import GenerationSettings

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "grpo.yaml"
# Training-config keys that set curation defaults -> the curation option they set.
CONFIG_KEYS = {"num_generations": "k", "temperature": "temperature", "top_k": "top_k",
               "top_p": "top_p", "repetition_penalty": "repetition_penalty",
               "max_completion_length": "max_new_tokens", "template": "template"}
# The recipe's own values (conf/grpo.yaml), used when the config leaves a key out.
RECIPE_DEFAULTS: dict[str, Any] = {"k": 4, "temperature": 0.7, "top_k": 50, "top_p": 1.0,
                                   "repetition_penalty": 1.0, "max_new_tokens": 1024,
                                   "template": "default"}


def config_defaults(path: str | Path | None = None) -> dict[str, Any]:
    """The curation defaults a training config implies (`CONFIG_KEYS`), over the recipe's.

    >>> config_defaults()["k"], config_defaults()["temperature"]
    (4, 0.7)
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"--config {path}: cannot read it ({err})") from err
    if not isinstance(config, dict):
        raise SystemExit(f"--config {path}: not a mapping of training settings")
    found = {option: config[key] for key, option in CONFIG_KEYS.items() if key in config}
    return {**RECIPE_DEFAULTS, **found}


@dataclass(frozen=True)
class CurateSettings:
    """Every setting that changes the samples (and so the table); `digest()` names its folder."""

    model: str
    train_data: str
    train_format: str = "avqa"
    train_split: str = "train"
    limit: int | None = None
    k: int = RECIPE_DEFAULTS["k"]
    generation: GenerationSettings = field(default_factory=lambda: GenerationSettings(
        max_new_tokens=RECIPE_DEFAULTS["max_new_tokens"],
        temperature=RECIPE_DEFAULTS["temperature"], top_k=RECIPE_DEFAULTS["top_k"]))
    seed: int = 0
    template: str = "default"
    reward: str = "accuracy"
    max_audio_duration_in_seconds: float = 30.0
    backend: dict[str, Any] = field(default_factory=lambda: {"backend": "hf"})

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"k={self.k}: at least 2 samples per pass (one sample has no "
                             "spread to measure).")
        if self.generation.greedy:
            raise ValueError("temperature 0 is greedy: the k samples would all be the same; "
                             "curation samples (default: the training temperature).")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """12 hex digits of the settings' canonical JSON."""
        text = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_name(model: str) -> str:
    """A folder name for a model: a local folder's name (with its parent's for checkpoint-N),
    a hub id with '/' as '--'.

    >>> model_name("exp/grpo/checkpoint-100"), model_name("Qwen/Qwen2-Audio-7B-Instruct")
    ('grpo-checkpoint-100', 'Qwen--Qwen2-Audio-7B-Instruct')
    """
    path = Path(model)
    if path.exists() or model.startswith((".", "/")) or model.count("/") != 1:
        name = path.resolve().name if path.exists() else path.name
        if re.fullmatch(r"checkpoint-\d+", name):
            name = f"{path.resolve().parent.name if path.exists() else path.parent.name}-{name}"
        return name or "model"
    return model.replace("/", "--")


def in_hub_cache(path: Path) -> bool:
    """Whether `path` resolves into a Hugging Face cache (data/ links into it): curation never
    writes there."""
    parts = path.resolve().parts
    return "snapshots" in parts and any(p.startswith(("datasets--", "models--")) for p in parts)


def curate_dir(out: str | Path, settings: CurateSettings) -> Path:
    """`<out>/<model name>/<settings hash>`, refused inside a hub cache."""
    folder = Path(out) / model_name(settings.model) / settings.digest()
    if in_hub_cache(Path(out)):
        raise SystemExit(f"--out {out}: resolves into the Hugging Face cache "
                         f"({Path(out).resolve()}); pass a folder outside it")
    return folder
