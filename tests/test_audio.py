"""local/core/audio.py: every source kind decodes to mono float32 16 kHz; bad audio names the
item."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from local.core.audio import AudioError, decode_audio, load_audio
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


# A WAV whose data chunk is shorter than its header says (an interrupted download or copy):
# libsndfile 1.2.2 (soundfile 0.14) reads the frames that are there without an error or warning;
# only its log (SoundFile.extra_info) notes "data : 32000 (should be 15978)". decode_audio
# compares the header's declared data size with the bytes the file holds and says so.
WAV_1S = encode(tone(1.0), 16_000)  # PCM_16 mono: 44-byte header, 32000 data bytes


def _data_size(data: bytes, size: int) -> bytes:
    """`data` with the data chunk's declared size replaced (44-byte canonical header)."""
    assert data[36:40] == b"data"
    return data[:40] + struct.pack("<I", size) + data[44:]


def _with_list_chunk(data: bytes) -> bytes:
    """`data` with a LIST chunk (metadata, odd size + pad byte) between fmt and data."""
    payload = b"INFOISFT\x05\x00\x00\x00test\x00"
    chunk = b"LIST" + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)
    body = data[12:36] + chunk + data[36:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(WAV_1S, None, id="complete"),
        pytest.param(WAV_1S[:44 + 16_000], "declares 32000 bytes of audio data (1.00 s), the "
                     "file holds 16000 (0.50 s)", id="data-cut-in-half"),
        pytest.param(_with_list_chunk(WAV_1S)[:-8_000], "declares 32000 bytes of audio data "
                     "(1.00 s), the file holds 24000 (0.75 s)", id="cut-after-a-list-chunk"),
        pytest.param(WAV_1S[:-1], "holds 31999", id="one-byte-short"),
        pytest.param(_data_size(WAV_1S, 0xFFFFFFFF), None, id="streamed-size-unknown"),
        pytest.param(WAV_1S + b"JUNK\x04\x00\x00\x00abcd", None, id="trailing-chunk"),
        pytest.param(encode(tone(0.5), 16_000, "FLAC"), None, id="flac"),
        pytest.param(encode(tone(0.5), 16_000, "MP3"), None, id="mp3-named-wav"),
    ],
)
@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_a_truncated_wav_is_flagged(tmp_path: Path, data: bytes, problem: str | None,
                                    as_path: bool) -> None:
    source: bytes | Path = _write(tmp_path / "clip.wav", data) if as_path else data
    clip = decode_audio(source, name="mmau/7")
    if problem is None:
        assert clip.incomplete is None
    else:
        assert clip.incomplete is not None and problem in clip.incomplete
        assert clip.incomplete.startswith("mmau/7: truncated WAV")
