"""The run's model, template and training data, resolved once for every stage of run.sh.

run.sh asks this module before any stage runs, so prepare, train and every evaluation stage of
one call (and of later calls on the same run folder) agree. Each value comes from, in order:

1. the command line (`--model`, `--template`, `--train_data`: run.sh passes only typed ones);
2. the `--config` YAML (`model_name_or_path`, `template`, `train_data`), the recipe a user edits;
3. the built-in default (Qwen/Qwen2.5-Omni-7B, `default`, `<data_dir>/avqa`).

A run folder that holds a training record (`resolved_config.yaml`, written by train.py) fixes
what its evaluation uses: step 0 is the model the run started from and every step is asked with
the run's template. A typed `--model`/`--template` that disagrees with the record is refused in
one line naming both, unless `override_run` asks for a cross-model comparison (the evaluation
summary then carries a note saying so). Training more steps into a run folder with another model
or template is refused the same way (`--overwrite true` starts the folder over).

The answer is printed as shell assignments (stdout) and one line per value saying where it came
from (stderr). Standard library, plus PyYAML where installed; without it (a dry run before the
environment exists) the YAML files are read as flat `key: value` lines, which is all run.sh needs.

Example:
    $ python -m local.train.run_settings --config conf/grpo.yaml --run_dir exp/grpo \\
        --stages "mmau mmsu" --template think
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.core.prompts import TEMPLATES  # standard library only, like this module
from local.runs.layout import RUN_RECORD  # standard library only too

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-7B"
DEFAULT_TEMPLATE = "default"
TRAINING_STAGES = ("prepare", "curate", "train", "plan")
EVAL_STAGES = ("mmau", "mmsu", "mmar")


class SettingsError(ValueError):
    """A setting that cannot be used; the message is one line saying what to do."""


@dataclass
class Setting:
    value: str
    source: str


@dataclass
class RunSettings:
    """What every stage of one run.sh call uses."""

    model: Setting
    template: Setting
    train_data: Setting
    eval_model: Setting  # step 0 of the evaluation stages
    eval_template: Setting
    notes: list[str] = field(default_factory=list)  # labels for summary.md (override_run)

    def shell(self) -> str:
        pairs = {"model": self.model.value, "template": self.template.value,
                 "train_data": self.train_data.value, "eval_model": self.eval_model.value,
                 "eval_template": self.eval_template.value, "eval_note": " ".join(self.notes)}
        return "".join(f"{name}={shlex.quote(value)}\n" for name, value in pairs.items())

    def log_lines(self, stages: list[str]) -> list[str]:
        lines = []
        if any(s in TRAINING_STAGES for s in stages):
            lines += [f"model {self.model.value} ({self.model.source})",
                      f"template {self.template.value} ({self.template.source})"]
        if "train" in stages or "plan" in stages or "curate" in stages:
            lines.append(f"train_data {self.train_data.value} ({self.train_data.source})")
        if any(s in EVAL_STAGES for s in stages):
            lines += [f"evaluation step 0 {self.eval_model.value} ({self.eval_model.source})",
                      f"evaluation template {self.eval_template.value} "
                      f"({self.eval_template.source})"]
        return lines + [f"note: {note}" for note in self.notes]


def _flat_yaml(text: str) -> dict[str, Any]:
    """Top-level `key: value` scalars of a YAML text (the fallback without PyYAML)."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_][\w.-]*):\s*(.*?)\s*(?:\s#.*)?$", line)
        if match and match.group(2):
            found[match.group(1)] = match.group(2).strip("'\"")
    return found


def _yaml() -> Any:
    """PyYAML, or None where it is not installed (a dry run before the environment exists)."""
    try:
        import yaml
    except ImportError:
        return None
    return yaml


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"cannot read {path}: {error.strerror or error}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping; a file that is no mapping is a SettingsError naming it."""
    text, yaml = _read_text(path), _yaml()
    if yaml is None:
        return _flat_yaml(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SettingsError(f"{path} is not valid YAML{line}: fix it or pass another "
                            "--config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must be a mapping of key: value lines, not a "
                            f"{type(data).__name__}")
    return data


def run_record(run_dir: Path) -> dict[str, str] | None:
    """{model, template, train_data} a run folder was trained with, or None (no training yet)."""
    path = run_dir / RUN_RECORD
    if not path.is_file():
        return None
    if _yaml() is None:
        model, training = _nested_flat(_read_text(path))
    else:
        data = read_yaml(path)
        model, training = (data.get(key) if isinstance(data.get(key), dict) else {}
                           for key in ("model", "training"))
    record = {"model": model.get("model_name_or_path"), "template": training.get("template"),
              "train_data": training.get("train_data")}
    if not record["model"] or not record["template"]:
        raise SettingsError(f"{path} names no model_name_or_path or template: it is not a "
                            "training record of this recipe (move it away, or use another "
                            "--run_name)")
    return {key: str(value) for key, value in record.items() if value is not None}


def _nested_flat(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """`model:` and `training:` sections of a record, read without PyYAML (2-space indent, as
    yaml.safe_dump writes it)."""
    sections: dict[str, dict[str, str]] = {"model": {}, "training": {}}
    current = None
    for line in text.splitlines():
        if re.match(r"^\S", line):
            current = line.split(":", 1)[0]
        elif current in sections:
            match = re.match(r"^  ([\w.-]+):\s*(.*?)\s*$", line)
            if match:
                sections[current][match.group(1)] = match.group(2).strip("'\"")
    return sections["model"], sections["training"]


def same_model(a: str, b: str, model_dir: str) -> bool:
    """Whether two spellings name one model: equal, or a hub id and the `<model_dir>/<name>`
    snapshot that `run.sh --stage prepare` made of it (what train.py then records)."""
    def local(name: str) -> str:
        return str(Path(model_dir) / name.rstrip("/").rsplit("/", 1)[-1])

    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or local(a) == b or local(b) == a


def resolve(*, config: Path, run_dir: Path, stages: list[str], data_dir: str = "data",
            model_dir: str = "models", typed: dict[str, str] | None = None,
            override_run: bool = False, overwrite: bool = False) -> RunSettings:
    """The settings of one run.sh call (see the module docstring for the rules)."""
    typed = {key: value for key, value in (typed or {}).items() if value}
    recipe = read_yaml(config)
    defaults = {"model": DEFAULT_MODEL, "template": DEFAULT_TEMPLATE,
                "train_data": f"{data_dir.rstrip('/')}/avqa"}
    yaml_keys = {"model": "model_name_or_path", "template": "template",
                 "train_data": "train_data"}
    chosen: dict[str, Setting] = {}
    for name, default in defaults.items():
        if name in typed:
            chosen[name] = Setting(typed[name], "command line")
        elif recipe.get(yaml_keys[name]) not in (None, ""):
            chosen[name] = Setting(str(recipe[yaml_keys[name]]), f"{config}")
        else:
            chosen[name] = Setting(default, "default")
    if chosen["template"].value not in TEMPLATES:
        raise SettingsError(f"template '{chosen['template'].value}' ({chosen['template'].source})"
                            f" is not one of {', '.join(TEMPLATES)}")
    settings = RunSettings(model=chosen["model"], template=chosen["template"],
                           train_data=chosen["train_data"], eval_model=chosen["model"],
                           eval_template=chosen["template"])
    uses_run = "train" in stages or any(s in EVAL_STAGES for s in stages)
    record = None if (overwrite and "train" in stages) or not uses_run else run_record(run_dir)
    if record is None:
        return settings
    where = f"{run_dir / RUN_RECORD}"
    mismatch = []
    if not same_model(chosen["model"].value, record["model"], model_dir) and (
            "train" in stages or "model" in typed):
        mismatch.append(f"--model {chosen['model'].value} ({chosen['model'].source}) but the "
                        f"run was trained from {record['model']}")
    if chosen["template"].value != record["template"] and (
            "train" in stages or "template" in typed):
        mismatch.append(f"--template {chosen['template'].value} ({chosen['template'].source}) "
                        f"but the run was trained with {record['template']}")
    if mismatch and "train" in stages:
        raise SettingsError(f"{run_dir} holds a run of other settings: {'; '.join(mismatch)}. "
                            "Use another --run_name, or --overwrite true to start it over")
    if mismatch and not override_run:
        raise SettingsError(f"{'; '.join(mismatch)} ({where}). Drop the option to evaluate the "
                            "run as trained, or add --override_run true for a cross-model "
                            "comparison (summary.md says so)")
    if "train" in stages:
        return settings
    settings.eval_model = Setting(record["model"], f"the run's starting model, {where}")
    settings.eval_template = Setting(record["template"], f"the run's template, {where}")
    if mismatch:  # override_run: the typed values, labelled
        if "model" in typed:
            settings.eval_model = Setting(typed["model"], "command line, --override_run true")
        if "template" in typed:
            settings.eval_template = Setting(typed["template"],
                                             "command line, --override_run true")
        settings.notes.append(f"Cross-model comparison (--override_run true): step 0 is "
                              f"{settings.eval_model.value} with template "
                              f"{settings.eval_template.value}; the run {run_dir} was trained "
                              f"from {record['model']} with template {record['template']}.")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--run_dir", type=Path, required=True)
    parser.add_argument("--stages", required=True, help='e.g. "train mmau mmsu"')
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--model_dir", default="models")
    parser.add_argument("--model", default="", help="typed on run.sh's command line")
    parser.add_argument("--template", default="", help="typed on run.sh's command line")
    parser.add_argument("--train_data", default="", help="typed on run.sh's command line")
    parser.add_argument("--override_run", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    stages = args.stages.split()
    try:
        settings = resolve(config=args.config, run_dir=args.run_dir, stages=stages,
                           data_dir=args.data_dir, model_dir=args.model_dir,
                           typed={"model": args.model, "template": args.template,
                                  "train_data": args.train_data},
                           override_run=args.override_run, overwrite=args.overwrite)
    except SettingsError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    for line in settings.log_lines(stages):
        print(line, file=sys.stderr)
    sys.stdout.write(settings.shell())
    return 0


if __name__ == "__main__":
    sys.exit(main())
