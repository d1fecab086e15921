"""k answers per item and pass, each from its own seed: the evaluation backends, sampling.

A pass is `audio` (the item as training asks it) or `no_audio` (the evaluation's `--no_audio`
ablation: no audio part in the prompt, no features; `local.eval.generation`). An item's k
samples are k copies of its record (ids `<id>#<j>`) answered by the evaluation backends
(`local.eval.generation.Generator`, `local.eval.vllm_backend.VLLMGenerator`) with sampling
settings, so the prompts, clips and errors are exactly evaluation's.

Seeds: sample j of item `id` in pass `p` is drawn from `sample_seed(seed, id, p, j)` (a hash),
whatever the rank, batch or run that answers it.
  * HF (`HFSampler`): `generate` draws every row of a batch from one torch generator, so the k
    copies of one item form one batch, seeded with the seed of its sample 0 (`torch.manual_seed`,
    which seeds every device). An item's k answers then depend only on the item, the pass, the
    seed, the model and the settings, not on the number of processes, the batch size or where
    an earlier run stopped: a killed and re-run curation gives the same table on the same
    hardware and software (`tests/test_curate.py` kills one and compares).
  * vLLM (`VLLMSampler`): every request carries its own seed (`SamplingParams.seed`), and
    `--batch_size` items are sent together. vLLM's seeded sampling makes a request's draws its
    own; on a GPU the logits of a request can still differ in the last bits with the batch it
    shares (kernels pick other reductions by batch shape), so a resumed run that batches items
    differently may, rarely, draw another token: the same table is guaranteed for the same
    --nproc and --batch_size from the start, and expected (not guaranteed) otherwise.

Example:
    >>> sample_seed(0, "avqa-train-7", "audio", 3) == sample_seed(0, "avqa-train-7", "audio", 3)
    True
    >>> sample_seed(0, "avqa-train-7", "audio", 3) == sample_seed(0, "avqa-train-7", "no_audio", 3)
    False
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from local.core.records import Record
from local.eval.generation import Generator, Output
from local.eval.vllm_backend import VLLMGenerator

PASSES = ("audio", "no_audio")
SEP = "#"  # copy ids: <item id>#<sample index>


def sample_seed(seed: int, item_id: str, pass_name: str, j: int) -> int:
    """The seed of sample `j` of `item_id` in `pass_name` (a 63-bit hash of the four)."""
    digest = hashlib.sha256(f"{seed}\0{item_id}\0{pass_name}\0{j}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def copies(record: Record, k: int) -> list[Record]:
    """`k` copies of `record`, ids `<id>#0` .. `<id>#<k-1>` (the backends key outputs by id)."""
    return [dataclasses.replace(record, id=f"{record.id}{SEP}{j}") for j in range(k)]


class Sampler(Protocol):
    """k answers for each record of a batch, in order (an `Output` per sample)."""

    max_audio_seconds: float | None

    def sample(self, records: Sequence[Record], template: str) -> list[list[Output]]:
        ...


class HFSampler:
    """HF `generate`: one item's k copies per call, seeded with its sample 0's seed."""

    def __init__(self, generator: Generator, k: int, seed: int, pass_name: str) -> None:
        if not generator.kwargs.get("do_sample"):
            raise ValueError("the generator is greedy: curation samples (temperature > 0)")
        self.generator, self.k, self.seed, self.pass_name = generator, k, seed, pass_name
        self.max_audio_seconds = generator.max_audio_seconds

    def sample(self, records: Sequence[Record], template: str) -> list[list[Output]]:
        answers = []
        for record in records:
            torch.manual_seed(sample_seed(self.seed, record.id, self.pass_name, 0))
            answers.append(self.generator.generate(copies(record, self.k), template))
        return answers


class SeededVLLMGenerator(VLLMGenerator):
    """`VLLMGenerator` whose every request carries its own seed (`seeds`: copy id -> seed).

    `RecordGenerator.generate` hands `respond` the prompts of the records that could be asked
    (a clip that cannot be decoded is answered with its error); `decode` notes which those are,
    so each prompt gets its own record's seed."""

    def __init__(self, *args: Any, params: Callable[..., Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seeds: dict[str, int] = {}
        self._ready: list[str] = []
        self._params = params  # vllm.SamplingParams (a stand-in in tests)

    def decode(self, record: Record) -> Any:
        clip, error = super().decode(record)
        if error is None:
            self._ready.append(record.id)
        return clip, error

    def generate(self, records: Sequence[Record], template: str = "default",
                 texts: Sequence[str] | None = None) -> list[Output]:
        self._ready = [] if self.audio else [r.id for r in records]
        return super().generate(records, template, texts)

    def respond(self, prompts: list[str], clips: list[Any] | None) -> list[str]:
        if len(self._ready) != len(prompts):
            raise RuntimeError(f"{len(prompts)} prompts for {len(self._ready)} seeded records")
        params = self._params
        if params is None:
            import vllm  # deferred: only the vLLM environment has it (the engine loaded it)

            params = vllm.SamplingParams
        outputs = self.llm.generate(
            self.requests(prompts, clips),
            [params(**{**self.sampling, "seed": self.seeds[i]}) for i in self._ready],
            use_tqdm=False)
        return [self.tokenizer.decode(out.outputs[0].token_ids, skip_special_tokens=True)
                for out in outputs]


class VLLMSampler:
    """vLLM: a batch of items' copies in one call, one seed per request."""

    def __init__(self, generator: SeededVLLMGenerator, k: int, seed: int,
                 pass_name: str) -> None:
        if generator.settings.greedy:
            raise ValueError("the generator is greedy: curation samples (temperature > 0)")
        self.generator, self.k, self.seed, self.pass_name = generator, k, seed, pass_name
        self.max_audio_seconds = generator.max_audio_seconds

    def sample(self, records: Sequence[Record], template: str) -> list[list[Output]]:
        batch = [c for r in records for c in copies(r, self.k)]
        self.generator.seeds = {c.id: sample_seed(self.seed, r.id, self.pass_name, j)
                                for r in records for j, c in enumerate(copies(r, self.k))}
        outputs = self.generator.generate(batch, template)
        return [outputs[i * self.k:(i + 1) * self.k] for i in range(len(records))]
