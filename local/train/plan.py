"""Will a training run fit its GPUs? A per-GPU memory plan before launch, from the config alone.

    python -m local.train.plan --model Qwen/Qwen2.5-Omni-7B --config conf/grpo.yaml \\
        --deepspeed conf/ds_zero1.json --nproc 8 --nnodes 1 --gpu_memory_gb 80 \\
        [train.py options: --use_vllm true --use_peft true --lora_r 64 ...]
    bash run.sh --stage plan --nproc 8 --gpu_memory_gb 80 -- --use_vllm true

Train options are read by train.py's own parser (`local.train.config.read_config`: --config
YAML, then the command line, checked the same way), so the plan sees what training would. Only
the model's config is read (a local folder, the hub cache, or the hub): no weights; offline it
works from a cached config. Planner options: --model, --deepspeed (a JSON file, or none: plain
DDP), --nproc / --nnodes, --gpu_memory_gb (GiB of one GPU; default: the visible GPU's),
--audio_seconds (the clip length the activation estimates assume, 30), --freeze_vision_tower
(Omni's vision tower: frozen by default), --json PATH (the numbers, for scripts).

It prints a table, one row per item per GPU with how it was computed (`local.train.plan_memory`:
model states from DeepSpeed's estimators, then what they leave out), host RAM per node, the peak
against the card, and a verdict: `fits`, or `does not fit` with the cheapest change that makes
it fit (`local.train.plan_changes`). Exit status: 0 fits, 3 does not fit, 2 input it cannot use
(one line: an option, the DeepSpeed file, a config that cannot be read, no GPU and no
--gpu_memory_gb).

train.py can call `check_before_loading` at start: one line when model states, reference model
and vLLM share alone exceed the card (the activation estimates only warn).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import torch
from trl import get_peft_config

from local.train import config as train_config
from local.train.config import AudioGRPOConfig, read_config
from local.train.config_checks import ConfigError
from local.train.plan_changes import fitting_changes
from local.train.plan_memory import estimate
from local.train.plan_model import PlanError, model_shape
from local.train.plan_report import Plan, plan_json, render
from local.train.plan_settings import GIB, Settings

EXIT_FITS, EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT = 0, 2, 3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise PlanError(f"{message} (python -m local.train.plan --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m local.train.plan", allow_abbrev=False, description=(
        "Per-GPU memory plan of a training run; other options go to train.py's parser."))
    parser.add_argument("--model", help="hub id or local folder (default: --config's)")
    parser.add_argument("--deepspeed", default="none", help="DeepSpeed JSON, or none (DDP)")
    parser.add_argument("--nproc", type=int, default=1, help="GPUs per node")
    parser.add_argument("--nnodes", type=int, default=1, help="nodes")
    parser.add_argument("--gpu_memory_gb", type=float, help="GiB of one GPU (default: visible)")
    parser.add_argument("--audio_seconds", type=float, default=30.0,
                        help="clip length the activation estimates assume")
    parser.add_argument("--freeze_vision_tower", default="true", choices=["true", "false"],
                        help="Omni's vision tower frozen (no gradients, no optimizer states)")
    parser.add_argument("--json", help="also write the numbers to this file")
    return parser


def read_deepspeed(value: str | dict | None) -> dict | None:
    """The DeepSpeed config as a dict (None: no DeepSpeed)."""
    if value is None or isinstance(value, dict):
        return value
    if value.strip().lower() in ("", "none"):
        return None
    try:
        return json.loads(Path(value).read_text())
    except (OSError, ValueError) as error:
        raise PlanError(f"--deepspeed {value}: not a readable DeepSpeed JSON file "
                        f"({' '.join(str(error).split())}); give conf/ds_zero1.json, "
                        "conf/ds_zero3.json or none") from None


def _number(value: Any, auto: float | None) -> float | None:
    return auto if value in (None, "auto") else float(value)


def _enabled(block: Any, auto: bool) -> bool:
    value = block.get("enabled", "auto") if isinstance(block, dict) else "auto"
    return auto if value == "auto" else bool(value)


def settings_from(config: Any, model_args: Any, deepspeed: dict | None, gpus_per_node: int,
                  nodes: int, card_gib: float, audio_seconds: float = 30.0,
                  freeze_vision: bool = True, deepspeed_label: str | None = None) -> Settings:
    """The plan's settings from train.py's parsed config, model options and DeepSpeed config."""
    zero = (deepspeed or {}).get("zero_optimization", {}) if deepspeed is not None else {}
    mixed16 = bool(config.bf16 or config.fp16)
    if deepspeed is not None:
        mixed16 = _enabled(deepspeed.get("bf16"), bool(config.bf16)) or \
            _enabled(deepspeed.get("fp16"), bool(config.fp16))
    clip = config.max_audio_duration_in_seconds
    return Settings(
        gpus_per_node=gpus_per_node, nodes=nodes, card_gib=card_gib,
        zero=None if deepspeed is None else int(zero.get("stage", 0)),
        deepspeed=deepspeed_label or (config.deepspeed if isinstance(config.deepspeed, str)
                                      else "DeepSpeed"),
        offload_optimizer=str((zero.get("offload_optimizer") or {}).get("device", "none")),
        offload_param=str((zero.get("offload_param") or {}).get("device", "none")),
        allgather_bucket=_number(zero.get("allgather_bucket_size"), 5e8),
        reduce_bucket=_number(zero.get("reduce_bucket_size"), None),
        max_live_parameters=_number(zero.get("stage3_max_live_parameters"), 1e9),
        mixed16=mixed16, weight_bytes=DTYPE_BYTES.get(str(config.model_dtype), 2),
        beta=config.beta, peft=get_peft_config(model_args),
        freeze_audio=bool(config.freeze_audio_encoder),
        freeze_vision=bool(getattr(config, "freeze_vision_tower", freeze_vision)),
        use_vllm=bool(config.use_vllm) and config.vllm_mode == "colocate",
        vllm_share=config.vllm_gpu_memory_utilization,
        vllm_sleep=bool(config.vllm_enable_sleep_mode), vllm_max_len=config.vllm_max_model_length,
        batch=config.per_device_train_batch_size, grad_accum=config.gradient_accumulation_steps,
        steps_per_generation=config.steps_per_generation or config.gradient_accumulation_steps,
        completion=config.max_completion_length,
        audio_seconds=min(audio_seconds, clip or math.inf),
        gradient_checkpointing=bool(config.gradient_checkpointing),
        ds3_gather=bool(config.ds3_gather_for_generation))


def card_memory(gpu_memory_gb: float | None) -> tuple[float, str]:
    """GiB of one GPU: the option, else the visible GPU's; neither is a PlanError."""
    if gpu_memory_gb is not None:
        if gpu_memory_gb <= 0:
            raise PlanError(f"--gpu_memory_gb {gpu_memory_gb:g}: give a positive number")
        return gpu_memory_gb, "--gpu_memory_gb"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.total_memory / GIB, props.name
    raise PlanError("no GPU visible here: give the memory of one training GPU, e.g. "
                    "--gpu_memory_gb 80 (run.sh: bash run.sh --stage plan --gpu_memory_gb 80)")


@contextlib.contextmanager
def _as_world(world: int) -> Iterator[None]:
    """Parse as `world` processes would (the recipe's batch checks and TRL's, which derive
    steps_per_generation from it) without starting any: setting WORLD_SIZE would make
    TrainingArguments wait for the other processes."""
    with mock.patch.object(train_config, "world_size", lambda: world), \
            mock.patch.object(AudioGRPOConfig, "world_size", property(lambda self: world)):
        yield


def plan_from_args(argv: list[str]) -> Plan:
    """The plan of a command line (planner options + train.py options); PlanError or
    ConfigError (one line) for input it cannot use."""
    options, train_args = _parser().parse_known_args(argv)
    if options.nproc < 1 or options.nnodes < 1:
        raise PlanError("--nproc and --nnodes: give whole numbers of at least 1")
    card_gib, card_source = card_memory(options.gpu_memory_gb)
    train_args = list(train_args)
    if options.model:
        train_args += ["--model_name_or_path", options.model]
    if "--output_dir" not in train_args:  # TrainingArguments wants one; nothing is written
        train_args += ["--output_dir", str(Path(tempfile.gettempdir()) / "plan-unused")]
    if not torch.cuda.is_available() and "--use_cpu" not in train_args:
        train_args += ["--use_cpu", "true"]  # lets bf16 parse here; the plan keeps bf16
    with _as_world(options.nproc * options.nnodes):
        parsed = read_config(train_args)
    name = parsed.model_args.model_name_or_path
    if not name:
        raise PlanError("no model: give --model (a hub id or a checkpoint folder)")
    deepspeed = read_deepspeed(options.deepspeed)
    shape = model_shape(name, parsed.model_args.model_revision)
    settings = settings_from(parsed.config, parsed.model_args, deepspeed, options.nproc,
                             options.nnodes, card_gib, options.audio_seconds,
                             options.freeze_vision_tower == "true", options.deepspeed)
    est = estimate(shape, settings)
    plan = Plan(shape, settings, est, [], card_source)
    if not plan.fits:
        plan.fixes = fitting_changes(shape, settings)
    if options.json:
        Path(options.json).write_text(json.dumps(plan_json(plan), indent=2) + "\n")
    return plan


def check_before_loading(config: Any, model_args: Any, world_size: int,
                         gpu_memory_gb: float | None = None) -> str | None:
    """train.py's check at start, before the weights load: one line when the model states,
    the reference model and vLLM's share alone exceed the card, else None. The card is
    `gpu_memory_gb` or the visible GPU's (no GPU: nothing to check); GPUs per node from
    LOCAL_WORLD_SIZE. A model or DeepSpeed file the planner cannot read is left to the loader."""
    try:
        card_gib, _ = card_memory(gpu_memory_gb)
        gpus_per_node = max(1, min(world_size, int(os.environ.get("LOCAL_WORLD_SIZE",
                                                                  world_size))))
        nodes = max(1, world_size // gpus_per_node)
        shape = model_shape(model_args.model_name_or_path, model_args.model_revision)
        settings = settings_from(config, model_args, read_deepspeed(config.deepspeed),
                                 gpus_per_node, nodes, card_gib)
        est = estimate(shape, settings)
    except PlanError:
        return None
    states, reference, vllm = (est.of_kinds(kind) for kind in ("states", "reference", "vllm"))
    total = states + reference + vllm
    if total <= card_gib:
        return None
    fixes = fitting_changes(shape, settings)
    todo = f"cheapest change: {fixes[0].label}" if fixes else "more GPUs or a larger card"
    return (f"train.py: model states {states:.1f} + reference model {reference:.1f} + vLLM share "
            f"{vllm:.1f} = {total:.1f} GiB per GPU exceed the card's {card_gib:g} GiB before any "
            f"activation ({world_size} GPUs; python -m local.train.plan with the same options "
            f"shows every row): {todo}; --check_memory false to go on anyway")


def main(argv: list[str] | None = None) -> int:
    """Print the plan; exit 0 (fits), 3 (does not fit) or 2 (input it cannot use)."""
    try:
        with warnings.catch_warnings():  # transformers' deprecation notes while parsing
            warnings.simplefilter("ignore", FutureWarning)
            plan = plan_from_args(list(sys.argv[1:] if argv is None else argv))
    except PlanError as error:
        print(f"plan: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as error:  # train.py's one line about an option or the YAML
        print(f"plan: {str(error.code).removeprefix('train.py: ')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(render(plan))
    return EXIT_FITS if plan.fits else EXIT_DOES_NOT_FIT


if __name__ == "__main__":
    sys.exit(main())
