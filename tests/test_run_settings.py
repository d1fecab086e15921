"""local.train.run_settings: the model, template and training data every run.sh stage shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from local.train import run_settings
from local.train.run_settings import SettingsError, resolve, same_model
from tests.helpers import REPO

CONFIGS = sorted((REPO / "conf").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_the_fallback_reader_agrees_with_pyyaml_on_the_shipped_recipes(config: Path) -> None:
    """Without PyYAML (a dry run before set-up) the keys run.sh needs read the same."""
    full = yaml.safe_load(config.read_text())
    flat = run_settings._flat_yaml(config.read_text())
    for key in ("model_name_or_path", "template", "train_data"):
        assert (str(full[key]) if key in full else None) == flat.get(key), key


def _record(run_dir: Path, model: str, template: str) -> None:
    run_dir.mkdir(parents=True)
    text = yaml.safe_dump({"code": "abc", "model": {"model_name_or_path": model,
                                                    "lora_r": 16},
                           "training": {"template": template, "train_data": "data/avqa",
                                        "learning_rate": 1e-6}}, sort_keys=True)
    (run_dir / "resolved_config.yaml").write_text(text)


def test_the_run_record_reads_the_same_without_pyyaml(tmp_path: Path, monkeypatch) -> None:
    _record(tmp_path / "run", "models/Qwen2-Audio-7B-Instruct", "think")
    with_yaml = run_settings.run_record(tmp_path / "run")
    monkeypatch.setattr(run_settings, "_yaml", lambda: None)
    assert run_settings.run_record(tmp_path / "run") == with_yaml == {
        "model": "models/Qwen2-Audio-7B-Instruct", "template": "think",
        "train_data": "data/avqa"}


@pytest.mark.parametrize(("a", "b", "same"), [
    ("Qwen/Qwen2-Audio-7B-Instruct", "Qwen/Qwen2-Audio-7B-Instruct", True),
    ("Qwen/Qwen2-Audio-7B-Instruct", "models/Qwen2-Audio-7B-Instruct", True),  # prepare's copy
    ("models/Qwen2-Audio-7B-Instruct/", "Qwen/Qwen2-Audio-7B-Instruct", True),
    ("Qwen/Qwen2.5-Omni-7B", "models/Qwen2-Audio-7B-Instruct", False),
    ("exp/a/checkpoint-100", "exp/b/checkpoint-100", False),
])
def test_same_model(a: str, b: str, same: bool) -> None:
    assert same_model(a, b, "models") is same


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "must be a mapping"),
    ("template: [unclosed\n", r"is not valid YAML \(line"),
])
def test_a_config_that_is_no_recipe_is_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        resolve(config=config, run_dir=tmp_path / "run", stages=["train"])


def test_a_record_without_model_or_template_is_named(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "resolved_config.yaml").write_text("training: {}\n")
    with pytest.raises(SettingsError, match="not a training record"):
        resolve(config=REPO / "conf/grpo.yaml", run_dir=tmp_path / "run", stages=["mmau"])


def test_evaluation_ignores_a_yaml_that_disagrees_with_the_run(tmp_path: Path) -> None:
    """The YAML is the recipe for training; an evaluation of a run asks as the run was trained."""
    _record(tmp_path / "run", "models/Qwen2-Audio-7B-Instruct", "think")
    settings = resolve(config=REPO / "conf/grpo.yaml", run_dir=tmp_path / "run",
                       stages=["mmau", "mmsu"])
    assert settings.eval_model.value == "models/Qwen2-Audio-7B-Instruct"
    assert settings.eval_template.value == "think"
    assert not settings.notes
