"""The one place that decodes audio: any common format to mono float32 at 16 kHz.

Every path of the recipe (training, evaluation, validation, benchmarks) gets its waveforms from
here, so resampling, down-mixing and trimming behave the same everywhere.

Example:
    >>> import numpy as np
    >>> from local.core.audio import decode_audio
    >>> clip = decode_audio(np.zeros(48_000, dtype=np.float32), sampling_rate=48_000, name="demo")
    >>> clip.array.shape, clip.array.dtype, clip.original_sampling_rate
    ((16000,), dtype('float32'), 48000)
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

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
    truncated: bool  # cut to max_duration_s on purpose
    incomplete: str | None = None  # the file is shorter than its header says (`wav_shortfall`)

    @property
    def duration_s(self) -> float:
        return len(self.array) / self.sampling_rate


def _describe(source: AudioSource, name: str | None) -> str:
    if name:
        return str(name)
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__} audio>"


_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # written by streaming encoders (e.g. to a pipe): "until EOF"


def _wav_data_sizes(handle: BinaryIO) -> tuple[int, int, int] | None:
    """(declared data bytes, data bytes present, bytes per second) of a RIFF/WAVE stream, or
    None if it is no WAV, has no data chunk, or declares no size."""
    handle.seek(0, io.SEEK_END)
    total = handle.tell()
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= total:
        handle.seek(offset)
        chunk, size = struct.unpack("<4sI", handle.read(8))
        if chunk == b"fmt " and size >= 12:
            byte_rate = struct.unpack("<I", handle.read(12)[8:12])[0]
        if chunk == b"data":
            if size in _UNKNOWN_SIZES:
                return None
            return size, total - offset - 8, byte_rate
        offset += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def wav_shortfall(source: str | Path | bytes | bytearray, label: str = "audio") -> str | None:
    """Why a WAV file is incomplete (its data chunk is shorter than the header says), or None.

    libsndfile reads a truncated WAV without an error or a warning (soundfile 0.14, libsndfile
    1.2.2: only the log in `SoundFile.extra_info` says "data : 32000 (should be 15978)"), so the
    header's declared data size is compared here with the bytes the file holds. Other formats,
    and WAVs that declare no size (streamed), give None.
    """
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            sizes = _wav_data_sizes(handle)
    else:
        sizes = _wav_data_sizes(io.BytesIO(source))
    if sizes is None or sizes[1] >= sizes[0]:
        return None
    declared, present, rate = sizes

    def seconds(n: int) -> str:
        return f" ({n / rate:.2f} s)" if rate else ""

    return (f"{label}: truncated WAV: its header declares {declared} bytes of audio data"
            f"{seconds(declared)}, the file holds {present}{seconds(present)}; the download or "
            "copy was cut short, fetch the file again.")


def _read(source: AudioSource, label: str) -> tuple[np.ndarray, int]:
    """Read a file path or encoded bytes to (frames[, channels]) float32 and its rate."""
    import soundfile as sf

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{label}: audio file not found. Check the path, or re-run "
                             "`bash run.sh --stage prepare` with this dataset among --sources "
                             "to fetch the audio.")
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
    A WAV file shorter than its header says decodes to what is there, and ``incomplete`` says
    what is missing (`wav_shortfall`; validation reports it).
    Errors name the item (`name`, else the path) and say what to do.
    """
    label = _describe(source, name)
    incomplete = None
    if isinstance(source, np.ndarray):
        if sampling_rate is None:
            raise AudioError(f"{label}: a raw waveform needs its sampling_rate.")
        data, rate = source.astype(np.float32, copy=False), int(sampling_rate)
    elif isinstance(source, (str, Path, bytes, bytearray)):
        data, rate = _read(source, label)
        incomplete = wav_shortfall(source, label)
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
        incomplete=incomplete,
    )


def load_audio(source: AudioSource, **kwargs: object) -> np.ndarray:
    """Shortcut for `decode_audio(...).array`: the mono float32 16 kHz waveform."""
    return decode_audio(source, **kwargs).array  # type: ignore[arg-type]
