"""Which clip a training row carries, what to call it, and which rows may stand in for it.

Used by `local.train.trainer` at rollout time. The row's audio is read with
`local.core.records.row_audio` (the one reader of the audio columns). A clip is identified by
the row's audio itself (its path, or a hash of its bytes or samples), never by the row id: two
rows may share an id and carry different audio. A row whose clip cannot be used (`bad_records:
skip`) is replaced by another training row chosen from the clip's key alone, so every copy of
the row (G per prompt, possibly on several ranks) gets the same replacement and groups stay
whole.

Example:
    >>> audio_key({"id": "a", "audio_path": "/data/x.wav"})
    'path:/data/x.wav'
    >>> row_name({"id": "a", "audio_path": "/data/x.wav"})
    'a (/data/x.wav)'
    >>> list(replacement_indices("path:/data/x.wav", 5, tries=3)) == \\
    ...     list(replacement_indices("path:/data/x.wav", 5, tries=3))
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from local.core.audio import AudioError, AudioSource
from local.core.records import row_audio


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def row_name(row: dict[str, Any]) -> str:
    """The row's id, and its audio file when it has one (what messages name)."""
    audio = row_audio(row)
    return f"{row.get('id')}" + (f" ({audio})" if isinstance(audio, str) and audio else "")


def audio_source(row: dict[str, Any]) -> AudioSource:
    """The row's audio as `local.core.audio.decode_audio` takes it; AudioError if it has none."""
    source = row_audio(row)  # Arrow's lists come back as float32 arrays
    if source is None:
        raise AudioError(f"{row_name(row)}: the training row carries no audio; the dataset "
                         "builder should have skipped it (see local/train/dataset.py).")
    return source


def audio_key(row: dict[str, Any]) -> str:
    """What identifies the row's clip: its path, or a hash of its bytes / samples and rate."""
    try:
        source = audio_source(row)
    except AudioError:
        return f"none:{row.get('id')}"
    if isinstance(source, (str, Path)):
        return f"path:{source}"
    if isinstance(source, (bytes, bytearray)):
        return f"bytes:{_hash(bytes(source))}"
    samples = np.ascontiguousarray(source)
    return f"array:{row.get('sampling_rate')}:{samples.dtype}:{samples.shape}:" \
           f"{_hash(samples.tobytes())}"


def replacement_indices(key: str, size: int, tries: int = 100) -> Iterator[int]:
    """Dataset indices to try, in order, in place of the row whose clip has `key`: the same on
    every rank and every time (they depend on the key and the dataset size only)."""
    if size <= 0:
        return
    start = int(_hash(key.encode()), 16) % size
    for offset in range(min(size, tries)):
        yield (start + offset) % size
