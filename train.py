"""GRPO training of an audio language model on audio question answering.

Reads `conf/grpo.yaml` (the settings of the reference recipe, WeST's GRPO example) and
command-line overrides, loads the policy by `config.model_type`, builds the training rows, and
trains with `AudioGRPOTrainer`. The run folder (`--output_dir`) gets the resolved config, the
command line, `checkpoint-N/` folders (processor included), the completions log and
`train.log` (rank 0's log, metrics included, appended across resumes). An interrupted run resumes
from its last complete checkpoint unless `--overwrite_output_dir true`;
`--resume_from_checkpoint` names a checkpoint folder to resume from (`true`: the last one of
output_dir, refused where there is none). The configuration and the resume point are checked
before the data and the model are loaded: a problem stops with one line naming the key
(local/train/config_checks.py). The log states the global batch per optimizer step.
Every checkpoint keeps its weights (each evaluates); only the newest keeps the optimizer states
unless `--keep_optimizer_states all`, and before the weights load the estimated size of one
checkpoint and of the run is checked against output_dir's free space (`--check_disk`;
local/train/checkpoint_policy.py).

Example:
    $ torchrun --nproc_per_node 8 train.py --config conf/grpo.yaml \\
        --model_name_or_path Qwen/Qwen2.5-Omni-7B --train_data data/avqa \\
        --output_dir exp/grpo --deepspeed conf/ds_zero1.json
    $ python train.py --config conf/demo.yaml --model_name_or_path .cache/tiny-omni \\
        --train_data data/demo/avqa --output_dir exp/demo/run     # CPU
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from accelerate import PartialState
from trl import ModelConfig, get_peft_config

from local.core.models import (
    LoadedModel,
    ModelLoadError,
    family_of,
    load_config,
    load_model_and_processor,
)
from local.core.records import RecordError
from local.core.rewards import get_rewards, resolve_reward_weights, weight_table
from local.runs.layout import TRAINER_STATE, checkpoint_dir
from local.train.checkpoint_policy import KeepNewestStates, check_disk
from local.train.checkpoints import policy_source, write_run_record
from local.train.config import AudioGRPOConfig, read_config
from local.train.config_checks import (
    ConfigError,
    batch_summary,
    check_environment,
    check_model_path,
    check_output_dir,
    resolve_resume,
)
from local.train.dataset import build_train_dataset
from local.train.guards import exclude_family_towers, family_lora_problem, family_lora_targets
from local.train.plan import check_before_loading
from local.train.run_log import MetricsLog, RunLog
from local.train.selection import read_selection
from local.train.tracking import CompletionSamples, set_up_tracking, wants
from local.train.trainer import AudioGRPOTrainer, UnusableClipError
from local.util.dist import setup_logging

logger = logging.getLogger("train")
def resolve_rewards(config: AudioGRPOConfig) -> list:
    """The reward functions of the run; sets `config.reward_weights` (matched by reward name)."""
    names, weights = resolve_reward_weights(
        config.template, robust=config.robust_rewards, reward_funcs=config.reward_funcs,
        reward_weights=config.reward_weights)
    config.reward_weights = weights
    logger.info("rewards (name=weight): %s", weight_table(names, weights))
    return get_rewards(names)


def check_family_lora(model_args: ModelConfig, sources: dict[str, str]) -> None:
    """Stop in one line, before the weights load, when `--use_peft` without targets would take
    the family's LoRA targets and they cannot take the options (local.train.guards)."""
    if not model_args.use_peft:
        return
    try:
        family = family_of(load_config(model_args.model_name_or_path,
                                       revision=model_args.model_revision))
    except ModelLoadError:
        return  # an adapter folder, or a config the load reports
    problem = family_lora_problem(model_args, family)
    if problem:
        raise ConfigError(f"use_peft: {problem}", "lora_dropout", sources,
                          "give --lora_dropout 0, or your own --lora_target_modules")


def build_trainer(config: AudioGRPOConfig, model_args: ModelConfig, loaded: LoadedModel,
                  dataset: Any) -> AudioGRPOTrainer:
    """The trainer of a run: rewards resolved by name, the family's LoRA targets where
    `--use_peft` names none and the family states them (local.train.guards.family_lora_targets:
    Qwen3-Omni), the encoder frozen after PEFT wrapping (`freeze_audio_encoder`), the MoE router
    frozen (`freeze_router`), the bad-record policy applied to clips decoded at rollout time."""
    set_up_tracking(config.report_to)
    targets = family_lora_targets(model_args, loaded.family)  # --use_peft without targets
    peft_config = get_peft_config(model_args)
    if targets is not None:
        exclude_family_towers(peft_config, loaded.family)
        logger.info(targets)
    trainer = AudioGRPOTrainer(
        model=loaded.model,
        processing_class=loaded.processor,
        family=loaded.family,
        max_audio_duration_in_seconds=config.max_audio_duration_in_seconds,
        bad_records=config.bad_records,
        freeze_audio_encoder=config.freeze_audio_encoder,
        freeze_router=config.freeze_router,
        reward_funcs=resolve_rewards(config),
        args=config,
        train_dataset=dataset,
        peft_config=peft_config,
    )
    if wants(config.report_to, "tensorboard") and config.log_completions:
        trainer.add_callback(CompletionSamples(trainer))  # TRL sends its tables to W&B only
    if config.keep_optimizer_states == "newest" and not config.save_only_model:
        trainer.add_callback(KeepNewestStates())  # older checkpoints keep their weights only
    return trainer


def _step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    return json.loads((checkpoint / TRAINER_STATE).read_text()).get("global_step", 0)


def _finished(checkpoint: Path, max_steps: int) -> bool:
    return max_steps > 0 and _step(checkpoint) >= max_steps


def training_rows(config: AudioGRPOConfig, state: PartialState) -> datasets.Dataset:
    """The training rows, or a one-line exit naming the file when the data cannot be used.

    Every rank reads (rank 0 first) and every rank stops on an error, after the barrier.
    """
    error = None
    with state.main_process_first():
        try:
            selection = (read_selection(config.train_selection, config.train_data)
                         if config.train_selection else None)
            dataset, report = build_train_dataset(
                config.train_data, config.train_format, template=config.template,
                split=config.train_split, audio_dir=config.train_audio_dir,
                errors=config.bad_records, limit=config.max_train_samples, selection=selection)
        except (RecordError, OSError) as err:  # the message names the file and what to do
            error = err
    if error is not None:
        raise SystemExit(f"train.py: unusable training data (--train_data, train_format "
                         f"{config.train_format}): {' '.join(str(error).split())}")
    logger.info("training rows: %s", report.summary())
    if selection is not None:
        logger.info("train_selection %s: %d rows selected, %d trained on", config.train_selection,
                    len(selection), len(dataset))
    return dataset


def main(argv: list[str] | None = None) -> Path:
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(rank, force=False)  # rank 0 logs; others own warnings once
    with RunLog(enabled=rank == 0) as run_log:
        return _run(argv, run_log)


def _run(argv: list[str] | None, run_log: RunLog) -> Path:
    # Every check of the configuration and of the resume point comes first: before the data,
    # the model, a download or torch.distributed (local/train/config_checks.py).
    config, model_args, sources = read_config(argv)
    check_environment(config, model_args, sources)  # vLLM for use_vllm, flash-attn, wandb
    if not model_args.model_name_or_path:
        raise ConfigError("no model to train", "model_name_or_path", sources,
                          "give --model_name_or_path (a hub id or a checkpoint folder)")
    run_dir = Path(config.output_dir)
    check_output_dir(run_dir, sources)
    resume = resolve_resume(config.resume_from_checkpoint, run_dir, config.overwrite_output_dir,
                            sources)
    config.run_name = config.run_name or run_dir.name  # W&B run = run folder
    _ = config.device  # sets up torch.distributed before the model is built
    if config.deepspeed:  # ZeRO-3 partitions at load time: DeepSpeed's comm must be up (CPU too)
        import deepspeed

        deepspeed.init_distributed(dist_backend=config.ddp_backend or None)
    state = PartialState()
    transformers.utils.logging.set_verbosity(config.get_process_log_level())
    if resume is not None and _finished(resume, config.max_steps):
        if state.is_main_process:
            if run_dir.is_dir():
                run_log.open(run_dir)
            logger.info("run already finished at %s; nothing to do (--overwrite_output_dir true "
                        "starts over)", resume)
        return run_dir
    if state.is_main_process:
        logger.info(batch_summary(config, state.num_processes))
    dataset = training_rows(config, state)  # before the model: bad data costs no model load
    check_model_path(model_args.model_name_or_path, sources)  # a missing folder, cut weights
    check_family_lora(model_args, sources)  # Qwen3-Omni's expert LoRA takes no dropout
    if config.check_memory:  # on a GPU only: model states alone must fit before the weights load
        refusal = check_before_loading(config, model_args, state.num_processes)
        if refusal:
            raise SystemExit(refusal)
    if config.check_disk:  # output_dir's free space against one checkpoint and the whole run
        refusal = check_disk(config, model_args, _step(resume), log=state.is_main_process)
        if refusal:
            raise SystemExit(refusal)
    if state.is_main_process:
        write_run_record(run_dir, config, model_args, argv)
        run_log.open(run_dir)
        logger.info("run folder %s; %s", run_dir,
                    f"resuming from {resume}" if resume else "starting fresh")

    with state.main_process_first():  # rank 0 writes the thinker folder, the others reuse it
        source = policy_source(model_args.model_name_or_path, run_dir / "init_thinker",
                               revision=model_args.model_revision)
    loaded = load_model_and_processor(source, dtype=config.model_dtype,
                                      attn_implementation=model_args.attn_implementation,
                                      revision=None if source != model_args.model_name_or_path
                                      else model_args.model_revision)

    trainer = build_trainer(config, model_args, loaded, dataset)
    trainer.add_callback(MetricsLog())
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except UnusableClipError as error:  # every rank stops here together: one line, no traceback
        raise SystemExit(f"train.py: {error}") from None
    final = checkpoint_dir(run_dir, trainer.state.global_step)
    if not final.exists():
        trainer.save_model(str(final))  # model + processor of the last step (for evaluation)
    if state.is_main_process:
        logger.info("done: %d steps; checkpoints in %s", trainer.state.global_step, run_dir)
    return run_dir


def _shutdown() -> None:
    """A clean exit for every rank (gloo/DeepSpeed abort the process otherwise)."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    finally:
        _shutdown()
