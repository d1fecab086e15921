"""GRPO training of an audio language model on audio question answering.

Reads `conf/grpo.yaml` (the settings of the reference recipe, WeST's GRPO example) and
command-line overrides, loads the policy by `config.model_type`, builds the training rows, and
trains with `AudioGRPOTrainer`. The run folder (`--output_dir`) gets the resolved config, the
command line, `checkpoint-N/` folders (processor included) and the completions log; an
interrupted run resumes from its last complete checkpoint unless `--overwrite_output_dir true`.

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
import sys
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from accelerate import PartialState
from trl import ModelConfig, get_peft_config

from local.core.models import LoadedModel, load_model_and_processor
from local.core.records import RecordError
from local.train.checkpoints import last_resumable_checkpoint, policy_source, write_run_record
from local.train.config import AudioGRPOConfig, parse_args
from local.train.dataset import build_train_dataset
from local.train.rewards import get_rewards, resolve_reward_weights, weight_table
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


def build_trainer(config: AudioGRPOConfig, model_args: ModelConfig, loaded: LoadedModel,
                  dataset: Any) -> AudioGRPOTrainer:
    """The trainer of a run: rewards resolved by name, the encoder frozen after PEFT wrapping
    (`freeze_audio_encoder`), the bad-record policy applied to clips decoded at rollout time."""
    set_up_tracking(config.report_to)
    trainer = AudioGRPOTrainer(
        model=loaded.model,
        processing_class=loaded.processor,
        family=loaded.family,
        max_audio_duration_in_seconds=config.max_audio_duration_in_seconds,
        bad_records=config.bad_records,
        freeze_audio_encoder=config.freeze_audio_encoder,
        reward_funcs=resolve_rewards(config),
        args=config,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
    )
    if wants(config.report_to, "tensorboard") and config.log_completions:
        trainer.add_callback(CompletionSamples(trainer))  # TRL sends its tables to W&B only
    return trainer


def _finished(checkpoint: Path, max_steps: int) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return max_steps > 0 and state.get("global_step", 0) >= max_steps


def training_rows(config: AudioGRPOConfig, state: PartialState) -> datasets.Dataset:
    """The training rows, or a one-line exit naming the file when the data cannot be used.

    Every rank reads (rank 0 first) and every rank stops on an error, after the barrier.
    """
    error = None
    with state.main_process_first():
        try:
            dataset, report = build_train_dataset(
                config.train_data, config.train_format, template=config.template,
                split=config.train_split, audio_dir=config.train_audio_dir,
                errors=config.bad_records, limit=config.max_train_samples)
        except (RecordError, OSError) as err:  # the message names the file and what to do
            error = err
    if error is not None:
        raise SystemExit(f"train.py: unusable training data (--train_data, train_format "
                         f"{config.train_format}): {' '.join(str(error).split())}")
    logger.info("training rows: %s", report.summary())
    return dataset


def main(argv: list[str] | None = None) -> Path:
    config, model_args = parse_args(argv)
    config.run_name = config.run_name or Path(config.output_dir).name  # W&B run = run folder
    _ = config.device  # sets up torch.distributed before the model is built
    if config.deepspeed:  # ZeRO-3 partitions at load time: DeepSpeed's comm must be up (CPU too)
        import deepspeed

        deepspeed.init_distributed(dist_backend=config.ddp_backend or None)
    state = PartialState()
    setup_logging(state.process_index, force=False)  # rank 0 logs; others own warnings once
    transformers.utils.logging.set_verbosity(config.get_process_log_level())
    if not model_args.model_name_or_path:
        raise SystemExit("train.py: give --model_name_or_path (hub id or checkpoint folder)")
    run_dir = Path(config.output_dir)
    resume = None if config.overwrite_output_dir else last_resumable_checkpoint(run_dir)
    if resume is not None and _finished(resume, config.max_steps):
        if state.is_main_process:
            logger.info("run already finished at %s; nothing to do (--overwrite_output_dir true "
                        "starts over)", resume)
        return run_dir
    dataset = training_rows(config, state)  # before the model: bad data costs no model load
    if state.is_main_process:
        write_run_record(run_dir, config, model_args, argv)
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
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except UnusableClipError as error:  # every rank stops here together: one line, no traceback
        raise SystemExit(f"train.py: {error}") from None
    final = run_dir / f"checkpoint-{trainer.state.global_step}"
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
