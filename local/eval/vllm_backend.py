"""The vLLM evaluation backend (`--backend vllm`): the HF backend's questions, answered by vLLM.

`VLLMGenerator` is a `local.eval.generation.RecordGenerator`, so every prompt and clip is made
exactly as for the HF `Generator` (the same chat builder, the same `load_clip` and its audio cap,
the same error for an item that cannot be asked); only the answering differs. Each prompt holds
one unexpanded audio placeholder and its clip goes with the request
(`local.core.vllm_requests.audio_request`, Omni clips padded as the recipe pads them). The
settings are the HF backend's, mapped to vLLM's `SamplingParams` (`sampling_kwargs`): greedy by
default, `max_new_tokens`, the stop ids of `local.core.special_tokens`, the placeholder tokens
suppressed through `logit_bias` (`SamplingParams` has no `suppress_tokens`), nothing taken from
the checkpoint's generation_config; answers are decoded by the recipe's tokenizer as the HF
backend decodes them, so the output files are the same.

The engine: thinker-only Qwen2.5-Omni checkpoints (what training saves) and Qwen2-Audio saved by
transformers <= 5.22 are loaded from an export (`local.core.vllm_export.export_for_vllm`,
`exported`): one writer per node under a file lock, removed by the last rank of the node that
loaded it (an export is checkpoint-sized). One engine per rank under torchrun (data parallel,
each pinned to its own GPU: `pinned_device`) or one process with `--tensor_parallel_size N`;
not both. vLLM is imported only when an engine is built: the default environment has none.

Example:
    $ .venv-vllm/bin/python evaluate_mmau.py --backend vllm --model exp/grpo/checkpoint-100 \\
        --out_dir exp/grpo/eval/mmau/100 --batch_size 256
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import socket
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from local.core.models import (
    ModelFamily,
    ModelLoadError,
    family_of,
    load_config,
)
from local.core.special_tokens import STOP_TOKENS, placeholder_token_ids, token_ids
from local.core.vllm_export import ExportError, export_for_vllm, export_record, key_rename
from local.core.vllm_requests import audio_request, mm_limits, suppressing_bias
from local.eval.generation import GenerationSettings, RecordGenerator
from local.util.dist import DistContext
from local.util.fsio import is_done

logger = logging.getLogger(__name__)

EXPORT_DIR = "vllm_model"  # under the evaluation's --out_dir, one folder per host
VLLM_MISSING = ("--backend vllm needs vLLM, which the default environment does not hold: run "
                "`bash run.sh --stage mmau --eval_backend vllm` (it builds and uses the vLLM "
                "environment), or call this with .venv-vllm/bin/python (.venv-vllm-cpu without a "
                "GPU)")


def vllm_installed() -> bool:
    """Whether vLLM can be imported here (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def engine_version() -> str:
    """The installed vLLM distribution and version, e.g. 'vllm 0.33.0' or 'vllm-cpu 0.32.0'."""
    names = importlib.metadata.packages_distributions().get("vllm") or []
    if not names:
        raise SystemExit(VLLM_MISSING)
    return f"{names[0]} {importlib.metadata.version(names[0])}"


def sampling_kwargs(settings: GenerationSettings, tokenizer: Any) -> dict[str, Any]:
    """`SamplingParams` keywords for the HF backend's `settings.generate_kwargs`: the same
    length, sampling, stop ids and suppressed ids; vLLM's token ids, decoded by the caller."""
    return {
        "n": 1,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,  # 0: greedy (top_p / top_k then play no part)
        "top_p": settings.top_p,
        "top_k": settings.top_k,  # 0: off, in both
        "repetition_penalty": settings.repetition_penalty,
        "stop_token_ids": token_ids(tokenizer, STOP_TOKENS),
        "logit_bias": suppressing_bias(placeholder_token_ids(tokenizer)),
        "detokenize": False,
    }


def engine_kwargs(model: str, family: ModelFamily, *, dtype: str, max_model_len: int | None,
                  tensor_parallel_size: int, on_gpu: bool) -> dict[str, Any]:
    """`vllm.LLM` keywords: one clip per prompt, no generation_config defaults, eager on CPU."""
    kwargs: dict[str, Any] = {
        "model": model, "dtype": dtype, "tensor_parallel_size": tensor_parallel_size, "seed": 0,
        "limit_mm_per_prompt": mm_limits(family),
        "generation_config": "vllm",  # every setting comes from SamplingParams, as in HF
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if not on_gpu:
        kwargs["enforce_eager"] = True  # CPU: compiling costs minutes and the models are tiny
    return kwargs


def pinned_device(local_rank: int, visible: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for this rank's engine: the local_rank-th device visible now."""
    devices = [d.strip() for d in visible.split(",")] if visible else None
    if devices is None:
        return str(local_rank)
    if local_rank >= len(devices):
        raise SystemExit(f"local rank {local_rank} has no GPU: CUDA_VISIBLE_DEVICES={visible}")
    return devices[local_rank]


class VLLMGenerator(RecordGenerator):
    """Answers records with a vLLM engine: the HF backend's prompts and clips, audio sent per
    request."""

    def __init__(self, llm: Any, processor: Any, family: ModelFamily,
                 settings: GenerationSettings, *, audio: bool = True,
                 max_audio_seconds: float | None = 30.0) -> None:
        super().__init__(processor, family, audio=audio, max_audio_seconds=max_audio_seconds)
        self.llm, self.settings = llm, settings
        self.sampling = sampling_kwargs(settings, self.tokenizer)

    def requests(self, prompts: Sequence[str], clips: Sequence[Any] | None
                 ) -> list[dict[str, Any]]:
        """vLLM prompts: the text, and its clip when audio is on."""
        if clips is None:
            return [{"prompt": prompt} for prompt in prompts]
        return [audio_request(prompt, clip, self.processor, self.family)
                for prompt, clip in zip(prompts, clips, strict=True)]

    def close(self) -> None:
        """Stop the engine (its process and memory): vLLM keeps an engine a process built first
        alive until the process exits, which a second one (the next step) cannot afford."""
        client = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if client is not None:
            client.shutdown()
        self.llm = None

    def respond(self, prompts: list[str], clips: list[Any] | None) -> list[str]:
        import vllm  # deferred: only the vLLM environment has it (loaded already by the engine)

        outputs = self.llm.generate(self.requests(prompts, clips),
                                    vllm.SamplingParams(**self.sampling), use_tqdm=False)
        return [self.tokenizer.decode(out.outputs[0].token_ids, skip_special_tokens=True)
                for out in outputs]


# ---------------------------------------------------------------------------------------------
# Building the engine
# ---------------------------------------------------------------------------------------------

def _lock_path(dest: Path) -> Path:
    """The lock of an export: node-local, outside the evaluation's folder (left behind there,
    it would be a file the HF backend does not write)."""
    digest = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"recipe-vllm-export-{digest}.lock"


@contextmanager
def exported(model: str, dest: Path) -> Iterator[str]:
    """The model vLLM should load for `model`, held while the caller loads it.

    A hub id, the hub's Omni and Qwen2-Audio saved by transformers >= 5.23 load as they are.
    Otherwise the export goes to `dest`, written by one rank of the node (a file lock; the others
    reuse it) and removed by the last rank that loaded it; a rank coming later exports again.
    """
    source = Path(model)
    if not source.is_dir():
        yield model  # a hub id: vLLM loads the hub's layout as it is
        return
    try:
        needs_export = key_rename(source) is not None
    except ExportError as err:
        raise SystemExit(f"--model {model}: {err}; --backend hf evaluates it") from err
    if not needs_export:
        yield model
        return
    with open(_lock_path(dest), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # shared: ranks load a finished export side by side
        while not is_done(dest, export_record(source)):
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer, once no rank is loading
            try:
                export_for_vllm(source, dest)  # reused if another rank wrote it meanwhile
            except ExportError as err:  # e.g. a Qwen3-Omni config without what vLLM reads
                raise SystemExit(f"--model {model}: {err}; --backend hf evaluates it") from err
            # Back to shared; not atomic (flock(2)): a rank that finished loading may remove
            # the export in between, and the loop writes it again.
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield str(dest)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another rank is loading it; the last one removes it
            else:
                _remove_export(dest)
                fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_export(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    with contextlib.suppress(OSError):  # other hosts' exports may still be there
        dest.parent.rmdir()


def _processor_and_family(model: str) -> tuple[Any, ModelFamily]:
    from transformers import AutoProcessor

    try:
        family = family_of(load_config(model))
        return AutoProcessor.from_pretrained(model), family
    except ModelLoadError as err:
        raise SystemExit(f"--model {model}: {err}") from err
    except (OSError, ValueError) as err:
        raise SystemExit(f"--model {model}: cannot load its processor: {err}") from err


def check_parallel(dist: DistContext, tensor_parallel_size: int) -> None:
    """One engine per rank (data parallel) or one process with tensor parallel, not both; under
    torchrun each engine runs in vLLM's own engine process (this one holds the process group)."""
    if dist.world_size > 1 and tensor_parallel_size > 1:
        raise SystemExit(f"--tensor_parallel_size {tensor_parallel_size} under torchrun "
                         f"({dist.world_size} ranks): use one process for tensor parallel "
                         "(run.sh --nproc 1), or data parallel with --tensor_parallel_size 1")
    if dist.world_size > 1 and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0":
        raise SystemExit("VLLM_ENABLE_V1_MULTIPROCESSING=0 under torchrun would put each "
                         "engine in the rank's process group; unset it")


@contextmanager
def pinned_gpu(dist: DistContext, on_gpu: bool) -> Iterator[None]:
    """Under torchrun, CUDA_VISIBLE_DEVICES names this rank's GPU while the engine starts: vLLM's
    engine process, started then, inherits it and runs there (else every rank's on GPU 0)."""
    if not (on_gpu and dist.world_size > 1):
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = pinned_device(dist.local_rank, before)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


_LIVE: weakref.WeakSet[VLLMGenerator] = weakref.WeakSet()  # this process's engines


def close_engines() -> None:
    """Stop every engine this process built: one evaluation at a time, so a new engine means the
    previous evaluation (`local.eval.steps`: the previous step) is over."""
    for generator in list(_LIVE):
        generator.close()
    _LIVE.clear()


def build_vllm_generator(args: argparse.Namespace, settings: GenerationSettings,
                         dist: DistContext) -> VLLMGenerator:
    """This rank's engine for `args.model` (exported if vLLM needs it), wrapped as a backend;
    the engine of an earlier evaluation in this process is stopped first."""
    if not vllm_installed():
        raise SystemExit(VLLM_MISSING)
    close_engines()
    tensor_parallel_size = args.tensor_parallel_size or 1
    check_parallel(dist, tensor_parallel_size)
    model = str(args.model)
    on_gpu = dist.device.type == "cuda"
    import vllm  # deferred: only the vLLM environment has it (checked above)

    export = Path(args.out_dir) / EXPORT_DIR / socket.gethostname()
    with exported(model, export) as served, pinned_gpu(dist, on_gpu):
        processor, family = _processor_and_family(model)  # after `exported` refused adapters
        kwargs = engine_kwargs(served, family, dtype=args.dtype, max_model_len=args.max_model_len,
                               tensor_parallel_size=tensor_parallel_size, on_gpu=on_gpu)
        logger.info("%s engine: %s", engine_version(), kwargs)
        llm = vllm.LLM(**kwargs)
    generator = VLLMGenerator(llm, processor, family, settings, audio=not args.no_audio,
                              max_audio_seconds=args.max_audio_duration_in_seconds)
    _LIVE.add(generator)
    return generator
