"""The one place that decodes audio: any common format to mono float32 at 16 kHz.

Every path of the recipe (training, evaluation, validation, benchmarks) gets its waveforms from
here, so resampling, down-mixing and trimming behave the same everywhere.

Example:
    >>> import numpy as np
    >>> from local.audio import decode_audio
    >>> clip = decode_audio(np.zeros(48_000, dtype=np.float32), sampling_rate=48_000, name="demo")
    >>> clip.array.shape, clip.array.dtype, clip.original_sampling_rate
    ((16000,), dtype('float32'), 48000)
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

TARGET_SAMPLING_RATE = 16_000

AudioSource = Union[str, Path, bytes, bytearray, np.ndarray]


class AudioError(ValueError):
    """Audio that cannot be used; the message names the item and says what to do."""


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded clip and what it looked like before conversion."""

    array: np.ndarray  # mono float32 at TARGET_SAMPLING_RATE (or the rate asked for)
    sampling_rate: int
    original_sampling_rate: int
    original_channels: int
    original_duration_s: float
    truncated: bool

    @property
    def duration_s(self) -> float:
        return len(self.array) / self.sampling_rate


def _describe(source: AudioSource, name: str | None) -> str:
    if name:
        return str(name)
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__} audio>"


def _read(source: AudioSource, label: str) -> tuple[np.ndarray, int]:
    """Read a file path or encoded bytes to (frames[, channels]) float32 and its rate."""
    import soundfile as sf

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{label}: audio file not found. Check the path, or re-run "
                             "`bash run.sh --stage prepare` to fetch the audio.")
        if path.stat().st_size == 0:
            raise AudioError(f"{label}: audio file is empty (0 bytes); re-download or remove it.")
        handle: object = str(path)
    else:
        if len(source) == 0:
            raise AudioError(f"{label}: audio bytes are empty; the record carries no audio.")
        handle = io.BytesIO(bytes(source))
    try:
        data, rate = sf.read(handle, dtype="float32", always_2d=False)
        return data, int(rate)
    except Exception as sf_error:  # libsndfile lacks some formats (m4a/aac): try librosa's backends
        try:
            import librosa

            if not isinstance(handle, str):
                handle.seek(0)  # type: ignore[union-attr]
            data, rate = librosa.load(handle, sr=None, mono=False, dtype=np.float32)
            return (data.T if data.ndim == 2 else data), int(rate)
        except Exception:
            raise AudioError(f"{label}: cannot decode audio ({sf_error}). The file is corrupt or "
                             "in a format neither libsndfile nor librosa reads; convert it to "
                             "WAV/FLAC 16 kHz mono or re-download it.") from sf_error


def _to_mono(data: np.ndarray, label: str) -> np.ndarray:
    if data.ndim == 1:
        return data
    if data.ndim == 2:
        # Arrays may come (frames, channels) from soundfile or (channels, frames) from callers.
        channel_axis = 1 if data.shape[1] <= data.shape[0] else 0
        return data.mean(axis=channel_axis)
    raise AudioError(f"{label}: audio array has shape {data.shape}; expected (samples,) or "
                     "(samples, channels).")


def decode_audio(
    source: AudioSource,
    *,
    sampling_rate: int | None = None,
    target_sampling_rate: int = TARGET_SAMPLING_RATE,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> DecodedAudio:
    """Decode a path, encoded bytes or a waveform to mono float32 at `target_sampling_rate`.

    `sampling_rate` is required for a raw waveform and ignored for files/bytes (their header says).
    Clips longer than `max_duration_s` are cut (``truncated`` tells the caller, who counts them).
    Errors name the item (`name`, else the path) and say what to do.
    """
    label = _describe(source, name)
    if isinstance(source, np.ndarray):
        if sampling_rate is None:
            raise AudioError(f"{label}: a raw waveform needs its sampling_rate.")
        data, rate = source.astype(np.float32, copy=False), int(sampling_rate)
    elif isinstance(source, (str, Path, bytes, bytearray)):
        data, rate = _read(source, label)
    else:
        raise AudioError(f"{label}: unsupported audio source of type {type(source).__name__}; "
                         "give a path, encoded bytes or a numpy waveform.")

    channels = 1 if data.ndim == 1 else min(data.shape)
    mono = _to_mono(np.asarray(data, dtype=np.float32), label)
    if mono.size == 0:
        raise AudioError(f"{label}: audio has no samples; the file or record is empty.")
    if not np.isfinite(mono).all():
        raise AudioError(f"{label}: audio contains NaN or infinite samples; the file is corrupt.")
    original_duration = mono.size / rate
    if rate != target_sampling_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=target_sampling_rate)
    truncated = False
    if max_duration_s is not None:
        limit = int(round(max_duration_s * target_sampling_rate))
        if mono.size > limit:
            mono, truncated = mono[:limit], True
    return DecodedAudio(
        array=np.ascontiguousarray(mono, dtype=np.float32),
        sampling_rate=target_sampling_rate,
        original_sampling_rate=rate,
        original_channels=int(channels),
        original_duration_s=float(original_duration),
        truncated=truncated,
    )


def load_audio(source: AudioSource, **kwargs: object) -> np.ndarray:
    """Shortcut for `decode_audio(...).array`: the mono float32 16 kHz waveform."""
    return decode_audio(source, **kwargs).array  # type: ignore[arg-type]
