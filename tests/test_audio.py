"""local/audio.py: every source kind decodes to mono float32 16 kHz; bad audio names the item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from local.audio import AudioError, decode_audio, load_audio
from tests.helpers import encode, tone


@pytest.mark.parametrize(
    ("fmt", "sr", "channels", "seconds"),
    [
        pytest.param("WAV", 16_000, 1, 1.0, id="wav-16k-mono-passes-through"),
        pytest.param("WAV", 44_100, 2, 0.5, id="wav-44k-stereo-resampled-and-downmixed"),
        pytest.param("FLAC", 48_000, 1, 0.5, id="flac-48k-resampled"),
        pytest.param("OGG", 22_050, 1, 0.5, id="ogg-vorbis-decoded"),
        pytest.param("WAV", 8_000, 1, 0.5, id="wav-8k-upsampled"),
    ],
)
@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_formats_decode_to_mono_16k(tmp_path: Path, fmt: str, sr: int, channels: int,
                                    seconds: float, as_path: bool) -> None:
    data = encode(tone(seconds, sr=sr, channels=channels), sr, fmt)
    source: bytes | Path = data
    if as_path:
        source = tmp_path / f"clip.{fmt.lower()}"
        source.write_bytes(data)
    clip = decode_audio(source)
    assert clip.array.dtype == np.float32 and clip.array.ndim == 1
    assert clip.sampling_rate == 16_000 and clip.original_sampling_rate == sr
    assert clip.original_channels == channels
    assert abs(clip.duration_s - seconds) < 0.01
    # The tone survived: most energy near 440 Hz, not silence or noise.
    spectrum = np.abs(np.fft.rfft(clip.array))
    peak_hz = np.argmax(spectrum) * 16_000 / len(clip.array)
    assert abs(peak_hz - 440) < 10


def test_stereo_channels_are_averaged() -> None:
    left, right = tone(0.5, 440), tone(0.5, 880)
    clip = decode_audio(np.stack([left, right], axis=1), sampling_rate=16_000)
    np.testing.assert_allclose(clip.array, (left + right) / 2, atol=1e-6)
    channels_first = decode_audio(np.stack([left, right]), sampling_rate=16_000)
    np.testing.assert_allclose(channels_first.array, clip.array, atol=1e-6)


def test_long_clip_is_cut_and_reported() -> None:
    clip = decode_audio(tone(3.0), sampling_rate=16_000, max_duration_s=2.0)
    assert clip.truncated and len(clip.array) == 32_000 and clip.original_duration_s == 3.0
    short = decode_audio(tone(1.0), sampling_rate=16_000, max_duration_s=2.0)
    assert not short.truncated and len(short.array) == 16_000


def test_load_audio_returns_the_array() -> None:
    np.testing.assert_array_equal(load_audio(tone(0.2), sampling_rate=16_000), tone(0.2))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_source", "kwargs", "message"),
    [
        pytest.param(lambda d: d / "missing.wav", {}, "not found", id="missing-file"),
        pytest.param(lambda d: _write(d / "empty.wav", b""), {}, "empty", id="empty-file"),
        pytest.param(lambda d: b"", {"name": "avqa/17"}, "empty", id="empty-bytes"),
        pytest.param(lambda d: b"RIFF\x00\x00garbage" * 10, {"name": "avqa/18"},
                     "cannot decode", id="corrupt-bytes"),
        pytest.param(lambda d: np.zeros(0, np.float32), {"sampling_rate": 16_000, "name": "x/1"},
                     "no samples", id="zero-length-array"),
        pytest.param(lambda d: np.array([0.0, np.nan], np.float32),
                     {"sampling_rate": 16_000, "name": "x/2"}, "NaN", id="nan-samples"),
        pytest.param(lambda d: tone(0.1), {"name": "x/3"}, "sampling_rate",
                     id="array-without-rate"),
        pytest.param(lambda d: 42, {"name": "x/4"}, "unsupported", id="wrong-type"),
    ],
)
def test_bad_audio_names_the_item(tmp_path: Path, make_source, kwargs, message: str) -> None:
    source = make_source(tmp_path)
    with pytest.raises(AudioError) as error:
        decode_audio(source, **kwargs)
    text = str(error.value)
    assert message in text
    assert kwargs.get("name", str(source)) in text
