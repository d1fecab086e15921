"""Batched generation for evaluation: explicit settings, audio in (or provably out).

`Generator` turns `Record`s into responses with HF `generate`: the chat is built by
`local.core.prompts`, audio decoded by `local.core.audio` (through
`local.core.collate.load_clip`) and batched by
`local.core.collate.encode_batch` (Omni clips padded to the batch's longest clip); its prefill
applies the LM head to the last position only (`local.core.last_logits`). Every generation
setting is passed explicitly, so nothing leaks in from a checkpoint's generation_config (the real
Qwen2-Audio one samples with top_k 20 and repetition penalty 1.1); greedy is the default.

Bad audio: a clip that cannot be decoded gets its error (no answer, scored wrong); a WAV shorter
than its header says (an interrupted copy: `local.core.audio.wav_shortfall`, the definition
validation reports) is answered on the audio it holds, with a warning, and its `Output` carries
the reason (`audio_incomplete`), so results.json and results.md list it.

`--no_audio` ablation (``audio=False``): the user turn keeps only its text part (no audio part, so
no ``<|audio_bos|><|AUDIO|><|audio_eos|>`` in the prompt), the text is tokenized alone and no
``input_features`` / ``feature_attention_mask`` are passed: the model sees no audio at all.

Data parallel (rank, world size, the deterministic shard ``items[rank::world_size]``) lives in
`local.util.dist`.

A generation backend is anything with the `Backend` shape: `generate(records, template, texts)`
returns one `Output` per record, in order, and `truncated` counts the clips cut so far;
`local.eval.runner` builds one per run and drives it over each rank's shard. `RecordGenerator`
is what the backends share (each record's prompt and clip, errors, cut clips); `Generator` (HF)
and `local.eval.vllm_backend.VLLMGenerator` only answer the prompts it has made.

Example:
    >>> from local.eval.generation import GenerationSettings, Generator  # doctest: +SKIP
    >>> settings = GenerationSettings(max_new_tokens=64)
    >>> gen = Generator(load_model_and_processor("ckpt"), settings)            # doctest: +SKIP
    >>> outputs = gen.generate(records, template="default")                     # doctest: +SKIP
    >>> outputs[0].response, outputs[0].error                                  # doctest: +SKIP
    ('<answer>Man</answer>', None)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from local.core.audio import AudioError, DecodedAudio
from local.core.collate import AUDIO_KEYS, encode_batch, load_clip, render_prompt
from local.core.last_logits import last_position_logits
from local.core.models import LoadedModel, ModelFamily
from local.core.prompts import build_messages, build_prompt
from local.core.records import Record
from local.core.special_tokens import (
    STOP_TOKENS,
    audio_token_id,
    placeholder_token_ids,
    token_ids,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    """Generation settings, all explicit. temperature 0 means greedy (the reference recipe's
    evaluation, WeST's GRPO example)."""

    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be at least 1.")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"bad sampling settings {self}: temperature >= 0, 0 < top_p <= 1, "
                             "top_k >= 0 (0 = off).")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty={self.repetition_penalty}: must be > 0.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def generate_kwargs(self, tokenizer: Any) -> dict[str, Any]:
        """Keyword arguments for `model.generate`: every knob set, stop ids and suppressed ids."""
        stop_ids = token_ids(tokenizer, STOP_TOKENS)
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": not self.greedy,
            "repetition_penalty": self.repetition_penalty,
            "eos_token_id": stop_ids,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None
            else stop_ids[-1],
            "suppress_tokens": placeholder_token_ids(tokenizer),
            # None clears a checkpoint's sampling defaults (greedy ignores them anyway).
            "temperature": None if self.greedy else self.temperature,
            "top_p": None if self.greedy else self.top_p,
            "top_k": None if self.greedy or self.top_k == 0 else self.top_k,
        }
        return kwargs


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

@dataclass
class Output:
    """One item's result: the full response, or the error that stopped it (scored wrong)."""

    id: str
    response: str | None
    error: str | None = None
    audio_truncated: bool = False  # cut to max_audio_seconds on purpose
    audio_incomplete: str | None = None  # why the file holds less audio than its header says


class Backend(Protocol):
    """What the evaluation runner needs of a generation backend (HF `Generator`, or another)."""

    truncated: int  # clips cut to max_audio_seconds so far
    max_audio_seconds: float | None

    def generate(self, records: Sequence[Record], template: str = "default",
                 texts: Sequence[str] | None = None) -> list[Output]:
        """One batch: an `Output` per record, in order (`texts`: user texts that replace the
        templated prompt, one per record); an item that cannot be asked gets its error."""
        ...


def text_only_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat of `build_messages` with its audio parts removed (the --no_audio ablation)."""
    return [{**turn, "content": [part for part in turn["content"] if part.get("type") != "audio"]}
            for turn in messages]


class RecordGenerator:
    """What every backend shares: each record's prompt (`local.core.prompts`, rendered by
    `local.core.collate.render_prompt`) and clip (`local.core.collate.load_clip`), a record that
    cannot be asked answered with its error, cut clips counted. A backend answers the prompts
    that are ready (`respond`), so the HF and vLLM backends ask the same questions."""

    def __init__(self, processor: Any, family: ModelFamily, *, audio: bool = True,
                 max_audio_seconds: float | None = 30.0) -> None:
        self.processor, self.family, self.audio = processor, family, audio
        self.tokenizer = processor.tokenizer
        self.max_audio_seconds = max_audio_seconds
        self.truncated = 0  # clips cut to the audio limit so far

    def prompt(self, record: Record, template: str, text: str | None = None) -> str:
        """The rendered chat text for `record` (`text` overrides the templated user text)."""
        messages = build_messages(text if text is not None
                                  else build_prompt(record.question, record.choices, template))
        if not self.audio:
            messages = text_only_messages(messages)
        return render_prompt(self.processor, messages)

    def decode(self, record: Record) -> tuple[DecodedAudio | None, str | None]:
        """(the decoded clip, None) for `record`, or (None, why it cannot be asked)."""
        if record.audio is None:
            return None, "no audio in the record (missing file or empty cell)"
        try:
            return load_clip(record.audio, family=self.family,
                             sampling_rate=record.sampling_rate,
                             max_duration_s=self.max_audio_seconds, name=record.id), None
        except AudioError as err:
            return None, f"unreadable audio: {err}"

    def clip(self, record: Record) -> tuple[Any, str | None, bool]:
        """(waveform, None, cut) for `record`, or (None, why it cannot be asked, False)."""
        clip, error = self.decode(record)
        return (None, error, False) if clip is None else (clip.array, None, clip.truncated)

    def respond(self, prompts: list[str], clips: list[Any] | None) -> list[str]:
        """The decoded answers to `prompts` (each with its clip; `clips` None: no audio)."""
        raise NotImplementedError

    def generate(self, records: Sequence[Record], template: str = "default",
                 texts: Sequence[str] | None = None) -> list[Output]:
        """One batch: responses for `records` in order; items whose audio fails get an error."""
        outputs: dict[str, Output] = {}
        ready: list[tuple[Record, str, Any]] = []
        for i, record in enumerate(records):
            prompt = self.prompt(record, template, texts[i] if texts is not None else None)
            decoded, error = self.decode(record) if self.audio else (None, None)
            if error:
                logger.warning("%s: %s; scored wrong.", record.id, error)
                outputs[record.id] = Output(record.id, None, error)
                continue
            truncated = decoded is not None and decoded.truncated
            incomplete = decoded.incomplete if decoded is not None else None
            if incomplete:  # the same words validation reports (`wav_shortfall`)
                logger.warning("%s (answered on the audio the file holds, scored, and listed "
                               "in results.json/results.md as truncated audio)", incomplete)
            self.truncated += truncated
            outputs[record.id] = Output(record.id, None, None, truncated, incomplete)
            ready.append((record, prompt, decoded.array if decoded is not None else None))
        if ready:
            answers = self.respond([p for _, p, _ in ready],
                                   [c for _, _, c in ready] if self.audio else None)
            for (record, _, _), text in zip(ready, answers, strict=True):
                outputs[record.id].response = text
        return [outputs[r.id] for r in records]


class Generator(RecordGenerator):
    """Answers records with one loaded model (HF `generate`): batched, greedy by default, audio
    optional."""

    def __init__(self, loaded: LoadedModel, settings: GenerationSettings, *,
                 audio: bool = True, max_audio_seconds: float | None = 30.0,
                 device: torch.device | None = None) -> None:
        super().__init__(loaded.processor, loaded.family, audio=audio,
                         max_audio_seconds=max_audio_seconds)
        self.loaded, self.settings = loaded, settings
        self.device = device or torch.device("cpu")
        self.model = loaded.model.to(self.device).eval()
        self.kwargs = settings.generate_kwargs(self.tokenizer)

    def model_inputs(self, texts: Sequence[str], audios: Sequence[Any] | None) -> dict[str, Any]:
        """Tokenized batch (left-padded); audio features only when audio is on."""
        if not self.audio:
            batch = self.tokenizer(list(texts), padding=True, padding_side="left",
                                   return_tensors="pt")
        else:
            batch = encode_batch(self.processor, self.family, texts, audios or [])
        return {k: v.to(self.device) for k, v in batch.items()}

    def respond(self, prompts: list[str], clips: list[Any] | None) -> list[str]:
        inputs = self.model_inputs(prompts, clips)
        # The prefill's LM head on the last position only (the one `generate` reads).
        with torch.inference_mode(), last_position_logits(self.model):
            sequences = self.model.generate(**inputs, **self.kwargs)
        new_tokens = sequences[:, inputs["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def has_audio(inputs: dict[str, Any], tokenizer: Any) -> bool:
    """Whether a model input carries audio: features, or audio placeholder tokens in the text."""
    audio_id = audio_token_id(tokenizer)
    return any(k in inputs for k in AUDIO_KEYS) or bool((inputs["input_ids"] == audio_id).any())
