"""Test helpers: synthetic audio, tiny checkpoints cached on disk, the audio-reaches check."""

from __future__ import annotations

import fcntl
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from local.util.fsio import building, is_done

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "tests"
SHARED_DATA = REPO.parent / "shared" / "data"
MODEL_CONFIGS = SHARED_DATA / "model-configs"
OFFICIAL_DIR = {"qwen2_5_omni": "Qwen2.5-Omni-7B", "qwen2_audio": "Qwen2-Audio-7B-Instruct"}


def tone(seconds: float = 1.0, freq: float = 440.0, sr: int = 16_000, channels: int = 1,
         amplitude: float = 0.3) -> np.ndarray:
    """A sine tone, (samples,) or (samples, channels)."""
    t = np.arange(int(round(seconds * sr))) / sr
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def encode(wave: np.ndarray, sr: int, fmt: str = "WAV") -> bytes:
    """Encode a waveform to audio-file bytes (WAV, FLAC, OGG)."""
    buffer = io.BytesIO()
    sf.write(buffer, wave, sr, format=fmt)
    return buffer.getvalue()


def _source_digest() -> str:
    """Fixtures are rebuilt whenever the code that builds them changes."""
    digest = hashlib.sha256()
    for name in ("local/demo/tiny.py", "local/demo/tiny_qwen3_omni.py",
                 "local/demo/processor_settings.py",
                 "local/demo/tokenizers.py", "local/util/fsio.py"):
        digest.update((REPO / name).read_bytes())
    return digest.hexdigest()[:12]


def tiny_checkpoint(family: str, vocab: str = "tiny", full_omni: bool = False,
                    text_head_dim: int | None = None) -> Path:
    """Build (once, cached under .cache/tests, safe across processes) a tiny checkpoint of a
    family ("qwen2_audio", "qwen2_5_omni", "qwen3_omni_moe"); text_head_dim None: the family's
    default (16; Qwen3-Omni's 32)."""
    from local.demo.tiny import build_tiny_checkpoint

    head = "" if text_head_dim in (None, 16) else f"-hd{text_head_dim}"
    name = f"{family}-{vocab}{'-full' if full_omni else ''}{head}-{_source_digest()}"
    out = CACHE / name
    CACHE.mkdir(parents=True, exist_ok=True)
    settings = {"family": family, "vocab": vocab, "full_omni": full_omni,
                "text_head_dim": text_head_dim}
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_done(out, settings):
            with building(out, settings) as tmp:
                build_tiny_checkpoint(family, tmp, vocab=vocab, full_omni=full_omni,  # type: ignore
                                      text_head_dim=text_head_dim)
    return out


def user_turn(text: str) -> list[dict[str, Any]]:
    """The recipe's one user turn (audio part, then text), from the one builder."""
    from local.core.prompts import build_messages

    return build_messages(text)


def processor_inputs(processor: Any, audios: list[np.ndarray], text: str = "How many beeps?"
                     ) -> dict[str, torch.Tensor]:
    prompt = processor.apply_chat_template(user_turn(text), tokenize=False,
                                           add_generation_prompt=True)
    return dict(processor(text=[prompt] * len(audios), audio=audios, sampling_rate=16_000,
                          return_tensors="pt", padding=True))


def logits_differ(forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                  inputs_a: dict[str, torch.Tensor], inputs_b: dict[str, torch.Tensor],
                  atol: float = 1e-5) -> bool:
    """True when the model's output depends on the audio: two inputs that differ only in audio
    give different logits. `forward` maps processor inputs to logits."""
    with torch.no_grad():
        return not torch.allclose(forward(inputs_a), forward(inputs_b), atol=atol)


def spy_generate(generator: Any) -> list[dict]:
    """Record the inputs of every `generator.model.generate` call (the call itself still runs)."""
    seen: list[dict] = []
    original = generator.model.generate

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(**kwargs)

    generator.model.generate = spy
    return seen
