"""Source-layout writers shared by the tests: each hub source as its real files look.

Every writer stands in for something outside the repo, so each says what it is built from:

* AVQA (`gijs/avqa-processed`): a `DatasetDict.save_to_disk` dump, splits `train/` and `val/`,
  columns `question` ("text\\nChoices:\\nA. ...", saying "video"), `answer` ("B. text"),
  `audio` (an Audio feature with the encoded file embedded) and `file_name`. Evidence: WeST's
  `west/dataset/hf_dataset.py` reads exactly `item['audio']['array'|'sampling_rate']`,
  `item['question']` split on "\\nChoices:\\n", `item['answer']` "A. text", `item['file_name']`;
  other public loaders call the splits "train" and "validation" through `load_dataset`, which
  maps a `val/` folder to "validation".
* MMSU (`yuantuo666/MMSU-full_5k_hf_format.v0`): parquet shards `data/train-*.parquet`, one
  `train` split, columns `audio`, `key`, `question`, `options` (4 strings, two-choice items
  padded with the literal 'None'), `answer_index`, `category` ("L1-L2-L3-L4"). Evidence: WeST's
  `_handle_hf_item_mmsu` (same file) reads `audio`, `key`, `question`, `options`,
  `answer_index`, `category`.
* MMAU test-mini audio (`gamma-lab-umd/MMAU-test-mini`): ONE root file `test_mini.parquet` whose
  rows carry the clip as `context` = {bytes, path: null}, the question as `instruction`,
  `choices` / `answer` with "(A) " prefixes, and `other_attributes`, a JSON *string* with `id`,
  `dataset`, `task`, `split`, `category`, `sub-category`, `difficulty`; no top-level `audio`,
  `id` or `key` column. Payloads are WAV at 16-48 kHz with up to 6 channels, and some are MP3
  streams (in files the question JSON names `.wav`). Evidence: sgl-project/sgl-eval's
  `sgl_eval/evals/_mmau.py` downloads `test_mini.parquet` and reads `row["context"]["bytes"]`,
  `row["instruction"]`, `row["choices"]`, `row["answer"]` (stripping "(A) ") and
  `json.loads(row["other_attributes"])["task"]`.
* MMAU question file (`mmau-test-mini.json`, the MMAU project's repository): a JSON list of
  items with `id`, `audio_id` "./test-mini-audios/<id>.wav", `question`, `choices`, `answer`,
  `dataset`, `task`, `split`, `category`, `sub-category`, `difficulty` (the real file is in
  ../shared/data/mmau when the workspace has it: `real_mmau_json`).
* The Hugging Face cache (`cache_repo`): huggingface_hub 2.x's layout,
  `<type>s--<org>--<name>/blobs/<sha256>`, `snapshots/<commit>/<file>` symlinked to the blob,
  `refs/main` holding the commit, so `snapshot_download` resolves it offline by itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.helpers import SHARED_DATA, encode, tone

MAIN = "a" * 40


def wav(seconds: float = 0.2, sr: int = 16_000, channels: int = 1, freq: float = 440.0) -> bytes:
    """WAV bytes of a tone."""
    return encode(tone(seconds, freq=freq, sr=sr, channels=channels), sr)


def mp3(seconds: float = 0.2, sr: int = 44_100, channels: int = 2, freq: float = 440.0) -> bytes:
    """MP3 bytes of a tone (libsndfile's MPEG encoder)."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, freq=freq, sr=sr, channels=channels), sr, format="MP3")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- AVQA

def avqa_row(i: int, question: str | None = None, answer: str = "B. two",
             audio: bytes | None = None) -> dict:
    question = question or f"How many dogs bark in the video {i}?\nChoices:\nA. one\nB. two"
    data = audio if audio is not None else wav()
    return {"question": question, "answer": answer, "file_name": f"clip{i}.wav",
            "audio": {"bytes": data, "path": f"clip{i}.wav"}}


def save_avqa(root: Path, train: list[dict], val: list[dict] | None = None) -> Path:
    """A DatasetDict.save_to_disk dump like gijs/avqa-processed (Audio cast, not encoded)."""
    splits = {"train": datasets.Dataset.from_list(train).cast_column("audio", datasets.Audio())}
    if val is not None:
        splits["val"] = datasets.Dataset.from_list(val).cast_column("audio", datasets.Audio())
    datasets.DatasetDict(splits).save_to_disk(str(root))
    return root


# ------------------------------------------------------------------------------------- MMSU

def mmsu_row(i: int, options: list[str] | None = None, answer_index: int = 1,
             audio: bytes | None = b"") -> dict:
    data = wav(sr=48_000) if audio == b"" else audio
    return {"audio": {"bytes": data, "path": f"k{i}.wav"} if data is not None else None,
            "key": f"k{i}", "question": "Which word is stressed?",
            "options": options or ["first", "second", "third", "fourth"],
            "answer_index": answer_index, "category": "Perception-Semantics-Syntax-Word order"}


def save_mmsu(root: Path, rows: list[dict]) -> Path:
    """The hub snapshot layout: data/train-00000-of-00001.parquet."""
    (root / "data").mkdir(parents=True)
    ds = datasets.Dataset.from_list(rows).cast_column("audio", datasets.Audio())
    ds.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


# ------------------------------------------------------------------------ MMAU question file

def mmau_item(i: int, **overrides: object) -> dict:
    item = {"id": f"m{i}", "audio_id": f"./test-mini-audios/m{i}.wav",
            "question": "Which instrument plays?", "choices": ["Piano", "Violin", "Drums"],
            "answer": "Violin", "dataset": "MusicCaps", "task": "music", "split": "test-mini",
            "category": "Perception", "sub-category": "Instrument", "difficulty": "easy"}
    return {**item, **overrides}


def save_mmau(root: Path, items: list[dict], skip_audio: tuple[str, ...] = ()) -> Path:
    """root/mmau-test-mini.json + root/test-mini-audios/<id>.wav; returns the JSON path."""
    (root / "test-mini-audios").mkdir(parents=True)
    for item in items:
        name = Path(item["audio_id"]).name
        if item["id"] not in skip_audio:
            (root / "test-mini-audios" / name).write_bytes(wav(sr=44_100))
    (root / "mmau-test-mini.json").write_text(json.dumps(items))
    return root / "mmau-test-mini.json"


def real_mmau_json() -> Path:
    """The real mmau-test-mini.json (1000 items) where the workspace has it; else skip."""
    path = SHARED_DATA / "mmau" / "mmau-test-mini.json"
    if not path.is_file():
        pytest.skip("../shared/data/mmau/mmau-test-mini.json is absent")
    return path


# ---------------------------------------------------------------------- MMAU hub (parquet)

MMAU_HUB_FILE = "test_mini.parquet"
_ATTRIBUTES = ("id", "dataset", "task", "split", "category", "sub-category", "difficulty")


def mmau_payload(index: int) -> bytes:
    """A distinct clip per item in the mix the hub holds: WAV at 16-48 kHz with 1, 2 or 6
    channels, and every 25th an MP3 stream (about 40 of 1000, "a few dozen")."""
    freq = 200.0 + 3.0 * index  # distinct content: a wrong join cannot match byte for byte
    if index % 25 == 7:
        return mp3(0.05, sr=(44_100, 48_000)[index % 2], channels=2, freq=freq)
    sr = (16_000, 22_050, 44_100, 48_000)[index % 4]
    return wav(0.05, sr=sr, channels=(1, 2, 6)[index % 3], freq=freq)


def mmau_hub_row(item: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """One row of test_mini.parquet for a question-file item."""
    letters = "ABCDEFGH"
    choices = [f"({letters[i]}) {c}" for i, c in enumerate(item["choices"])]
    answer = next((c for c, raw in zip(choices, item["choices"], strict=True)
                   if raw == item["answer"]), item["answer"])
    return {"context": {"bytes": payload, "path": None},
            "instruction": item["question"], "choices": choices, "answer": answer,
            "other_attributes": json.dumps({k: item.get(k) for k in _ATTRIBUTES})}


def write_mmau_hub(folder: Path, items: Sequence[dict[str, Any]], seed: int = 0,
                   payloads: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """folder/test_mini.parquet with one row per item, rows shuffled; {id: payload bytes}."""
    payloads = payloads if payloads is not None else {
        item["id"]: mmau_payload(i) for i, item in enumerate(items)}
    rows = [mmau_hub_row(item, payloads[item["id"]]) for item in items]
    random.Random(seed).shuffle(rows)
    schema = pa.schema([
        ("context", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("instruction", pa.string()), ("choices", pa.list_(pa.string())),
        ("answer", pa.string()), ("other_attributes", pa.string())])
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / MMAU_HUB_FILE,
                   row_group_size=100)
    return payloads


# ------------------------------------------------------------------------------ HF cache

def cache_repo(cache: Path, repo_type: str, repo_id: str, files: Path, commit: str = MAIN,
               ref: str | None = "main") -> Path:
    """Put the files under `files` into the cache as snapshot `commit` (blobs + symlinks)."""
    storage = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = storage / "snapshots" / commit
    for src in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = storage / "blobs" / hashlib.sha256(src.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, blob)
        link = snap / src.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    if ref:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snap

