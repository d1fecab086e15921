"""AudioGRPOTrainer: the narrowest `trl.GRPOTrainer` subclass that makes the audio reach the model.

TRL 1.16's GRPOTrainer knows images, not audio. Given an audio processor it would tokenize the
prompts and generate with the features, then compute the policy, old-policy and reference
log-probs **without** them: the loss trains a text-only model and nothing errors. This subclass
overrides four TRL internals, each as thin as possible:

- `_generate_and_score_completions`: decode each distinct clip once (`local.core.audio`; clips are
  keyed by the row's audio, not its id), build the batch once (`local.core.collate`: Omni padded to
  the longest clip), keep it for the passes below, and return `input_features` /
  `feature_attention_mask` row-aligned in the rollout batch, which TRL shuffles and splits
  together with the other per-row tensors.
- `_tokenize_prompts`: hand TRL that batch's prompt ids and audio features (instead of letting
  the processor fetch audio by itself), so generation sees the audio.
- `_compute_loss`: make the loss's policy forward see its rows' audio.
- `_get_per_token_logps_and_entropies`: feed each forward chunk exactly its own rows' features
  (policy, old policy, reference), check each row's audio placeholders against its features
  (`local.train.audio_rows.PlaceholderCheck`: an error names the row) and that every row was
  fed once. A loss batch or log-prob pass without audio stops (`local.train.guards`) instead of
  running text-only.

Clips at rollout time: a clip longer than the window is cut, with one warning per clip naming
it; a clip that cannot be used (undecodable, NaN/inf samples) is replaced, in all its G rows, by
the same other training row with a warning (`bad_records: skip`), or stops every rank with one
`UnusableClipError` (`bad_records: raise`; train.py exits with its message). The rollout's counts
are logged as `audio/truncated_clips` and `audio/replaced_rows`.

Qwen2.5-Omni's vision tower, which never runs on audio, is frozen (and kept free of LoRA
adapters): `local.train.guards`.

Mixture-of-experts routers (Qwen3-Omni's `mlp.gate`) are frozen after TRL/PEFT wrapped the model
(`freeze_router`, default on; `local.train.guards` says why). TRL 1.16 adds the router's
load-balancing loss to GRPO's loss for any model whose text config has `output_router_logits`
(grpo_trainer.py, GRPOTrainer.__init__ "MoE load-balancing auxiliary loss", and `_compute_loss`:
`loss + router_aux_loss_coef * aux_loss`), at the config's coefficient unless
`router_aux_loss_coef` is given. With the router frozen the recipe turns it off (its only
gradient would reach the layers below the routers, a term the reward does not ask for), unless
`router_aux_loss_coef` is given; a router that trains without it is warned about.

`freeze_audio_encoder=True` freezes the encoder after TRL/PEFT wrapped the model, and keeps LoRA
adapters out of it (PEFT would make them trainable again). With a frozen encoder (or forced with
`cache_audio_embeddings`), `_generate_and_score_completions` and `_compute_loss` also attach a
`local.train.audio_cache.AudioEncoderCache`: each distinct clip of a rollout goes through the
encoder once, and its output serves all G completions, generation and every log-prob pass (the
reference model's tower shares the store while its weights equal the policy's, re-checked at
each rollout).
The cache is emptied at each rollout; `audio_cache_stats` counts encoded clips and reused rows.

With `use_vllm: true` (colocate), rollouts come from a vLLM engine in each process
(`local.train.vllm_rollouts.AudioVLLMGeneration`, swapped in for TRL's `VLLMGeneration` while
TRL builds it): each rollout hands it the same row-aligned clips, vLLM gets the unexpanded
placeholders with the audio per request, and the policy's weights are synced before the first
rollout after each optimizer step (encoder and prefix caches reset). The batch above still feeds
every log-prob pass, and TRL's importance-sampling correction compares them with vLLM's.

Generation stops at both `local.core.special_tokens.STOP_TOKENS` (as evaluation), whatever the
checkpoint's generation_config says. Placeholder tokens (`<|AUDIO|>`, `<|IMAGE|>`, ...) are
suppressed: a sampled one would crash the next forward. `forward_audio_in_loss=False` reproduces
stock TRL (audio at generation only) so tests can show the difference.

Example:
    >>> trainer = AudioGRPOTrainer(model=loaded.model, processing_class=loaded.processor,
    ...     family=loaded.family, reward_funcs=[...], args=grpo_config,
    ...     train_dataset=dataset)                                          # doctest: +SKIP
    >>> trainer.train()                                                     # doctest: +SKIP

Size: over 300 lines on purpose. It is one TRL subclass: each override is thin, but the class also
carries the rollout's audio state across TRL's calls (the rollout batch, the per-chunk feeder,
the encoder cache and its re-checks, replaced rows, checkpoint loading); what stands alone lives
in `local.train.audio_cache`, `local.train.audio_rows`, `local.train.rollout_clips` and
`local.train.vllm_rollouts`.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from trl import GRPOTrainer

from local.core.audio import AudioError, DecodedAudio
from local.core.collate import AUDIO_KEYS, encode_batch, load_clip, render_prompt
from local.core.last_logits import last_position_logits
from local.core.models import ModelFamily
from local.core.prompts import clean_messages
from local.core.records import RecordError, check_errors
from local.core.special_tokens import (
    STOP_TOKENS,
    audio_token_id,
    placeholder_token_ids,
    stop_token_ids,
)
from local.train.audio_cache import (
    AudioEncoderCache,
    audio_output_lengths,
    encoder_is_frozen,
    exclude_audio_tower,
    find_audio_tower,
    freeze_audio_tower,
    tuner_layers,
)
from local.train.audio_rows import AudioRowFeeder, PlaceholderCheck, check_audio_processor
from local.train.checkpoints import load_full_weights, restores_full_weights
from local.train.guards import (
    ROW_NAMES,
    batch_audio,
    exclude_vision_tower,
    freeze_router,
    freeze_vision_tower,
    require_audio,
    router_trains,
)
from local.train.rollout_clips import audio_key, audio_source, replacement_indices, row_name
from local.train.vllm_rollouts import audio_vllm_generation, check_vllm_settings, served_model

logger = logging.getLogger(__name__)

class UnusableClipError(RecordError):
    """A training clip that fails at rollout time with bad_records: raise (train.py exits)."""


class AudioGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose rollouts and every log-prob pass carry each row's own audio."""

    def __init__(
        self,
        *args: Any,
        family: ModelFamily,
        max_audio_duration_in_seconds: float | None = None,
        bad_records: str | None = None,
        forward_audio_in_loss: bool = True,
        cache_audio_embeddings: bool | None = None,
        freeze_audio_encoder: bool = False,
        freeze_router: bool | None = None,
        **kwargs: Any,
    ) -> None:
        grpo_args = kwargs.get("args")
        self.family = family
        # None: the value of AudioGRPOConfig (`args`), where it is one.
        self.max_audio_duration_in_seconds = (
            getattr(grpo_args, "max_audio_duration_in_seconds", None)
            if max_audio_duration_in_seconds is None else max_audio_duration_in_seconds)
        self.bad_records = bad_records or getattr(grpo_args, "bad_records", "raise")
        check_errors(self.bad_records, "bad_records")
        self.forward_audio_in_loss = forward_audio_in_loss
        self._rollout_batch: dict[str, torch.Tensor] | None = None
        self._logp_audio: dict[str, torch.Tensor] | None = None
        self._logp_names: list[str] | None = None
        self.audio_stats: Counter[str] = Counter()  # over the run: clips, truncated, replaced, ...
        self._rollout_audio: Counter[str] = Counter()  # the current rollout's counts
        self._truncation_warned: set[str] = set()
        self._bad_clips: dict[str, str] = {}  # clip key -> why it cannot be used

        model = kwargs.get("model", args[0] if args else None)
        processor = kwargs["processing_class"]
        check_audio_processor(processor)
        use_vllm = grpo_args is not None and getattr(grpo_args, "use_vllm", False)
        if use_vllm:
            check_vllm_settings(grpo_args)
            if kwargs.get("rollout_func") is not None:
                raise ValueError("use_vllm with a rollout_func: TRL then generates without "
                                 "AudioVLLMGeneration, so the clips would not reach vLLM.")
        if freeze_audio_encoder and kwargs.get("peft_config") is not None:
            exclude_audio_tower(kwargs["peft_config"])
        if kwargs.get("peft_config") is not None:
            exclude_vision_tower(kwargs["peft_config"], model)
        stop_ids = stop_token_ids(processor.tokenizer)
        # TRL ends a completion at every eos id of `model.generation_config` plus the tokenizer's
        # eos (trl/trainer/grpo_trainer.py, GRPOTrainer.__init__: "Every eos id the model
        # declares ..."); the real Qwen2.5-Omni generation_config declares none. Declare the
        # stop tokens evaluation uses, so TRL stops generation and masks the loss at both.
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = stop_ids
        if grpo_args is not None:
            suppress = placeholder_token_ids(processor.tokenizer, family)
            extra = dict(grpo_args.generation_kwargs or {})
            extra["suppress_tokens"] = sorted(set(extra.get("suppress_tokens", [])) | set(suppress))
            grpo_args.generation_kwargs = extra
        # TRL reads `config.image_token_id` for any processor; Qwen2-Audio has none. Lend it the
        # audio token id for TRL's set-up (our suppress list replaces TRL's) and take it back.
        config = getattr(model, "config", None)
        lent = config is not None and not hasattr(config, "image_token_id")
        if lent:
            config.image_token_id = audio_token_id(processor.tokenizer, family)
        rollouts = (audio_vllm_generation(family, served_model(model, grpo_args.output_dir))
                    if use_vllm else contextlib.nullcontext())
        try:
            with rollouts:
                super().__init__(*args, **kwargs)
        finally:
            if lent:
                del config.image_token_id
        if not set(stop_ids) <= set(self.eos_token_ids):
            raise RuntimeError(f"rollouts would not stop at {STOP_TOKENS} (TRL's eos ids: "
                               f"{self.eos_token_ids}); pass the model as a loaded object.")
        if freeze_audio_encoder:  # the model as trained, after TRL/PEFT wrapped it
            self._freeze_audio_encoder()
        frozen = freeze_vision_tower(self.model)
        if frozen:
            logger.info("vision tower frozen: %d parameters (never run on audio)", frozen)
        self._set_up_router(getattr(grpo_args, "freeze_router", True)
                            if freeze_router is None else freeze_router, grpo_args)
        self._audio_cache = self._build_audio_cache(cache_audio_embeddings)
        self._placeholders = PlaceholderCheck(
            audio_token_id(processor.tokenizer, family),
            audio_output_lengths(find_audio_tower(self.accelerator.unwrap_model(self.model))))

    def _set_up_router(self, freeze: bool, grpo_args: Any) -> None:
        """Freeze the MoE routers (`freeze`), and keep TRL's load-balancing loss only while a
        router trains (or where `router_aux_loss_coef` was given)."""
        if self.family.router is None:
            return
        if freeze:
            logger.info("router frozen (%s): %d parameters", self.family.router,
                        freeze_router(self.model, self.family))
        given = getattr(grpo_args, "router_aux_loss_coef", None) is not None
        if not router_trains(self.model, self.family):
            if self.aux_loss_enabled and not given:  # TRL read the config's coefficient
                self.aux_loss_enabled, self.router_aux_loss_coef = False, 0.0
                logger.info("router load-balancing loss: off (the router is frozen; "
                            "router_aux_loss_coef turns it on)")
        elif not self.aux_loss_enabled:
            logger.warning("the router trains without its load-balancing loss "
                           "(router_aux_loss_coef 0): experts may collapse; give "
                           "router_aux_loss_coef > 0 or freeze_router: true")
        else:
            logger.info("router trains with the load-balancing loss (coefficient %g)",
                        self.router_aux_loss_coef)

    def _freeze_audio_encoder(self) -> None:
        tower = find_audio_tower(self.model)
        if tuner_layers(tower):
            raise ValueError("freeze_audio_encoder: the audio encoder holds PEFT adapters, which "
                             "PEFT makes trainable again whenever adapters are switched on; pass "
                             "peft_config to the trainer (the encoder is then excluded) or "
                             "exclude audio_tower from the adapter's modules.")
        logger.info("audio encoder frozen: %d parameters", freeze_audio_tower(self.model))

    def _build_audio_cache(self, wanted: bool | None) -> AudioEncoderCache | None:
        """An encoder-output cache when the encoder is frozen (None = decide from requires_grad)."""
        policy = self.accelerator.unwrap_model(self.model)
        frozen = encoder_is_frozen(policy)
        if wanted and not frozen:
            raise ValueError("cache_audio_embeddings=True needs a frozen audio encoder "
                             "(freeze_audio_encoder: true); its output changes as it trains")
        if not (frozen if wanted is None else wanted):
            logger.info("frozen-encoder cache: off (%s)", "the audio encoder trains" if not frozen
                        else "cache_audio_embeddings false")
            return None
        towers = [find_audio_tower(policy)]
        if self.ref_model is not None:
            towers.append(find_audio_tower(self.accelerator.unwrap_model(self.ref_model)))
        cache = AudioEncoderCache(towers)
        logger.info("frozen-encoder cache: on (one encoder pass per distinct clip per rollout; "
                    "reference tower %s)", "shares the store" if cache.shared else
                    "has its own store" if len(towers) > 1 else "is the policy's (PEFT)")
        return cache

    @property
    def audio_cache_stats(self) -> dict[str, int]:
        """Rows seen, clips encoded, rows reused and encoder calls of the cache (empty if off)."""
        return dict(self._audio_cache.stats) if self._audio_cache is not None else {}

    def _encoder_cache(self) -> contextlib.AbstractContextManager[Any]:
        cache = self._audio_cache
        return cache.attach() if cache is not None else contextlib.nullcontext()

    # -- rollouts ---------------------------------------------------------------------------
    def _decode_rows(self, inputs: list[dict[str, Any]]) -> list[np.ndarray]:
        """Each row's clip, decoded once per distinct clip (G rows share one prompt); clips are
        told apart by their audio, not the row id. AudioError names a row whose clip fails."""
        decoded: dict[str, np.ndarray] = {}
        truncated = 0
        clips = []
        for row in inputs:
            key = audio_key(row)
            if key not in decoded:
                clip = load_clip(audio_source(row), family=self.family,
                                 sampling_rate=row.get("sampling_rate"),
                                 max_duration_s=self.max_audio_duration_in_seconds,
                                 name=row_name(row))
                if clip.truncated:
                    truncated += 1
                    self._warn_truncated(key, row, clip)
                decoded[key] = clip.array
            clips.append(decoded[key])
        self._rollout_audio.update(clips=len(decoded), truncated=truncated)  # counted on success
        return clips

    def _warn_truncated(self, key: str, row: dict[str, Any], clip: DecodedAudio) -> None:
        if key not in self._truncation_warned:
            self._truncation_warned.add(key)
            logger.warning("%s: %.1f s clip cut to its first %.1f s (the model's audio window or "
                           "max_audio_duration_in_seconds); warned once per clip.", row_name(row),
                           clip.original_duration_s, clip.duration_s)

    def _rollout_rows(self, inputs: list[dict[str, Any]]
                      ) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
        """The rollout's rows and clips after the bad_records policy: rows whose clip cannot be
        used are replaced (skip) or stop every rank together (raise)."""
        try:
            clips, error = self._decode_rows(inputs), None
        except AudioError as err:
            clips, error = [], err
        if self.bad_records == "raise":
            self._stop_if_any_rank_failed(error)
            return inputs, clips
        return (inputs, clips) if error is None else self._replace_unusable(inputs)

    def _stop_if_any_rank_failed(self, error: AudioError | None) -> None:
        """Raise UnusableClipError on every rank if any rank's rollout has an unusable clip (a
        lone rank stopping would leave the others waiting in a collective)."""
        flag = torch.tensor([int(error is not None)], device=self.accelerator.device)
        if not int(self.accelerator.reduce(flag, reduction="sum").item()):
            return
        if error is None:
            raise UnusableClipError("another rank's rollout has a clip that cannot be used (its "
                                    "message names it); stopping with it (bad_records: raise).")
        raise UnusableClipError(f"{error} Training stops (bad_records: raise); set bad_records: "
                                "skip to replace such rows at rollout time.") from error

    def _replace_unusable(self, inputs: list[dict[str, Any]]
                          ) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
        """Every row whose clip cannot be used, replaced by the same other training row."""
        chosen: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
        rows, clips = [], []
        for row in inputs:
            key = audio_key(row)
            if key not in chosen:
                chosen[key] = self._usable_row(row, key)
            used, clip = chosen[key]
            self._rollout_audio["replaced_rows"] += used is not row
            rows.append(used)
            clips.append(clip)
        return rows, clips

    def _usable_row(self, row: dict[str, Any], key: str) -> tuple[dict[str, Any], np.ndarray]:
        clip = self._try_decode(row, key)
        if clip is not None:
            return row, clip
        dataset = self.train_dataset
        for index in replacement_indices(key, len(dataset)):
            candidate = dataset[index]
            clip = self._try_decode(candidate, audio_key(candidate))
            if clip is not None:
                return candidate, clip
        raise UnusableClipError(f"{row_name(row)}: its clip cannot be used and no training row "
                                "tried in its place has a usable clip; check the data with "
                                "`python -m local.validate`.")

    def _try_decode(self, row: dict[str, Any], key: str) -> np.ndarray | None:
        """The row's clip, or None (warned once per clip, counted) when it cannot be used."""
        if key in self._bad_clips:
            return None
        try:
            return self._decode_rows([row])[0]
        except AudioError as err:
            self._bad_clips[key] = str(err)
            self.audio_stats["bad_clips"] += 1
            logger.warning("%s This row is replaced by another training row whenever it is drawn "
                           "(bad_records: skip).", err)
            return None

    def _log_rollout_audio(self) -> None:
        """The rollout's counts as metrics (TRL averages them over the logging interval)."""
        mode = "train" if self.model.training else "eval"
        for metric, count in (("truncated_clips", "truncated"), ("replaced_rows", "replaced_rows")):
            self._metrics[mode][f"audio/{metric}"].append(self._rollout_audio[count])
        self.audio_stats.update(self._rollout_audio)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._rollout_audio.clear()
        inputs, clips = self._rollout_rows(inputs)
        texts = [render_prompt(self.processing_class, clean_messages(row["prompt"]))
                 for row in inputs]
        batch = encode_batch(self.processing_class, self.family, texts, clips)
        device = self.accelerator.device
        self._rollout_batch = {k: v.to(device) for k, v in batch.items()}
        audio = {k: self._rollout_batch[k] for k in AUDIO_KEYS}
        names = [row_name(row) for row in inputs]
        if self._audio_cache is not None:
            self._audio_cache.clear()  # a new rollout: one encoder pass per distinct clip
        if self.use_vllm:
            self.vllm_generation.clips = clips  # row-aligned with TRL's repeated prompts
        try:  # old-policy and reference passes inside
            with self._audio_for_logps(audio, names), self._encoder_cache():
                output = super()._generate_and_score_completions(inputs)
        finally:
            self._rollout_batch = None
            if self.use_vllm:
                self.vllm_generation.clips = None
        output.update(audio, **{ROW_NAMES: names})  # row-aligned: TRL shuffles and splits them
        self._log_rollout_audio()
        return output

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        """TRL's generation; with HF `generate`, the prefill's LM head sees only the last
        position (`local.core.last_logits`: neither Qwen forward takes logits_to_keep)."""
        if self.use_vllm:
            return super()._generate_single_turn(*args, **kwargs)
        with last_position_logits(self.accelerator.unwrap_model(self.model)):
            return super()._generate_single_turn(*args, **kwargs)

    def _tokenize_prompts(self, prompts: list[Any]) -> tuple[list[list[int]], None, dict]:
        batch = self._rollout_batch
        if batch is None or batch["input_ids"].shape[0] != len(prompts):
            raise RuntimeError("_tokenize_prompts called outside a rollout of AudioGRPOTrainer")
        rows = zip(batch["input_ids"], batch["attention_mask"], strict=True)
        prompt_ids = [ids[mask.bool()].tolist() for ids, mask in rows]
        return prompt_ids, None, {k: batch[k] for k in AUDIO_KEYS}

    # -- log-prob passes ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _audio_for_logps(self, audio: dict[str, torch.Tensor] | None,
                         names: list[str] | None = None) -> Iterator[None]:
        """The audio (and row names, for errors) of the log-prob passes run inside."""
        previous = self._logp_audio, self._logp_names
        self._logp_audio, self._logp_names = audio, names
        try:
            yield
        finally:
            self._logp_audio, self._logp_names = previous

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        audio = batch_audio(inputs, expected=self.forward_audio_in_loss)
        with self._audio_for_logps(audio, inputs.get(ROW_NAMES)), self._encoder_cache():
            return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor,
                                           *args: Any, **kwargs: Any) -> Any:
        if not self.forward_audio_in_loss:  # stock TRL, for the tests that compare with it
            return super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)
        audio = require_audio(self._logp_audio)
        if audio["input_features"].shape[0] != input_ids.shape[0]:
            raise RuntimeError(f"{input_ids.shape[0]} sequences but audio for "
                               f"{audio['input_features'].shape[0]} rows")
        feeder = AudioRowFeeder(model, audio, self._feature_dtype(), self._placeholders,
                                self._logp_names)
        result = super()._get_per_token_logps_and_entropies(feeder, input_ids, *args, **kwargs)
        feeder.check_consumed()
        return result

    def _feature_dtype(self) -> torch.dtype | None:
        model = self.accelerator.unwrap_model(self.model)
        dtype = getattr(model, "dtype", None)
        return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else None

    # -- resume -----------------------------------------------------------------------------
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        """Resume with every weight of the checkpoint, or fail naming what does not match.

        transformers 5.24 `Trainer._load_from_checkpoint` (trainer.py, line 3703) loads
        model.safetensors with a raw `load_state_dict(strict=False)`: the hub layout that
        save_pretrained writes matches none of the loaded model's names, and the run went on
        from its initial weights with a warning. PEFT adapters and FSDP keep the Trainer's way.
        """
        target = self.model if model is None else model
        if self.is_fsdp_enabled or not restores_full_weights(target, resume_from_checkpoint):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        count = load_full_weights(target, resume_from_checkpoint)
        logger.info("resumed the weights of %s: %d tensors", resume_from_checkpoint, count)
