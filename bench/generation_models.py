"""The models of bench/generation.py: tiny checkpoints (CPU) or real shapes with random weights.

`prepared(family, args)` gives the HF model (the recipe's loader for a tiny checkpoint, built in a
temporary folder with text head_dim 32; bench/models.py's `build_model` for a real size) and the
folder and `vllm.LLM` keywords vLLM serves it from: the evaluation backend's `engine_kwargs`, on
the tiny checkpoint's export (`local.core.vllm_export.export_for_vllm`: thinker-only Omni needs
one) or, for a real size, on a folder of config and processor files that vLLM fills with its
own random weights (`load_format="dummy"`: no 16 GB checkpoint written). Real shapes: Omni-3B/7B
from bench/models.py, Qwen2-Audio-7B below.

Example:
    >>> with prepared("qwen2_5_omni", args, dry=True) as prep:             # doctest: +SKIP
    ...     prep.engine["model"]
    '/tmp/bench-generation-.../vllm'
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.models import REAL_SHAPES, build_model, real_config
from local.core.models import QWEN2_5_OMNI, QWEN2_AUDIO, LoadedModel, load_model_and_processor
from local.core.vllm_export import OMNI_VLLM_ARCHITECTURE, export_for_vllm, omni_config
from local.demo.tiny import build_processor, build_tiny_checkpoint, qwen2_audio_config
from local.demo.tokenizers import build_tokenizer
from local.eval.vllm_backend import engine_kwargs

FAMILIES = {"qwen2_audio": QWEN2_AUDIO, "qwen2_5_omni": QWEN2_5_OMNI}
# Qwen/Qwen2-Audio-7B-Instruct config.json: the text keys it sets, Qwen2Config's defaults for the
# ones it leaves out (hidden 4096, 32 layers, 32 heads, 32 KV heads); Whisper-large encoder.
QWEN2_AUDIO_7B_TEXT = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                       "num_attention_heads": 32, "num_key_value_heads": 32,
                       "vocab_size": 156032, "max_position_embeddings": 8192,
                       "rms_norm_eps": 1e-5}
REAL_SIZES = (*sorted(REAL_SHAPES), "qwen2_audio_7b")


def real_size_config(kind: str, tokenizer: Any) -> Any:
    """The real-size config of `kind`, built as bench/models.py builds the Omni ones."""
    if kind != "qwen2_audio_7b":
        return real_config(kind, tokenizer)
    tiny = qwen2_audio_config(tokenizer)
    base = tiny.to_dict()
    base["text_config"].update(QWEN2_AUDIO_7B_TEXT)
    base["text_config"].pop("layer_types", None)  # re-derived from num_hidden_layers
    base["audio_config"].update(REAL_SHAPES["qwen2_5_omni_7b"]["audio"])  # Whisper-large, as Omni
    return type(tiny)(**base)


def parameter_count(config: Any) -> int:
    """Parameters of `config`'s model, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = build_model(config, device="meta")
    return sum(p.numel() for p in model.parameters())


def dummy_folder(config: Any, processor: Any, dest: Path) -> Path:
    """Config and processor files vLLM loads with `load_format="dummy"` (random weights)."""
    processor.save_pretrained(dest)
    config.save_pretrained(dest)
    if config.model_type == "qwen2_audio":
        config.architectures = ["Qwen2AudioForConditionalGeneration"]
        config.save_pretrained(dest)
    else:  # vLLM serves the thinker of a whole-Omni config (local.core.vllm_export)
        omni = omni_config(dest)
        assert omni.architectures == [OMNI_VLLM_ARCHITECTURE]
        omni.save_pretrained(dest)
    return dest


@dataclass
class Prepared:
    name: str
    loaded: LoadedModel
    served: str  # the folder vLLM loads
    engine: dict[str, Any]  # vllm.LLM keywords
    export_s: float


@contextmanager
def prepared(family_name: str, args: argparse.Namespace, dry: bool) -> Iterator[Prepared]:
    """The HF model and the vLLM folder and keywords for one family (or `--real_size`)."""
    on_gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
        if args.real_size:
            tokenizer = build_tokenizer("real")
            config = real_size_config(args.real_size, tokenizer)
            family = FAMILIES["qwen2_audio" if config.model_type == "qwen2_audio"
                              else "qwen2_5_omni"]
            processor = build_processor(family.name, tokenizer)
            model = None if dry else build_model(config, dtype=torch.bfloat16, device="cuda")
            name = f"{args.real_size} ({parameter_count(config) / 1e9:.2f}B parameters, random " \
                   f"weights, bf16)"
            start = time.perf_counter()
            served = dummy_folder(config, processor, Path(tmp) / "vllm")
            extra = {"load_format": "dummy"}
        else:
            family = FAMILIES[family_name]
            checkpoint = Path(tmp) / "checkpoint"
            build_tiny_checkpoint(family.name, checkpoint, vocab=args.vocab, text_head_dim=32)
            loaded = load_model_and_processor(str(checkpoint), dtype=args.dtype)
            processor, model = loaded.processor, None if dry else loaded.model
            rows = loaded.model.get_output_embeddings().out_features
            name = f"{family.name} tiny (text head_dim 32, {rows:,}-row vocabulary, {args.dtype})"
            start = time.perf_counter()
            served = export_for_vllm(checkpoint, Path(tmp) / "vllm")  # tiny: also when dry
            extra = {}
        export_s = time.perf_counter() - start
        kwargs = {**engine_kwargs(str(served), family, dtype=args.dtype if not args.real_size
                                  else "bfloat16", max_model_len=args.max_model_len,
                                  tensor_parallel_size=1, on_gpu=on_gpu), **extra}
        yield Prepared(name, LoadedModel(model, processor, family), str(served), kwargs, export_s)
