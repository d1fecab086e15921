"""GRPO rollouts with vLLM (`use_vllm: true`, colocate) that carry each row's audio.

TRL 1.16's `VLLMGeneration` (trl/generation/vllm_generation.py) sends vLLM token ids and images
only. With an audio model it would send the processor-expanded `<|AUDIO|>` runs and no audio:
vLLM accepts that without an error and embeds the placeholders as text, so the rollouts come
from a model that never heard the clip (TRL's importance-sampling ratio is the only trace). Its
weight sync names the parameters as transformers does, which vLLM's Qwen2-Audio loader does not
map, and it never clears vLLM's encoder cache, so audio encodings computed with old weights are
reused after an update (vllm-project/vllm#44910; the fix was reverted; huggingface/trl#7198).

`AudioVLLMGeneration` changes four things and keeps the rest of TRL's class (sampling
parameters, sleep-mode handling, log-prob extraction, ZeRO-3 gathering):

- `generate`: each processor-expanded audio run is collapsed to one placeholder and the row's
  clip is attached to its request (`local.core.vllm_requests.audio_request`: audio per request,
  Omni features padded to the clip, as the HF path); `clips` are set by the trainer for each
  rollout, row-aligned with TRL's repeated prompts, and a count mismatch stops the rollout.
- `sync_weights` (`sync_engine_weights`): the policy's parameters under the checkpoint names
  vLLM loads (`local.core.vllm_export.vllm_weight_name`; Qwen3-Omni's fused experts as they are),
  through the model runner's `reload_weights(..., is_checkpoint_format=True)` (on CPU
  `load_weights` writes into vLLM's prepacked weights and fails; CPU MoE layers are repacked
  after it, `repack_cpu_moe_experts`), then the encoder cache and the prefix cache are reset; the
  first sync checks that every weight of the served checkpoint was sent (vLLM only warns).
- with PEFT, the weights synced are merged out of place (`local.train.lora_merge.merged_state`:
  W + s*B@A in fp32, rounded once) instead of TRL's in-place `merge_adapter()`/`unmerge_adapter()`,
  whose bf16 roundings drift the frozen base, the KL reference (huggingface/trl#6688); same
  names, same ZeRO-3 gathering. A LoRA that is not plain LoRA on Linear layers (DoRA, ...) and
  PEFT under FSDP are refused in one line when the trainer is built.
- the engine: built by TRL, but on the vLLM-loadable folder (`served_model`: a thinker-only Omni
  checkpoint exported by `local.core.vllm_export.export_for_vllm`), one clip per prompt, every
  sampling setting from TRL (`generation_config="vllm"`), and eager on CPU.

The recipe's HF-only generation settings are translated for vLLM's `SamplingParams`:
`suppress_tokens` (the placeholder ids) become `logit_bias` and the stop ids of evaluation become
`stop_token_ids`. Only `vllm_mode: colocate` with `vllm_tensor_parallel_size: 1` is supported:
TRL's server mode carries image features only, and with tensor parallelism TRL gathers the
prompts of a group but not their clips.

Size: about 330 lines: the engine's settings, the audio requests and the weight sync (with the
CPU MoE repack that vLLM 0.32 needs after it) of one TRL class, whose overrides share its state.

Example (what `AudioGRPOTrainer` does when `use_vllm` is true):
    >>> with audio_vllm_generation(family, served_model="exp/run/vllm_model"):  # doctest: +SKIP
    ...     GRPOTrainer.__init__(trainer, ...)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trl.generation.vllm_generation as trl_vllm
import trl.trainer.grpo_trainer as trl_grpo
from accelerate import PartialState
from accelerate.utils import is_peft_model
from trl.distributed import DistributedBackend
from trl.generation.vllm_generation import VLLMGeneration

from local.core.models import ModelFamily
from local.core.special_tokens import audio_token_id, stop_token_ids
from local.core.vllm_export import (
    checkpoint_weight_names,
    export_for_vllm,
    fused_expert_name,
    vllm_weight_name,
)
from local.core.vllm_requests import audio_request, collapse_audio_runs, mm_limits, suppressing_bias
from local.train.lora_merge import check_mergeable, merged_state

logger = logging.getLogger(__name__)


def check_vllm_settings(args: Any) -> None:
    """A clear error for vLLM settings whose rollouts could not carry the audio."""
    if args.vllm_mode != "colocate":
        raise ValueError(f"vllm_mode: {args.vllm_mode!r} is not supported with audio: TRL's server "
                         "mode sends image features only, so the clips would not reach vLLM. Use "
                         "vllm_mode: colocate (one engine per GPU, on every node).")
    if args.vllm_tensor_parallel_size != 1:
        raise ValueError("vllm_tensor_parallel_size must be 1 for audio rollouts: TRL gathers the "
                         "prompts of a tensor-parallel group but not their clips. Each GPU holds "
                         "its own engine (a 7B model fits one GPU in bf16).")


def served_model(model: Any, output_dir: str | Path) -> str:
    """What the rollout engine loads for `model`: its folder, or the vLLM export of it under
    `<output_dir>/vllm_model` (thinker-only Omni; written once per filesystem), or the hub
    id as given (hub checkpoints load in vLLM as they are). vLLM's weights are replaced by the
    policy's at the first sync, before any rollout: the folder gives the architecture."""
    source = str(getattr(model, "name_or_path", "") or "")
    if not source:
        raise ValueError("use_vllm: the model has no name_or_path to build the vLLM engine from; "
                         "load it with local.core.models.load_model_and_processor")
    if not Path(source).is_dir():
        return source
    state, dest = PartialState(), Path(output_dir) / "vllm_model"
    # The global main process writes first; then a node whose output_dir is not shared writes
    # its own (its first rank first), and where it is shared every other rank finds it done.
    # (Every node's first rank writing at once would share one staging folder on a shared
    # filesystem: local.util.fsio.building clears it.)
    with state.main_process_first():
        if state.is_main_process:
            export_for_vllm(source, dest)
    with state.local_main_process_first():
        return str(export_for_vllm(source, dest))


def check_every_weight_sent(sent: Sequence[str], served: str) -> None:
    """Raise if a weight of the served checkpoint was not synced. vLLM's `reload_weights` only
    logs a warning for parameters it did not receive (vllm/model_executor/model_loader/reload),
    which would leave them at their initial values (or freed memory after sleep level 2). A fused
    expert tensor sent (`...mlp.experts.gate_up_proj`) covers the checkpoint's per-expert weights
    (`local.core.vllm_export.fused_expert_name`)."""
    folder = Path(served)
    if not folder.is_dir():  # a hub id: its names are the transformers layout the map covers
        return
    sent_names = set(sent)
    missing = sorted(name for name in checkpoint_weight_names(folder)
                     if name not in sent_names and fused_expert_name(name) not in sent_names)
    if missing:
        raise RuntimeError(
            f"weight sync to vLLM sent {len(sent)} tensors but not {len(missing)} of "
            f"{folder}'s, e.g. {missing[:3]}: their names are not mapped to vLLM's "
            "(local.core.vllm_export.WEIGHT_NAME_MAPS); rollouts would use stale weights.")


def repack_cpu_moe_experts(worker: Any) -> int:
    """Run the CPU MoE kernel's weight prepacking again on every mixture-of-experts layer of the
    worker's model (after a `reload_weights`); the number of layers repacked.

    vLLM 0.32 skips it on a weight update: UnquantizedFusedMoEMethod._setup_kernel
    (vllm/model_executor/layers/fused_moe/unquantized_fused_moe_method.py) calls
    `moe_kernel.fused_experts.process_weights_after_loading(layer)` only when the kernel is first
    built, and for CPUUnquantizedExperts (fused_moe/experts/cpu_moe.py) that is where w13/w2 are
    prepacked (`cpu_prepack_moe_weight`). After a reload the layer holds the plain weights where
    the kernel reads packed ones: the tiny Qwen3-Omni's log-probs moved by 0.01 on a reload of
    unchanged weights and by 0.49 from the synced policy's with perturbed experts
    (tests/test_vllm_qwen3_omni.py). GPU kernels shuffle weights in
    `convert_to_unquantized_kernel_format`, which does run on updates; only the CPU experts are
    repacked here. Every expert weight must have been reloaded (the sync sends all of them, and
    the first sync checks it): a layer that kept its packed weights would be packed twice."""
    from vllm.model_executor.layers.fused_moe.experts.cpu_moe import CPUUnquantizedExperts

    repacked = 0
    for module in worker.model_runner.get_model().modules():
        kernel = getattr(getattr(module, "quant_method", None), "moe_kernel", None)
        experts = getattr(kernel, "fused_experts", None)
        if isinstance(experts, CPUUnquantizedExperts):
            experts.process_weights_after_loading(module)
            repacked += 1
    return repacked


def sync_engine_weights(llm: Any, family: ModelFamily,
                        named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Load the policy's `named` parameters (transformers names) into the engine `llm` under the
    checkpoint names vLLM loads, through the model runner's `reload_weights(...,
    is_checkpoint_format=True)`, then clear its encoder and prefix caches; the names sent.

    On CPU `load_weights` would write into vLLM's prepacked weights and fail, hence the reload;
    CPU MoE layers are then repacked (`repack_cpu_moe_experts`). The model runner clears its own
    encoder outputs on reload, but the scheduler's encoder cache manager still lists them
    ("Encoder cache miss" on CPU) until `reset_encoder_cache`; the prefix cache holds KV computed
    with the old weights."""
    sent: list[str] = []

    def renamed() -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in named:
            sent.append(vllm_weight_name(family.name, name))
            yield sent[-1], tensor

    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": renamed(),
                                                 "is_checkpoint_format": True})
    if family.router is not None:  # a mixture of experts (on GPU nothing is repacked)
        llm.collective_rpc(repack_cpu_moe_experts)
    llm.llm_engine.reset_encoder_cache()
    llm.reset_prefix_cache()
    return sent


def vllm_generation_kwargs(generation_kwargs: dict[str, Any] | None,
                           tokenizer: Any) -> dict[str, Any]:
    """The trainer's `generation_kwargs` for vLLM's `SamplingParams`: `suppress_tokens` as a
    `logit_bias` and the recipe's stop ids as `stop_token_ids` (HF reads them from eos ids)."""
    extra = dict(generation_kwargs or {})
    suppress = extra.pop("suppress_tokens", None) or []
    bias = {**suppressing_bias(suppress), **(extra.get("logit_bias") or {})}
    if bias:
        extra["logit_bias"] = bias
    stops = set(extra.get("stop_token_ids") or []) | set(stop_token_ids(tokenizer))
    extra["stop_token_ids"] = sorted(stops)
    return extra


# vLLM's context per request, when vllm_max_model_length is unset: the longest prompt a row can
# have plus the completion. The Qwen2-Audio and Qwen2.5-Omni encoders make 25 audio tokens a
# second (16 kHz -> 100 mel frames a second, a stride-2 convolution, then 2x pooling:
# tests/test_vllm_rollout_settings.py counts them through the real processors), Qwen3-Omni's 13
# (three stride-2 convolutions per 100-frame chunk), for which 25 is a bound; clips are cut to
# the family's window; the chat template,
# question and choices of AVQA/MMAU-style rows stay well under the text budget. TRL's default
# (None) is the model's whole context (32k): vLLM then needs a KV cache that holds 32k tokens to
# start, which the colocated share (0.3 of the card) may not give.
AUDIO_TOKENS_PER_SECOND = 25
PROMPT_TEXT_TOKENS = 512


def default_max_model_length(max_audio_seconds: float, max_completion_length: int) -> int:
    """Prompt (the family's whole audio window, 2 audio markers, the text budget) + completion;
    the planner (local.train.plan_activations) uses the same."""
    audio = math.ceil(max_audio_seconds * AUDIO_TOKENS_PER_SECOND) + 2
    return audio + PROMPT_TEXT_TOKENS + max_completion_length


class AudioVLLMGeneration(VLLMGeneration):
    """TRL's colocated vLLM generation with each row's clip sent to vLLM (see module docstring)."""

    def __init__(self, *args: Any, family: ModelFamily, served_model: str, **kwargs: Any) -> None:
        self.family = family
        self.served_model = served_model
        self.clips: Sequence[np.ndarray] | None = None  # the rollout's, one per prompt row
        self.syncs = 0
        processor = kwargs["processing_class"]
        self.audio_token_id = audio_token_id(processor.tokenizer, family)
        kwargs["generation_kwargs"] = vllm_generation_kwargs(kwargs.get("generation_kwargs"),
                                                             processor.tokenizer)
        if kwargs.get("mode", "colocate") != "colocate":
            raise ValueError("AudioVLLMGeneration runs in colocate mode only")
        if is_peft_model(kwargs["model"]):  # before the engine: what the sync could not merge
            if DistributedBackend(kwargs["accelerator"]).is_fsdp:
                raise ValueError("use_vllm with PEFT under FSDP is not supported: the recipe "
                                 "syncs LoRA weights under DeepSpeed (ZeRO-1/3) or one process")
            check_mergeable(kwargs["model"])
        if kwargs.get("max_model_length") is None:
            kwargs["max_model_length"] = default_max_model_length(
                family.max_audio_seconds, kwargs.get("max_completion_length", 16))
            logger.info("vLLM max_model_len %d: the %s audio window, the prompt text and %d new "
                        "tokens (vllm_max_model_length sets another)", kwargs["max_model_length"],
                        family.name, kwargs.get("max_completion_length", 16))
        super().__init__(*args, **kwargs)

    # -- engine -------------------------------------------------------------------------------
    def _init_vllm(self) -> None:
        """TRL's colocated engine, on `served_model`, one clip per prompt, eager on CPU."""
        build = trl_vllm.LLM

        def llm(**kwargs: Any) -> Any:
            kwargs.update(model=self.served_model, limit_mm_per_prompt=mm_limits(self.family),
                          generation_config="vllm")
            if not torch.cuda.is_available():
                kwargs["enforce_eager"] = True  # CPU: compiling costs minutes
            return build(**kwargs)

        trl_vllm.LLM = llm  # TRL builds its engine as `LLM(model=..., ...)` in _init_vllm
        try:
            super()._init_vllm()
        finally:
            trl_vllm.LLM = build

    # -- rollouts -----------------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], images: Any, num_generations: int,
                 profiler: Any = None) -> tuple:
        clips = self.clips
        if clips is None or len(clips) != len(prompts):
            raise RuntimeError(f"vLLM rollout of {len(prompts)} prompts but "
                               f"{'no' if clips is None else len(clips)} clips were handed over; "
                               "AudioGRPOTrainer sets them for each rollout")
        if images is not None and any(image is not None for image in images):
            raise ValueError("audio rollouts with vLLM take no images")
        collapsed = [collapse_audio_runs(ids, self.audio_token_id) for ids in prompts]
        with self._audio_attached(clips):
            return super().generate(collapsed, None, num_generations, profiler)

    @contextlib.contextmanager
    def _audio_attached(self, clips: Sequence[np.ndarray]) -> Iterator[None]:
        """While TRL generates, each of its requests gets its row's clip (TRL builds the requests
        as `{"prompt_token_ids": ids}` in row order and passes them to `self.llm.generate`)."""
        engine_generate = self.llm.generate
        processor = self.processing_class

        @functools.wraps(engine_generate)
        def generate(requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            if len(requests) != len(clips):
                raise RuntimeError(f"{len(requests)} vLLM requests for {len(clips)} clips")
            with_audio = [audio_request(request["prompt_token_ids"], clip, processor, self.family)
                          for request, clip in zip(requests, clips, strict=True)]
            return engine_generate(with_audio, *args, **kwargs)

        self.llm.generate = generate
        try:
            yield
        finally:
            del self.llm.generate  # the engine's own method again

    # -- weight sync --------------------------------------------------------------------------
    def _iter_named_params(self) -> Iterator[tuple[str, torch.Tensor]]:
        """TRL's, except for a PEFT model: the weights with the adapters merged out of place
        (`merged_state`), never written into the base; gathered as TRL does under ZeRO-3 (the
        whole model at once, a collective every rank takes part in)."""
        model = self.model
        if not is_peft_model(model):
            yield from super()._iter_named_params()
            return
        with self._dist.gather_params(list(model.parameters())):
            for name, tensor in merged_state(model):
                yield self._fix_param_name_to_vllm(name), tensor

    def sync_weights(self) -> None:
        """The policy's current weights into the engine, then its encoder and prefix caches
        cleared (audio encodings and prompt KV computed with the old weights)."""
        if self.enable_sleep_mode:  # as TRL: map the weights' memory before writing into it
            trl_vllm.empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._llm_weights_sleeping = False
        sent = sync_engine_weights(self.llm, self.family, self._iter_named_params())
        if self.syncs == 0:
            check_every_weight_sent(sent, self.served_model)
        self.syncs += 1


@contextlib.contextmanager
def audio_vllm_generation(family: ModelFamily, served_model: str) -> Iterator[None]:
    """While TRL's GRPOTrainer is built, its `VLLMGeneration` is `AudioVLLMGeneration`."""
    stock = trl_grpo.VLLMGeneration
    trl_grpo.VLLMGeneration = functools.partial(AudioVLLMGeneration, family=family,
                                                served_model=served_model)
    try:
        yield
    finally:
        trl_grpo.VLLMGeneration = stock
