"""Check that a parsed run file is what the report expects, and keep only what is.

Each check takes what `files` parsed and returns a clean copy plus the parts it left out (one
short text each); a file that has nothing usable raises `ReportInputError`. Numbers that reach
a table or a plot are finite (NaN, Infinity, text and null are left out and named), steps and
counts are whole numbers, percentages lie in 0..100.

  trainer_state  checkpoint-N/trainer_state.json (the HF Trainer's global_step, log_history)
  result         eval/<bench>/<step>/results.json (one protocol, or several under `protocols`)
  labels         benchmark_labels.json ({bench: {"title": ..., "breakdown": ...}})
  config         resolved_config.yaml (its `training` and `model` mappings)

Example:
    >>> state, dropped = trainer_state({"global_step": 2, "log_history": [
    ...     {"step": 1, "reward": 0.5}, {"step": 2, "reward": float("nan"), "kl": 0.1}]})
    >>> state.history, dropped
    ([{'step': 1, 'reward': 0.5}, {'step': 2, 'kl': 0.1}], ["step 2 'reward' is NaN"])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from local.run_report.files import kind, one_line
from local.run_report.left_out import ReportInputError

Dropped = list[str]


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (not a bool, not text), else None.

    >>> finite(3), finite("3"), finite(float("inf")), finite(None), finite(True)
    (3.0, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def whole(value: Any) -> int | None:
    """`value` as an int when it is a whole number >= 0 (3.0 counts), else None.

    >>> whole(3), whole(3.0), whole(2.5), whole(-1), whole("3")
    (3, 3, None, None, None)
    """
    number = finite(value)
    return int(number) if number is not None and number.is_integer() and number >= 0 else None


def percent(value: Any) -> float | None:
    """`value` when it is a percentage (a finite number in 0..100), else None."""
    number = finite(value)
    return number if number is not None and 0 <= number <= 100 else None


def shown(value: Any) -> str:
    """A bad value as a reason names it: NaN, Infinity, 'text', null, an array...

    >>> shown(float("nan")), shown(float("-inf")), shown("x" * 50), shown(None), shown([1])
    ('NaN', '-Infinity', "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'", 'null', 'an array')
    """
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        return repr(one_line(value, 32))
    if value is None or isinstance(value, dict | list | tuple):
        return kind(value)
    return one_line(repr(value), 32)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportInputError(f"{kind(value)}, not an object ({what})")
    return value


# ---------------------------------------------------------------------------------------------
# Trainer state
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainerState:
    global_step: int
    max_steps: int | None
    history: list[dict[str, Any]]  # {"step": int, metric: finite float, ...}


def trainer_state(data: Any) -> tuple[TrainerState, Dropped]:
    """The HF Trainer's state: a whole `global_step`, a `log_history` list of entries with a
    whole `step` and finite numbers; a bad entry or value is left out."""
    data = _object(data, "the HF Trainer's state")
    if "log_history" not in data:
        raise ReportInputError("no log_history (not an HF Trainer state?)")
    history = data["log_history"]
    if not isinstance(history, list):
        raise ReportInputError(f"log_history is {kind(history)}, not an array")
    global_step = whole(data.get("global_step"))
    if global_step is None:
        raise ReportInputError(f"global_step is {shown(data.get('global_step'))}, "
                               "not a whole number")
    dropped: Dropped = []
    max_steps = whole(data.get("max_steps"))
    if data.get("max_steps") is not None and max_steps is None:
        dropped.append(f"max_steps is {shown(data['max_steps'])}")
    entries = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            dropped.append(f"log_history[{i}] is {kind(entry)}")
            continue
        step = whole(entry.get("step"))
        if step is None:
            dropped.append(f"log_history[{i}] step is {shown(entry.get('step'))}")
            continue
        clean: dict[str, Any] = {"step": step}
        for key, value in entry.items():
            if key == "step":
                continue
            number = finite(value)
            if number is None:
                dropped.append(f"step {step} '{key}' is {shown(value)}")
            else:
                clean[key] = number
        entries.append(clean)
    return TrainerState(global_step, max_steps, entries), dropped


# ---------------------------------------------------------------------------------------------
# Evaluation results
# ---------------------------------------------------------------------------------------------

def result(data: Any) -> tuple[dict[str, Any], Dropped]:
    """An evaluator's results.json: one protocol's result, or several under `protocols` (a bad
    protocol is left out while another is usable), `settings` and `benchmark` optional."""
    data = _object(data, "an evaluator's results")
    dropped: Dropped = []
    if "protocols" in data:
        given = data["protocols"]
        if not isinstance(given, dict) or not given:
            raise ReportInputError(f"protocols is {kind(given) if given else 'empty'}, not an "
                                   "object of protocol results")
        kept = {}
        for name, one in given.items():
            try:
                kept[name] = protocol(one, dropped, f"protocol '{name}' ")
            except ReportInputError as err:
                dropped.append(f"protocol '{name}': {err}")
        if not kept:
            raise ReportInputError(f"no usable protocol ({'; '.join(dropped)})")
        clean: dict[str, Any] = {"protocols": kept}
    else:
        clean = protocol(data, dropped)
        name = data.get("protocol")
        if isinstance(name, str):
            clean["protocol"] = name
        elif name is not None:
            dropped.append(f"protocol is {shown(name)}, not a name")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        dropped.append(f"settings is {kind(settings)}, not an object")
        settings = {}
    clean["settings"] = settings
    benchmark = data.get("benchmark")
    if isinstance(benchmark, str) and benchmark.strip():
        clean["benchmark"] = benchmark
    elif benchmark is not None:
        dropped.append(f"benchmark is {shown(benchmark)}, not a title")
    return clean, dropped


def protocol(one: Any, dropped: Dropped, prefix: str = "") -> dict[str, Any]:
    """One protocol's result: accuracy (%), correct and total; no_prediction, its description
    and the per-group `tables` optional (bad ones left out)."""
    one = _object(one, "a protocol's result")
    accuracy = percent(one.get("accuracy"))
    if accuracy is None:
        raise ReportInputError("no accuracy" if "accuracy" not in one else
                               f"accuracy is {shown(one['accuracy'])}, not a percentage")
    counts = {}
    for key in ("correct", "total"):
        counts[key] = whole(one.get(key))
        if counts[key] is None:
            raise ReportInputError(f"no {key}" if key not in one else
                                   f"{key} is {shown(one[key])}, not a whole number")
    if counts["correct"] > counts["total"]:
        raise ReportInputError(f"correct ({counts['correct']}) is more than total "
                               f"({counts['total']})")
    clean: dict[str, Any] = {"accuracy": accuracy, **counts}
    if "no_prediction" in one:
        if whole(one["no_prediction"]) is None:
            dropped.append(f"{prefix}no_prediction is {shown(one['no_prediction'])}")
        else:
            clean["no_prediction"] = whole(one["no_prediction"])
    description = one.get("protocol_description")
    if isinstance(description, str):
        clean["protocol_description"] = description
    elif description is not None:
        dropped.append(f"{prefix}protocol_description is {shown(description)}")
    tables = one.get("tables", {})
    if not isinstance(tables, dict):
        dropped.append(f"{prefix}tables is {kind(tables)}, not an object")
        tables = {}
    clean["tables"] = {}
    for name, rows in tables.items():
        if not isinstance(rows, list):
            dropped.append(f"{prefix}table '{name}' is {kind(rows)}, not an array")
            continue
        clean["tables"][name] = _rows(rows, dropped, f"{prefix}table '{name}'")
    return clean


def _rows(rows: list[Any], dropped: Dropped, where: str) -> list[dict[str, Any]]:
    """The per-group rows of one table: a group name and its accuracy (%)."""
    kept = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            dropped.append(f"{where} row {i} is {kind(row)}")
            continue
        group, accuracy = row.get("group"), percent(row.get("accuracy"))
        if not isinstance(group, str | int) or isinstance(group, bool):
            dropped.append(f"{where} row {i} group is {shown(group)}")
        elif accuracy is None:
            dropped.append(f"{where} group '{group}' accuracy is {shown(row.get('accuracy'))}")
        else:
            kept.append({"group": str(group), "accuracy": accuracy,
                         **({"total": whole(row["total"])} if whole(row.get("total")) is not None
                            else {})})
    return kept


def no_audio(result: dict[str, Any]) -> bool:
    """Whether a checked result says it was made with --no_audio (`settings.no_audio` true)."""
    return result["settings"].get("no_audio") is True


# ---------------------------------------------------------------------------------------------
# Labels and configuration
# ---------------------------------------------------------------------------------------------

def labels(data: Any) -> tuple[dict[str, dict[str, str]], Dropped]:
    """benchmark_labels.json: {bench: {"title": text, "breakdown": text}}, both optional."""
    data = _object(data, "{benchmark: {title, breakdown}}")
    clean: dict[str, dict[str, str]] = {}
    dropped: Dropped = []
    for bench, label in data.items():
        if not isinstance(label, dict):
            dropped.append(f"'{bench}' is {kind(label)}, not an object")
            continue
        clean[bench] = {}
        for key in ("title", "breakdown"):
            value = label.get(key)
            if isinstance(value, str) and value.strip():
                clean[bench][key] = value
            elif value is not None:
                dropped.append(f"'{bench}' {key} is {shown(value)}, not a text")
    return clean, dropped


def config(data: Any) -> tuple[dict[str, Any], Dropped]:
    """resolved_config.yaml: a mapping whose `training` and `model` are mappings; training
    values the report computes with checked (num_generations, template, rewards), non-finite
    numbers left out."""
    if not isinstance(data, dict):
        raise ReportInputError(f"{kind(data)}, not a mapping of settings")
    dropped: Dropped = []
    clean = _named(data, "", dropped)
    for key in ("training", "model"):
        if key in clean and clean[key] is not None and not isinstance(clean[key], dict):
            dropped.append(f"'{key}' is {kind(clean.pop(key))}, not a mapping")
    training = dict(clean.get("training") or {})
    for key, value in list(training.items()):
        if _bad_setting(key, value):
            dropped.append(f"training.{key} is {shown(training.pop(key))}")
    if "training" in clean:
        clean["training"] = training
    return clean, dropped


def _named(value: Any, where: str, dropped: Dropped) -> Any:
    """`value` without the mapping entries (at any depth) whose key is not a name (YAML's
    `1:` or `null:`), which no setting has and which cannot be listed sorted."""
    if isinstance(value, list):
        return [_named(v, f"{where}[{i}]", dropped) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    clean = {}
    for key, item in value.items():
        if isinstance(key, str):
            clean[key] = _named(item, f"{where}{key}.", dropped)
        else:
            dropped.append(f"key {shown(key)}{f' in {where[:-1]}' if where else ''} is not a name")
    return clean


def _bad_setting(key: str, value: Any) -> bool:
    """Whether a training setting cannot be used as the report uses it."""
    if value is None:
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return True
    if key == "num_generations":
        return not whole(value)
    if key == "template":
        return not isinstance(value, str)
    if key == "reward_funcs":
        return not (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if key == "reward_weights":
        return not (isinstance(value, list) and all(finite(v) is not None for v in value))
    return False
