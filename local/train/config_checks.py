"""train.py's configuration, checked before anything is loaded: one line per problem.

`local.train.config.read_config` reads the `--config` YAML (`load_yaml_config`: a key given
twice is refused, with both lines), gives every YAML value the type the command line would give
it (`yaml_value`), refuses unknown keys with the nearest known name, parses the command line
(`command_line_error` rephrases argparse's errors), and runs `check_settings` on the values before
TRL's and transformers' dataclasses are built; what those still refuse is given the same form
(`dataclass_error`). train.py then checks the model and the resume point (`resolve_resume`) before
it reads data or loads a model. Every refusal is a `ConfigError`, a SystemExit whose message is
the one line printed (exit status 1, no traceback):

    train.py: <what is wrong> (<key>, <where>): <what to do>

<where> is `command line`, `<yaml file> line N` or `default` (the built-in value).

Size: every refusal of train.py's settings lives here (the YAML file, the command line's types,
TRL's batch rules, rewards, integrations, vLLM, dtype, the resume point), so that their wording
and their form stay one; each check is short and none depends on another.

Example:
    >>> from local.train.config_checks import ConfigError, check_batch
    >>> values = {"per_device_train_batch_size": 6, "gradient_accumulation_steps": 1,
    ...           "num_generations": 4}
    >>> try:
    ...     check_batch(values, {"per_device_train_batch_size": "command line"}, world_size=1)
    ... except ConfigError as error:
    ...     print(error.code[:73])
    train.py: the generation batch (per_device_train_batch_size 6 x 1 process
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from local.core.rewards import REWARDS, default_rewards, resolve_reward_weights
from local.runs.checkpoints import (
    checkpoint_problem,
    is_finished_save,
    is_resumable_checkpoint,
    is_training_checkpoint,
    model_problem,
    newest_resumable,
    resumable_checkpoints,
    states_problem,
)
from local.runs.layout import checkpoint_step

logger = logging.getLogger(__name__)

COMMAND_LINE = "command line"
DEFAULT = "default"
VLLM_ENV_COMMAND = "bash run.sh --stage train --vllm true -- --use_vllm true"
TRUE_WORDS = ("true", "yes")  # resume_from_checkpoint: resume output_dir's last checkpoint
FALSE_WORDS = ("false", "no", "none", "null")


class ConfigError(SystemExit):
    """A configuration train.py refuses; `code` is the one line printed."""

    def __init__(self, what: str, keys: str | Sequence[str], sources: Mapping[str, str],
                 todo: str) -> None:
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        where = "; ".join(f"{key}, {sources.get(key, DEFAULT)}" for key in self.keys)
        super().__init__(" ".join(f"train.py: {what} ({where}): {todo}".split()))


def world_size() -> int:
    """The number of training processes, as the launcher (torchrun, accelerate, deepspeed) set
    it; TrainingArguments.world_size reads the same once torch.distributed is up."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}es" if word.endswith("s") \
        else f"{count} {word}s"


def _nearest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


# ---------------------------------------------------------------------------------------------
# The YAML file
# ---------------------------------------------------------------------------------------------

def split_config_flag(args: list[str]) -> tuple[str | None, list[str]]:
    """`--config PATH` (or `--config=PATH`) out of the command line; given twice is refused."""
    found, rest, i = [], [], 0
    while i < len(args):
        token = args[i]
        if token == "--config":
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError("--config needs a value", "config", {"config": COMMAND_LINE},
                                  "give the recipe's YAML file, e.g. --config conf/grpo.yaml")
            found.append(args[i + 1])
            i += 2
            continue
        if token.startswith("--config="):
            found.append(token.split("=", 1)[1])
        else:
            rest.append(token)
        i += 1
    if len(found) > 1:
        raise ConfigError(f"--config is given {len(found)} times ({', '.join(found)})", "config",
                          {"config": COMMAND_LINE}, "give one recipe; override its keys with "
                          "options after it, e.g. --learning_rate 5e-7")
    return (found[0] if found else None), rest


def _refuse_duplicates(node: Any, path: str) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = key_node.value
                if key in seen:
                    raise ConfigError(
                        f"{key} is given twice in {path}, line {seen[key]} and line {line} "
                        "(YAML would keep the last one silently)", key,
                        {key: f"{path} line {line}"}, f"keep one {key} line")
                seen[key] = line
            _refuse_duplicates(value_node, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicates(item, path)


def load_yaml_config(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The mapping in the YAML file `path` and the line of each top-level key.

    Refused, in one line: a file that cannot be read, a syntax error (with its line), anything
    but a mapping, a key given twice at any depth (PyYAML keeps the last one without a word).
    """
    import yaml

    cli = {"config": COMMAND_LINE}
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise ConfigError(f"cannot read the recipe {path} ({reason})", "config", cli,
                          "give the path of a YAML file, e.g. --config conf/grpo.yaml") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicates(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else path
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path} is not valid YAML: {problem}", "config", {"config": where},
                          "fix the YAML at that line (key: value, one per line)") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        what = "is empty" if data is None else f"holds a YAML {type(data).__name__}"
        raise ConfigError(f"{path} {what}, not a mapping of key: value", "config", cli,
                          "write one `key: value` per line (conf/grpo.yaml is an example)")
    lines = {str(key.value): key.start_mark.line + 1 for key, _ in node.value}
    return data, lines


def _admits(hint: Any, kind: type) -> bool:
    """Whether the field type `hint` admits values of `kind` (None, list, dict, ...)."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    return any((typing.get_origin(option) or option) is kind for option in options)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _type_name(hint: Any, action: Any) -> str:
    if getattr(action, "choices", None):
        return "one of " + ", ".join(str(c) for c in action.choices)
    options = [o for o in (typing.get_args(hint) if _is_union(hint) else (hint,))
               if o is not type(None)]
    names = [getattr(o, "__name__", str(o)) for o in options]
    name = " or ".join("true or false" if n == "bool" else
                       "a whole number" if n == "int" else "a number" if n == "float" else
                       "a string" if n == "str" else n for n in names)
    return name + (" (or null)" if _admits(hint, type(None)) else "")


def _convert(key: str, value: Any, action: Any, hint: Any, where: dict[str, str]) -> Any:
    """One scalar through the command line's converter (argparse's `type`, then `choices`)."""
    expected = _type_name(hint, action)
    if isinstance(value, (list, dict)):
        kind = "list" if isinstance(value, list) else "mapping"
        raise ConfigError(f"{key} is a {kind} ({value!r}); it takes one value, {expected}", key,
                          where, f"give one value, e.g. {key}: {action.default}")
    text = value if isinstance(value, str) else str(value)
    converter = action.type or (lambda v: v)
    try:
        if isinstance(value, bool) and getattr(converter, "__name__", "") in ("int", "float"):
            raise ValueError("a boolean is not a number")
        converted = value if isinstance(value, bool) and converter.__name__ == "string_to_bool" \
            else converter(text)
    except Exception:  # noqa: BLE001 - ValueError, TypeError, argparse.ArgumentTypeError
        raise ConfigError(f"{key}: {value!r} is not {expected}", key, where,
                          f"give {key} {expected}, e.g. {key}: {action.default}") from None
    if action.choices and converted not in action.choices:
        raise ConfigError(f"{key}: {value!r} is not {expected}", key, where,
                          f"choose one of {', '.join(str(c) for c in action.choices)}")
    return converted


def yaml_value(key: str, value: Any, action: Any, hint: Any, source: str) -> Any:
    """A YAML value with the type the command line gives the same option.

    TRL sets YAML values as argparse defaults as they are, so `num_generations: 4.5` or
    `learning_rate: [1, 2]` reached the dataclass untyped, and a string for a list field was
    split into characters. Here: a scalar for a list field is a list of one; each element and each
    scalar goes through argparse's converter and choices; null only where the field admits None;
    a mapping only where it admits a dict (model_init_kwargs, ...), a list where it admits one
    (report_to).
    """
    where = {key: source}
    if value is None:
        if _admits(hint, type(None)) or action.default is None:
            return None
        raise ConfigError(f"{key} is null; it takes {_type_name(hint, action)}", key, where,
                          f"give a value or delete the line (default: {action.default!r})")
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        return [_convert(key, item, action, hint, where) for item in items]
    if isinstance(value, dict) and _admits(hint, dict):
        return value
    if isinstance(value, list) and _admits(hint, list):
        return [_convert(key, item, action, hint, where) for item in value]
    return _convert(key, value, action, hint, where)


def unknown_key(key: str, known: Iterable[str], source: str, on_command_line: bool) -> ConfigError:
    what = f"unknown option --{key}" if on_command_line else f"unknown key {key}"
    return ConfigError(f"{what}{_nearest(key, known)}", key, {key: source},
                       "use the options python train.py --help lists (TRL's GRPOConfig and "
                       "ModelConfig, and the recipe's own)")


def command_line_error(message: str, option_actions: Mapping[str, Any]) -> ConfigError:
    """argparse's error (`argument --x/--y: problem`) as one line naming the key."""
    match = re.match(r"argument (--[\w-]+)(?:/[\w/-]+)?: (.*)", message)
    if match is None:
        return ConfigError(message, "command line", {}, "python train.py --help lists the options")
    option, problem = match.groups()
    action = option_actions.get(option)
    key = action.dest if action is not None else option.lstrip("-")
    where = {key: COMMAND_LINE}
    if problem.startswith("expected"):
        return ConfigError(f"{option} {problem.replace('argument', 'value')}", key, where,
                           f"put a value after {option}, e.g. {option} {action.default}")
    if action is not None and action.choices:
        return ConfigError(f"{option}: {problem}", key, where,
                           f"choose one of {', '.join(str(c) for c in action.choices)}")
    kind = getattr(getattr(action, "type", None), "__name__", "")
    expected = {"int": "a whole number", "float": "a number",
                "string_to_bool": "true or false"}.get(kind, "a value of its type")
    example = f", e.g. {option} {action.default}" if action is not None and \
        action.default is not None else ""
    return ConfigError(f"{option}: {problem}", key, where, f"give {option} {expected}{example}")


def stray_argument(token: str, args: Sequence[str], option_actions: Mapping[str, Any]
                   ) -> ConfigError:
    """A command-line token that is no option: the value after a one-value option, say."""
    index = list(args).index(token)
    before = [a for a in args[:index] if a.startswith("--")]
    if before:
        option = before[-1].split("=", 1)[0]
        action = option_actions.get(option)
        key = action.dest if action is not None else option.lstrip("-")
        return ConfigError(f"{token!r} follows {option}, which takes one value", key,
                           {key: COMMAND_LINE}, f"give {option} one value, or put --<option> "
                           f"before {token!r}")
    return ConfigError(f"{token!r} is not an option", token, {token: COMMAND_LINE},
                       "options are --key value (python train.py --help)")


# ---------------------------------------------------------------------------------------------
# The values, before TRL's and transformers' dataclasses are built
# ---------------------------------------------------------------------------------------------

def check_batch(values: Mapping[str, Any], sources: Mapping[str, str], world_size: int) -> None:
    """TRL 1.16's batch rules, before its dataclass applies them with a traceback.

    The same conditions as `GRPOConfig.__post_init__` (trl/trainer/grpo_config.py): no
    auto_find_batch_size; generation_batch_size and steps_per_generation not both set; the
    generation batch (per_device_train_batch_size x world size x steps_per_generation, which
    defaults to gradient_accumulation_steps; or generation_batch_size, then a multiple of
    per_device_train_batch_size x world size) divisible by num_generations; num_generations >= 2.
    TRL's eval-batch rule does not apply: train.py refuses eval_strategy (`check_settings`).
    """
    counts = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
              "generation_batch_size", "steps_per_generation")
    for key in counts:
        value = values.get(key)
        if value is not None and value < 1:
            raise ConfigError(f"{key} {value} is not a count", key, sources,
                              f"give {key} a whole number of at least 1")
    if values.get("auto_find_batch_size"):
        raise ConfigError(
            "auto_find_batch_size is not supported by GRPO: halving the batch on out-of-memory "
            "breaks the groups of num_generations completions", "auto_find_batch_size",
            sources, "set auto_find_batch_size false and lower per_device_train_batch_size "
            "(keeping the generation batch a multiple of num_generations)")
    group = values["num_generations"]
    if group < 2:
        raise ConfigError(f"num_generations {group}: GRPO needs at least 2 completions per "
                          "prompt to compute advantages", "num_generations", sources,
                          "set num_generations 2 or more (the reference recipe uses 4)")
    per_device = values["per_device_train_batch_size"]
    given, steps = values.get("generation_batch_size"), values.get("steps_per_generation")
    if given is not None and steps is not None:
        raise ConfigError("generation_batch_size and steps_per_generation are both set; TRL "
                          "takes one of them", ["generation_batch_size", "steps_per_generation"],
                          sources, "drop one (steps_per_generation defaults to "
                          "gradient_accumulation_steps)")
    per_step = per_device * world_size
    processes = _plural(world_size, "process")
    if given is not None:
        if given % per_step:
            raise ConfigError(
                f"generation_batch_size {given} is not a multiple of "
                f"per_device_train_batch_size {per_device} x {processes} = {per_step}",
                ["generation_batch_size", "per_device_train_batch_size"], sources,
                f"use a multiple of {math.lcm(per_step, group)} (whole micro-steps and whole "
                f"groups of num_generations {group})")
        if given % group:
            raise ConfigError(
                f"generation_batch_size {given} does not split into groups of num_generations "
                f"{group} completions per prompt", ["num_generations", "generation_batch_size"],
                sources, f"use a generation_batch_size that is a multiple of "
                f"{math.lcm(per_step, group)}")
        return
    step_key = "steps_per_generation" if steps is not None else "gradient_accumulation_steps"
    steps = steps if steps is not None else values["gradient_accumulation_steps"]
    batch = per_step * steps
    if batch % group:
        fits = next(k for k in range(per_device, per_device + group + 1)
                    if k * world_size * steps % group == 0)
        raise ConfigError(
            f"the generation batch (per_device_train_batch_size {per_device} x {processes} x "
            f"{step_key} {steps} = {batch} completions) does not split into groups of "
            f"num_generations {group} completions per prompt",
            ["per_device_train_batch_size", "num_generations", step_key], sources,
            f"make it a multiple of {group}, e.g. per_device_train_batch_size {fits}")


def batch_summary(config: Any, world_size: int) -> str:
    """The global batch, for the log: completions and prompts per optimizer step (and the
    rollout batch where steps_per_generation differs from gradient_accumulation_steps)."""
    per_device, accumulation = config.per_device_train_batch_size, \
        config.gradient_accumulation_steps
    group, steps = config.num_generations, config.steps_per_generation or accumulation
    completions = world_size * per_device * accumulation
    line = (f"global batch: {_plural(world_size, 'process')} x {per_device} "
            f"per_device_train_batch_size x {accumulation} gradient_accumulation_steps = "
            f"{completions} completions = {completions / group:g} prompts x {group} "
            "num_generations per optimizer step")
    if steps != accumulation:
        rollout = world_size * per_device * steps
        line += (f"; rollouts of {rollout} completions ({rollout // group} prompts) every "
                 f"{steps} micro-steps (steps_per_generation)")
    return line


def _check_rewards(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    names = values.get("reward_funcs")
    for name in names or []:
        if name not in REWARDS:
            raise ConfigError(f"unknown reward {name!r}{_nearest(name, REWARDS)}",
                              "reward_funcs", sources,
                              f"use names from local.core.rewards.REWARDS: "
                              f"{', '.join(sorted(REWARDS))}")
    if not names:
        names, _ = default_rewards(values["template"], robust=values.get("robust_rewards", False))
    weights = values.get("reward_weights")
    if weights is not None and len(weights) != len(names):
        named_by = "reward_funcs" if values.get("reward_funcs") else "template"
        raise ConfigError(
            f"{len(weights)} reward_weights for {_plural(len(names), 'reward')} "
            f"({', '.join(names)})", ["reward_weights", named_by], sources,
            f"give one weight per reward, in the same order (e.g. --reward_weights "
            f"{' '.join(['1.0'] * len(names))}), or drop reward_weights for the defaults")
    resolve_reward_weights(values["template"], robust=values.get("robust_rewards", False),
                           reward_funcs=values.get("reward_funcs"), reward_weights=weights)


def _check_report_to(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    report_to = values.get("report_to")
    chosen = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in chosen:
        if name not in ("none", "all") and name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(f"report_to {name!r} is not an integration of transformers"
                              f"{_nearest(name, INTEGRATION_TO_CALLBACK)}", "report_to",
                              sources, "use tensorboard (the default), wandb, none, or all")


def check_environment(config: Any, model_args: Any, sources: Mapping[str, str]) -> None:
    """What the settings need installed (train.py checks it before loading anything; parsing a
    configuration does not): vLLM for use_vllm (TRL fails with an AttributeError from its
    module otherwise), flash-attn for flash_attention_2, wandb for report_to wandb."""
    if config.use_vllm and not vllm_installed():
        raise ConfigError("use_vllm true, but vLLM is not installed in this Python environment",
                          "use_vllm", sources, f"build and train in the vLLM environment: "
                          f"{VLLM_ENV_COMMAND}")
    if (getattr(model_args, "attn_implementation", None) == "flash_attention_2"
            and importlib.util.find_spec("flash_attn") is None):
        raise ConfigError("attn_implementation flash_attention_2, but flash-attn is not "
                          "installed", "attn_implementation", sources,
                          "pip install flash-attn in this environment, or use sdpa")
    report_to = config.report_to
    chosen = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "wandb" in chosen and importlib.util.find_spec("wandb") is None:
        raise ConfigError("report_to wandb, but wandb is not installed", "report_to", sources,
                          "pip install wandb in this environment, or report_to tensorboard")


_LOCAL_PATH = re.compile(r"^(/|\.{1,2}/|~)|/.*/|/$")  # a hub id is `name` or `org/name`


def check_model_path(name_or_path: str, sources: Mapping[str, str]) -> None:
    """A local model that cannot load, refused before loading: a path that does not exist (a
    name shaped like a path: /..., ./..., ~/..., a/b/c), a file, or a folder whose weight files
    are cut short or miss a shard (`model_problem`, evaluation's rule); a hub id is left to the
    loader."""
    path = Path(name_or_path).expanduser()
    key, todo = "model_name_or_path", ("give a model folder (bash run.sh --stage prepare "
                                       "downloads one) or a hub id such as Qwen/Qwen2.5-Omni-7B")
    if path.is_dir():
        problem = model_problem(path)
        if problem is not None:
            raise ConfigError(f"cannot load the model: {problem.split('; ')[0].rstrip('.')}",
                              key, sources, todo)
    elif path.exists():
        raise ConfigError(f"{name_or_path} is a file, not a model folder", key, sources, todo)
    elif _LOCAL_PATH.search(name_or_path):
        raise ConfigError(f"{name_or_path} does not exist", key, sources, todo)


def _check_vllm(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    if not values.get("use_vllm"):
        return
    # Only with use_vllm: the module loads TRL's vLLM generation code and the vLLM exporter.
    from local.train.vllm_rollouts import check_vllm_settings

    try:
        check_vllm_settings(types.SimpleNamespace(**values))
    except ValueError as err:
        key = "vllm_mode" if str(err).startswith("vllm_mode") else "vllm_tensor_parallel_size"
        fix = "colocate" if key == "vllm_mode" else "1"
        raise ConfigError(str(err).split(". ")[0], key, sources,
                          f"set {key} {fix} (one engine per GPU)") from None


def _resolve_dtype(values: dict[str, Any], sources: Mapping[str, str]) -> None:
    """`dtype` (TRL's ModelConfig) is an alias of `model_dtype` (the dtype the policy is loaded
    in): given alone it sets model_dtype, with a log line; both given and different, refused."""
    if "dtype" in sources:
        dtype = values["dtype"]
        if "model_dtype" in sources and values["model_dtype"] != dtype:
            raise ConfigError(
                f"dtype {dtype} and model_dtype {values['model_dtype']} disagree; both name the "
                "dtype the policy is loaded in", ["dtype", "model_dtype"], sources,
                "give one of them (dtype is an alias of model_dtype)")
        if "model_dtype" not in sources:
            values["model_dtype"] = dtype
            logger.info("dtype %s (%s) sets model_dtype, the dtype the policy is loaded in",
                        dtype, sources["dtype"])
    values["dtype"] = values["model_dtype"]  # the run record shows the dtype that was used


# Ranges the sampler, the trainer or the data reader would refuse only after the model loads
# (transformers' TemperatureLogitsWarper / TopPLogitsWarper raise at the first rollout).
RANGES: dict[str, tuple[Any, str]] = {
    "temperature": (lambda v: v > 0, "a number above 0 (the recipe samples at 0.7)"),
    "top_p": (lambda v: 0 < v <= 1, "a number in (0, 1] (1.0: off)"),
    "top_k": (lambda v: v is None or v >= 0, "a whole number of at least 0 (0: off)"),
    "repetition_penalty": (lambda v: v > 0, "a number above 0 (1.0: off)"),
    "max_completion_length": (lambda v: v >= 1, "a whole number of at least 1"),
    "num_iterations": (lambda v: v >= 1, "a whole number of at least 1"),
    "learning_rate": (lambda v: v >= 0, "a number of at least 0"),
    "max_train_samples": (lambda v: v is None or v >= 1, "a whole number of at least 1"),
    "max_audio_duration_in_seconds": (lambda v: v is None or v > 0, "a number above 0"),
}


def _check_ranges(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    for key, (fits, expected) in RANGES.items():
        if key in values and not fits(values[key]):
            raise ConfigError(f"{key} {values[key]} is out of range", key, sources,
                              f"give {key} {expected}")
    attention = values.get("attn_implementation")
    if attention is not None and "/" not in attention:  # a hub kernel ("org/repo") is not listed
        known = ["eager", *ALL_ATTENTION_FUNCTIONS.keys()]
        if attention not in known and not attention.startswith("paged|"):
            raise ConfigError(f"attn_implementation {attention!r} is not one transformers "
                              f"knows{_nearest(attention, known)}", "attn_implementation",
                              sources, "use sdpa (the default), eager or flash_attention_2")


def check_settings(values: dict[str, Any], sources: Mapping[str, str], world_size: int) -> None:
    """Everything that can be checked from the values alone; `values` (the parsed options of
    both dataclasses, by name) gets the dtype alias resolved."""
    check_batch(values, sources, world_size)
    _check_ranges(values, sources)
    strategy = values.get("eval_strategy")
    if strategy is not None and str(getattr(strategy, "value", strategy)) != "no":
        raise ConfigError(f"eval_strategy {strategy}: train.py trains only (it gives the "
                          "Trainer no eval_dataset)", "eval_strategy", sources,
                          "set eval_strategy no; evaluate the checkpoints with "
                          "bash run.sh --stage mmau --stop_stage mmsu")
    _check_rewards(values, sources)
    _check_report_to(values, sources)
    _check_vllm(values, sources)
    _resolve_dtype(values, sources)


def _keys_in(message: str, candidates: Iterable[str]) -> list[str]:
    found = [(match.start(), key) for key in candidates
             if (match := re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message))]
    return [key for _, key in sorted(found)]


def dataclass_error(error: Exception, cls: type, inputs: Mapping[str, Any],
                    sources: Mapping[str, str]) -> ConfigError:
    """What TRL's or transformers' dataclass refused (`error`, raised building `cls` from
    `inputs`), as one line naming the key: the given keys the message names, else those whose
    value it quotes, else those whose removal (back to the default) makes the error go away."""
    message = " ".join(str(error).split()) or type(error).__name__
    given = [key for key in inputs if key in sources]
    keys = _keys_in(message, given)
    if not keys:
        keys = [key for key in given if isinstance(inputs[key], str) and len(inputs[key]) > 1
                and re.search(rf"(?<!\w){re.escape(inputs[key])}(?!\w)", message)]
    if not keys:
        keys = _culprits(cls, inputs, given)
    return ConfigError(message.rstrip("."), keys or ["configuration"], sources,
                       "change that setting (python train.py --help lists the options)")


def _culprits(cls: type, inputs: Mapping[str, Any], given: Sequence[str]) -> list[str]:
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cls)}
    culprits = []
    for key in given:
        field = fields[key]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            continue
        try:
            cls(**{**inputs, key: default})
        except Exception:  # noqa: BLE001 - still refused: not this key alone
            continue
        culprits.append(key)
    return culprits


# ---------------------------------------------------------------------------------------------
# The resume point
# ---------------------------------------------------------------------------------------------

def check_output_dir(run_dir: str | Path, sources: Mapping[str, str]) -> None:
    """The run folder can be written: not a file, and its nearest existing folder writable."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file, not a run folder", "output_dir", sources,
                          "give a folder for the run (created if missing), e.g. exp/grpo")
    existing = next((p for p in (run_dir, *run_dir.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{existing} is a file, so {run_dir} cannot be created", "output_dir",
                          sources, "give a run folder under a folder, e.g. exp/grpo")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{existing} is not writable, so the run cannot write {run_dir}",
                          "output_dir", sources, "give a run folder you can write to")


def resolve_resume(value: str | None, run_dir: str | Path, overwrite: bool,
                   sources: Mapping[str, str]) -> Path | None:
    """The checkpoint a run resumes from, or None (start at step 0).

    - unset: output_dir's last complete checkpoint (interrupted saves passed over), none with
      overwrite_output_dir;
    - `true`: the same, but a run folder without one is refused (HF's meaning of true);
    - a path: that checkpoint folder (weights and trainer_state.json), from any run folder.

    Resume wants the states too (`local.runs.checkpoints.states_problem`: optimizer and
    scheduler, DeepSpeed's global_stepN/): a newer checkpoint without them (only evaluable) is
    passed over with a warning naming it, and refused, by name, when named or when no
    checkpoint of output_dir has them.

    Refused, in one line: `true` or a path with overwrite_output_dir (it starts over), `false`
    (resuming is the default; overwrite_output_dir starts over), a path that is missing, a file,
    a run folder (its last checkpoint is named), a checkpoint whose save was interrupted, and
    (whichever way it was chosen) a checkpoint whose weight files are not whole
    (`checkpoint_problem`, the rule evaluation uses).
    """
    run_dir = Path(run_dir)
    key = "resume_from_checkpoint"
    if value is None or str(value).strip() == "":
        resume = None if overwrite else _newest(run_dir, "output_dir", sources)
        return _whole(resume, "output_dir", sources)
    text = str(value).strip()
    if text.lower() in FALSE_WORDS:
        raise ConfigError(f"resume_from_checkpoint {text}: a run resumes from output_dir's last "
                          "checkpoint unless told to start over", key, sources,
                          "drop it to resume, or give --overwrite_output_dir true to start over")
    if overwrite:
        what = "output_dir's last checkpoint" if text.lower() in TRUE_WORDS else text
        raise ConfigError(f"resume_from_checkpoint asks to resume from {what}, but "
                          "overwrite_output_dir true starts over",
                          [key, "overwrite_output_dir"], sources, "drop one of them")
    if text.lower() in TRUE_WORDS:
        last = _newest(run_dir, key, sources)
        if last is None:
            raise ConfigError(f"resume_from_checkpoint true, but {run_dir} holds no complete "
                              "checkpoint to resume from", key, sources,
                              "drop it to start fresh, or give a checkpoint-N folder")
        return _whole(last, key, sources)
    path = Path(text)
    if is_resumable_checkpoint(path):
        return _whole(path, key, sources)
    if is_finished_save(path):  # without the resume states (weights cut short: refused first)
        _only_evaluable(_whole(path, key, sources), states_problem(path), key, sources)
    if not path.exists():
        raise ConfigError(f"{path} does not exist", key, sources,
                          "give a checkpoint-N folder, or true for output_dir's last checkpoint")
    if not path.is_dir():
        raise ConfigError(f"{path} is a file, not a checkpoint folder", key, sources,
                          "give a checkpoint-N folder (model weights and trainer_state.json)")
    inner, passed = newest_resumable(path)
    inner = inner or (passed[0][0] if passed else None)
    if inner is not None:
        raise ConfigError(f"{path} is a run folder, not a checkpoint", key, sources,
                          f"give one of its checkpoints, e.g. {inner}")
    if is_training_checkpoint(path):
        raise ConfigError(f"{path} is an interrupted save (it needs model weights and "
                          "trainer_state.json, written last)", key, sources,
                          _earlier(path))
    raise ConfigError(f"{path} is not a checkpoint (no model weights and trainer_state.json)",
                      key, sources, "give a checkpoint-N folder that train.py saved")


def _earlier(checkpoint: Path) -> str:
    earlier = [c for c in resumable_checkpoints(checkpoint.parent)
               if c != checkpoint and checkpoint_problem(c) is None]
    step = checkpoint_step(checkpoint.name)
    if step is not None:
        earlier = [c for c in earlier if int(c.name.split("-")[1]) < step]
    return (f"resume from {earlier[-1]}, or start over with --overwrite_output_dir true"
            if earlier else "resume from a complete checkpoint, or start over with "
            "--overwrite_output_dir true")


def _whole(checkpoint: Path | None, key: str, sources: Mapping[str, str]) -> Path | None:
    """`checkpoint`, unless its weight files are cut short or missing shards (refused)."""
    if checkpoint is None:
        return None
    problem = checkpoint_problem(checkpoint)
    if problem is not None:
        problem = problem.split("; ")[0].rstrip(".")  # what is wrong; the advice is resume's
        raise ConfigError(f"cannot resume: {problem}", key, sources,
                          _earlier(checkpoint))
    return checkpoint


def _newest(run_dir: Path, key: str, sources: Mapping[str, str]) -> Path | None:
    """output_dir's newest resumable checkpoint; newer ones that are only evaluable are named in
    a warning, and refused when no checkpoint is resumable (step 0 would write over them)."""
    newest, passed = newest_resumable(run_dir)
    for checkpoint, missing in passed:
        logger.warning("resume passes over %s: it can be evaluated but not resumed (%s)",
                       checkpoint, missing)
    if newest is None and passed:
        _only_evaluable(passed[0][0], passed[0][1], key, sources)
    return newest


def _only_evaluable(checkpoint: Path, missing: str | None, key: str,
                    sources: Mapping[str, str]) -> None:
    """Refuse to resume from a checkpoint without its optimizer states (the Trainer would go on
    with a fresh optimizer), naming it and the checkpoint to resume from instead."""
    earlier = [c for c in resumable_checkpoints(checkpoint.parent) if c != checkpoint]
    todo = (f"resume from {earlier[-1]}" if earlier else "start over with "
            f"--overwrite_output_dir true, or train a new run from its weights "
            f"(--model_name_or_path {checkpoint})")
    raise ConfigError(f"{checkpoint} can be evaluated but not resumed: {missing}", key, sources,
                      todo)
