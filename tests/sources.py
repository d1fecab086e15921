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
* MMAR (github ddlBoJack/MMAR, `MMAR-meta.jsonl` at commit 3bce090a; hub dataset `BoJack/MMAR`):
  one JSON object per line with `id`, `audio_path` "./audio/<file>.wav" (in 46 of 1000 items
  NOT `<id>.wav`), `question`, `choices` (2-6), `answer`, `modality`, `category`,
  `sub-category`, `language`, `source`, `url`, `timestamp`, `thinking`, `cue`, `rubric`. The hub
  holds `MMAR-meta.json` (the same items as a JSON list) and `mmar-audio.tar.gz`, which extracts
  to `audio/<file>.wav`. Evidence: the real file (../shared/data/mmar: `real_mmar_jsonl`), and
  public loaders that call `hf_hub_download(repo_id="BoJack/MMAR",
  filename="mmar-audio.tar.gz", repo_type="dataset")`, extract it and read
  `<dir>/audio/<name>.wav` (`write_mmar_set`, `mmar_hub`).
* Evaluation sets (`mmau_eval_set`, `mmsu_eval_set`, `mmar_eval_set`): the layouts above with clips
  of varied length and pitch, for end-to-end evaluator runs on a tiny model.
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
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.helpers import SHARED_DATA, encode, tone

MAIN = "a" * 40
REAL_MMAU_JSON = SHARED_DATA / "mmau" / "mmau-test-mini.json"


def wav(seconds: float = 0.2, sr: int = 16_000, channels: int = 1, freq: float = 440.0) -> bytes:
    """WAV bytes of a tone."""
    return encode(tone(seconds, freq=freq, sr=sr, channels=channels), sr)


def mp3(seconds: float = 0.2, sr: int = 44_100, channels: int = 2, freq: float = 440.0) -> bytes:
    """MP3 bytes of a tone (libsndfile's MPEG encoder)."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, freq=freq, sr=sr, channels=channels), sr, format="MP3")
    return buffer.getvalue()


WAV = wav()  # the default clip of a row: 0.2 s at 16 kHz
MMSU_WAV = wav(sr=48_000)  # MMSU's clips are 48 kHz


# ------------------------------------------------------------------------------------- AVQA

def avqa_row(i: int = 0, question: str | None = None, answer: str = "B. two",
             audio: bytes | None | dict = WAV, file_name: str | None = None) -> dict:
    """One AVQA row: question i "... in the video {i}?" with choices one/two, answer "B. two".

    `audio`: bytes (embedded as the hub embeds them), None (no audio cell) or a cell as is."""
    question = question or f"How many dogs bark in the video {i}?\nChoices:\nA. one\nB. two"
    file_name = file_name or f"clip{i}.wav"
    cell = {"bytes": audio, "path": file_name} if isinstance(audio, bytes) else audio
    return {"question": question, "answer": answer, "file_name": file_name, "audio": cell}


def audio_dataset(rows: list[dict]) -> datasets.Dataset:
    """Rows -> a Dataset whose `audio` column is a decoding Audio feature, as on the hub.

    (Cast, not encoded: datasets 5 needs torchcodec to encode, which the recipe avoids.)"""
    return datasets.Dataset.from_list(rows).cast_column("audio", datasets.Audio())


def save_splits(root: Path, splits: dict[str, list[dict]]) -> Path:
    """A `DatasetDict.save_to_disk` folder, one sub-folder per split; returns `root`."""
    tables = {name: audio_dataset(rows) for name, rows in splits.items()}
    datasets.DatasetDict(tables).save_to_disk(str(root))
    return root


def save_avqa(root: Path, train: list[dict], val: list[dict] | None = None) -> Path:
    """A DatasetDict.save_to_disk dump like gijs/avqa-processed: train/ (and val/)."""
    return save_splits(root, {"train": train, **({"val": val} if val is not None else {})})


# ------------------------------------------------------------------------------------- MMSU

def mmsu_row(i: int, options: list[str] | None = None, answer_index: object = 1,
             audio: bytes | None = MMSU_WAV, *, key: str | None = None, **columns: object) -> dict:
    """One MMSU row, key "k{i}" (or `key`); `audio` None: no audio cell; `columns`: more or
    other columns (e.g. `category`, `linguistics_sub_discipline`)."""
    key = key or f"k{i}"
    row = {"audio": {"bytes": audio, "path": f"{key}.wav"} if audio is not None else None,
           "key": key, "question": "Which word is stressed?",
           "options": options if options is not None else ["first", "second", "third", "fourth"],
           "answer_index": answer_index, "category": "Perception-Semantics-Syntax-Word order"}
    return {**row, **columns}


def save_mmsu(root: Path, rows: list[dict]) -> Path:
    """The hub snapshot layout: data/train-00000-of-00001.parquet."""
    (root / "data").mkdir(parents=True)
    audio_dataset(rows).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def mmsu_eval_set(root: Path, n: int = 8) -> Path:
    """An MMSU snapshot of `n` rows for evaluation runs: 0.8 s tones at 48 kHz, odd rows two
    choices padded with 'None', row 3 without audio, two categories; keys mmsu-<i>."""
    categories = ["Perception-Phonetics-Pitch-Tone", "Reasoning-Semantics-Meaning-X"]
    rows = [mmsu_row(i, ["Yes", "No", "None", "None"] if i % 2 else ["a", "b", "c", "d"],
                     i % 2, None if i == 3 else wav(0.8, sr=48_000, freq=300 + 50 * i),
                     key=f"mmsu-{i}", question=f"Question {i}: is the tone rising?",
                     category=categories[i % 2]) for i in range(n)]
    return save_mmsu(root, rows)


# ------------------------------------------------------------------------ MMAU question file

def mmau_item(i: int, **overrides: object) -> dict:
    item = {"id": f"m{i}", "audio_id": f"./test-mini-audios/m{i}.wav",
            "question": "Which instrument plays?", "choices": ["Piano", "Violin", "Drums"],
            "answer": "Violin", "dataset": "MusicCaps", "task": "music", "split": "test-mini",
            "category": "Perception", "sub-category": "Instrument", "difficulty": "easy"}
    return {**item, **overrides}


def write_mmau_json(path: Path, items: object) -> Path:
    """A question file holding `items` as they are (a list, or anything for broken files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items))
    return path


def save_mmau(root: Path, items: list[dict], skip_audio: tuple[str, ...] = (),
              clip: Callable[[int, dict], bytes] | None = None) -> Path:
    """root/mmau-test-mini.json + root/test-mini-audios/<audio_id's name>; returns the JSON path.

    `clip(i, item)` gives item i's audio file (default: 0.2 s at 44.1 kHz); items whose id is in
    `skip_audio` get none."""
    (root / "test-mini-audios").mkdir(parents=True)
    for i, item in enumerate(items):
        name = Path(item["audio_id"]).name
        if item["id"] not in skip_audio:
            data = clip(i, item) if clip else wav(sr=44_100)
            (root / "test-mini-audios" / name).write_bytes(data)
    return write_mmau_json(root / "mmau-test-mini.json", items)


def real_mmau_json() -> Path:
    """The real mmau-test-mini.json (1000 items) where the workspace has it; else skip."""
    if not REAL_MMAU_JSON.is_file():
        pytest.skip("../shared/data/mmau/mmau-test-mini.json is absent")
    return REAL_MMAU_JSON


def mmau_eval_questions(n: int) -> list[dict]:
    """`n` question items for evaluation runs: spread over the real test-mini file where the
    workspace has it (every field as released), else synthetic items of the same shape."""
    if REAL_MMAU_JSON.is_file():
        items = json.loads(REAL_MMAU_JSON.read_text())
        return items[::len(items) // n][:n]
    tasks, answers = ["sound", "music", "speech"], ["Low", "High", "Rising"]
    return [mmau_item(i, id=f"syn-{i}", audio_id=f"./test-mini-audios/syn-{i}.wav",
                      question=f"Which tone is clip {i}?", choices=answers,
                      answer=answers[i % 3], task=tasks[i % 3],
                      difficulty=["easy", "medium", "hard"][i % 3],
                      **{"sub-category": f"sub {i % 4}"}) for i in range(n)]


MMAU_EVAL_ITEMS = 20


def mmau_argv(data: tuple[Path, Path], *extra: str) -> list[str]:
    """The evaluator's data options for an `mmau_eval_set` (question file, audio folder)."""
    return ["--mmau_json", str(data[0]), "--mmau_audio_dir", str(data[1]), *extra]


def mmau_eval_set(root: Path, n: int = MMAU_EVAL_ITEMS) -> tuple[Path, Path]:
    """(question file, audio folder) of `n` items under `root`; clip i is a tone of
    0.5 + 0.25 * (i % 5) seconds (0.5 to 1.5 s: the audio-limit tests count on it)."""
    def clip(i: int, _: dict) -> bytes:
        return wav(0.5 + 0.25 * (i % 5), freq=200 + 40 * i)

    path = save_mmau(root, mmau_eval_questions(n), clip=clip)
    return path, root / "test-mini-audios"


def mmau_audio_tar(audio_dir: Path, archive: Path) -> Path:
    """The MMAU release's audio archive: `archive` (.tar.gz) holding the folder `audio_dir`
    under its own name (test-mini-audios/<id>.wav)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(audio_dir, arcname=audio_dir.name)
    return archive


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



# ------------------------------------------------------------------------------------- MMAR

# MMAR's question file (github ddlBoJack/MMAR, MMAR-meta.jsonl at commit 3bce090a, 1000 items),
# in the development workspace only: `real_mmar_jsonl` skips where it is absent.
REAL_MMAR_JSONL = SHARED_DATA / "mmar" / "MMAR-meta.jsonl"
# A real item whose audio file is not `<id>.wav` (46 of the 1000 are so).
MMAR_RENAMED = ("BV1kx411m7UN_2-45_3-15", "./audio/BV1kx411m7UN_00-02-45_00-03-15.wav")


def real_mmar_jsonl() -> Path:
    """The real MMAR-meta.jsonl (1000 items) where the workspace has it; else skip."""
    if not REAL_MMAR_JSONL.is_file():
        pytest.skip("../shared/data/mmar/MMAR-meta.jsonl is absent")
    return REAL_MMAR_JSONL


def mmar_item(i: int, **overrides: object) -> dict:
    """One MMAR item with every field of the real file (values of their real kinds): id
    "mmar-<i>", audio "./audio/mmar-<i>.wav", four choices, answer "Open Grassland"."""
    item = {"id": f"mmar-{i}", "audio_path": f"./audio/mmar-{i}.wav",
            "question": "What type of natural environment might this music originate from",
            "choices": ["Mountain Canyon", "Dense Forest", "Open Grassland", "City Streets"],
            "answer": "Open Grassland", "modality": "music", "category": "Cultural Layer",
            "sub-category": "Professional Knowledge and Reasoning", "language": None,
            "source": "youtube", "url": f"https://www.youtube.com/watch?v=clip{i}",
            "timestamp": "00:01:32,00:02:02", "thinking": "Throat singing suggests a steppe.",
            "cue": ["Throat Singing", "Long Song"],
            "rubric": "[{'name': 'Cue Identification', 'scoring_point': 'Award 1 point'}]"}
    return {**item, **overrides}


def write_mmar_jsonl(path: Path, items: Sequence[object]) -> Path:
    """A question file in MMAR-meta.jsonl's format: one JSON object per line (a str item is
    written as the line itself, for broken files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((i if isinstance(i, str) else json.dumps(i, ensure_ascii=False))
                            + "\n" for i in items), encoding="utf-8")
    return path


def write_mmar_set(root: Path, items: list[dict], skip_audio: tuple[str, ...] = (),
                   clip: Callable[[int, dict], bytes] | None = None) -> Path:
    """root/MMAR-meta.jsonl + root/audio/<audio_path's name> (the release's layout); returns the
    question file. `clip(i, item)` gives item i's audio (default 0.2 s at 16 kHz); items whose
    id is in `skip_audio` get none."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(items):
        if item["id"] not in skip_audio:
            data = clip(i, item) if clip else wav()
            (root / "audio" / Path(item["audio_path"]).name).write_bytes(data)
    return write_mmar_jsonl(root / "MMAR-meta.jsonl", items)


def mmar_eval_questions(n: int) -> list[dict]:
    """`n` MMAR items for evaluation runs: spread over the real file where the workspace has it
    (every field as released; the first is `MMAR_RENAMED`, whose audio is not `<id>.wav`), else
    synthetic items of the same shape (the first named as such an item is)."""
    if REAL_MMAR_JSONL.is_file():
        items = [json.loads(line) for line in REAL_MMAR_JSONL.read_text().splitlines()]
        renamed = next(i for i in items if i["id"] == MMAR_RENAMED[0])
        return [renamed] + [i for i in items[::len(items) // n] if i is not renamed][:n - 1]
    modalities = ["sound", "music", "speech", "mix-sound-speech"]
    layers = ["Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer"]
    answers = ["Low", "High", "Rising", "Falling"]
    items = [mmar_item(i, question=f"Which tone is clip {i}?", choices=answers[:2 + i % 3],
                       answer=answers[i % 2], modality=modalities[i % 4], category=layers[i % 4],
                       **{"sub-category": f"sub {i % 3}"}) for i in range(n)]
    items[0] = {**items[0], "id": MMAR_RENAMED[0], "audio_path": MMAR_RENAMED[1]}
    return items


def mmar_eval_set(root: Path, n: int = 12) -> Path:
    """The question file of `n` items under `root` with their audio (clip i: a tone of 0.5 to
    1.5 s), laid out as the release is (MMAR-meta.jsonl, audio/)."""
    def clip(i: int, _: dict) -> bytes:
        return wav(0.5 + 0.25 * (i % 5), freq=200 + 40 * i)

    return write_mmar_set(root, mmar_eval_questions(n), clip=clip)


def mmar_hub(folder: Path, items: list[dict], clips: dict[str, bytes],
             members: dict[str, bytes] | None = None) -> Path:
    """The hub dataset BoJack/MMAR's files: folder/MMAR-meta.json (the items as a JSON list) and
    folder/mmar-audio.tar.gz holding audio/<name> for each clip ({file name: bytes}); `members`
    adds archive members by path as they are (e.g. "../escape.wav")."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MMAR-meta.json").write_text(json.dumps(items), encoding="utf-8")
    with tarfile.open(folder / "mmar-audio.tar.gz", "w:gz") as tf:
        for name, data in [*((f"audio/{n}", d) for n, d in clips.items()),
                           *(members or {}).items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return folder
