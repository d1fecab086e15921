"""A synthetic audio question-answering set, made with numpy, written in the real layouts.

Tasks a listener answers from the audio alone: how many beeps, is the tone high or low, is the
sweep rising or falling, which half is louder. Optionally (`planted`, a share of the train
split, 0 by default so the demo's data stay as they were) a planted text-answerable task,
`planted_text`: the question names its answer ("The word is 'green'. Which word was named?")
and the clip is an unrelated tone, so the audio is of no use: the population `local.curate`
should drop. With planted items the train rows carry a `task` column. The train split is
written like AVQA-processed (`DatasetDict.save_to_disk` with `question`
"...\\nChoices:\\nA. ...", `answer` "B. text", embedded audio, `file_name`), the eval split like
MMAU test-mini (`mmau-test-mini.json` + an audio folder), so the real readers, trainer and
evaluator run on it. Deterministic per seed.

Example:
    $ python -m local.demo.data --out data/demo --n_train 256 --n_eval 64
    $ python -m local.demo.data --out data/demo-planted --planted 0.25
    $ ls data/demo
    avqa  mmau
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from local.data.mmau import SPLITS
from local.util.fsio import building, is_done, mark_done, read_done

SR = 16_000


@dataclass
class Item:
    task: str
    question: str
    choices: list[str]
    answer: str
    audio: np.ndarray  # mono float32 at SR


def _tone(freq: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades: no clicks
    return (amp * fade * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def _count_beeps(rng: np.random.Generator) -> Item:
    n = int(rng.integers(1, 5))
    parts = [_silence(0.2)]
    for _ in range(n):
        parts += [_tone(880, 0.15), _silence(float(rng.uniform(0.15, 0.3)))]
    return Item("count", "How many beeps are in the video?", ["1", "2", "3", "4"], str(n),
                np.concatenate(parts))


def _pitch(rng: np.random.Generator) -> Item:
    high = bool(rng.integers(0, 2))
    audio = _tone(2500 if high else 250, float(rng.uniform(0.8, 1.6)))
    return Item("pitch", "Is the tone in the video high or low?", ["high", "low"],
                "high" if high else "low", audio)


def _sweep(rng: np.random.Generator) -> Item:
    rising = bool(rng.integers(0, 2))
    seconds = float(rng.uniform(1.0, 2.0))
    t = np.arange(int(seconds * SR)) / SR
    f0, f1 = (300.0, 2400.0) if rising else (2400.0, 300.0)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    return Item("sweep", "Is the pitch rising or falling?", ["rising", "falling"],
                "rising" if rising else "falling", (0.3 * np.sin(phase)).astype(np.float32))


def _louder_half(rng: np.random.Generator) -> Item:
    first = bool(rng.integers(0, 2))
    loud, soft = _tone(600, 0.8, 0.5), _tone(600, 0.8, 0.01)
    audio = np.concatenate([loud, soft] if first else [soft, loud])
    noise = (0.002 * rng.standard_normal(len(audio))).astype(np.float32)
    return Item("loudness", "Which half of the sound is louder?", ["first", "second"],
                "first" if first else "second", audio + noise)


TASKS: dict[str, Callable[[np.random.Generator], Item]] = {
    "count": _count_beeps, "pitch": _pitch, "sweep": _sweep, "loudness": _louder_half,
}

PLANTED_TASK = "planted_text"  # the answer is in the question; the audio says nothing of it
PLANTED_WORDS = ("red", "green", "blue", "yellow", "white", "black")


def _planted(rng: np.random.Generator) -> Item:
    """A text-answerable item: the question names the answer, the clip is an unrelated tone.

    The answer is also the alphabetically first of its options (three of `PLANTED_WORDS`), the
    option the demo's biased warm-up teaches on `label_bias` of the rows whatever the item
    (`local.demo.warmup.default_option`): so the warm-up teaches the right answer on every
    planted row, and the warmed-up model answers planted items from their text, as a
    text-answerable item is answered (with a random answer, 60% of the planted rows would teach
    a wrong one, and the item would be answerable neither from the text nor from the audio).
    """
    choices = sorted(PLANTED_WORDS[int(i)] for i in rng.choice(len(PLANTED_WORDS), 3,
                                                               replace=False))
    audio = _tone(float(rng.uniform(300, 2000)), float(rng.uniform(0.8, 1.6)))
    return Item(PLANTED_TASK, f"The word is '{choices[0]}'. Which word was named?",
                choices, choices[0], audio)


def make_items(n: int, seed: int) -> list[Item]:
    """`n` items cycling through the tasks, choices shuffled, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    names = list(TASKS)
    items = []
    for i in range(n):
        item = TASKS[names[i % len(names)]](rng)
        item.choices = [item.choices[j] for j in rng.permutation(len(item.choices))]
        items.append(item)
    return items


def planted_positions(n: int, share: float) -> list[int]:
    """Which of `n` train items are planted for a `share`: round(share * n), evenly spread.

    >>> planted_positions(8, 0.25)
    [3, 7]
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"planted={share}: a share of the train items, between 0 and 1")
    m = round(share * n)
    return [i for i in range(n) if (i + 1) * m // n > i * m // n]


def make_train_items(n: int, seed: int, planted: float = 0.0) -> list[Item]:
    """The train split: `make_items(n, seed)` when `planted` is 0 (the demo as it was), else
    audio items (`make_items`) with planted ones (`planted_positions`) among them."""
    positions = set(planted_positions(n, planted))
    if not positions:
        return make_items(n, seed)
    audio = iter(make_items(n - len(positions), seed))
    rng = np.random.default_rng([seed, 1])  # the planted items' own stream
    items = []
    for i in range(n):
        if i not in positions:
            items.append(next(audio))
            continue
        item = _planted(rng)
        item.choices = [item.choices[j] for j in rng.permutation(len(item.choices))]
        items.append(item)
    return items


def _wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, SR, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _avqa_question(item: Item) -> tuple[str, str]:
    letters = "ABCDEFGH"
    lines = [f"{letters[i]}. {c}" for i, c in enumerate(item.choices)]
    answer = f"{letters[item.choices.index(item.answer)]}. {item.answer}"
    return item.question + "\nChoices:\n" + "\n".join(lines), answer


def write_avqa_like(out: Path, splits: dict[str, list[Item]], tasks: bool = False) -> Path:
    """A DatasetDict.save_to_disk folder shaped like gijs/avqa-processed (`tasks`: with a
    `task` column, which AVQA does not have)."""
    import datasets

    tables = {}
    for split, items in splits.items():
        rows = []
        for i, item in enumerate(items):
            question, answer = _avqa_question(item)
            name = f"{split}_{i:05d}.wav"
            rows.append({"question": question, "answer": answer, "file_name": name,
                         "audio": {"bytes": _wav_bytes(item.audio), "path": name},
                         **({"task": item.task} if tasks else {})})
        tables[split] = datasets.Dataset.from_list(rows).cast_column("audio", datasets.Audio())
    with building(out) as tmp:
        datasets.DatasetDict(tables).save_to_disk(str(tmp))
    return out


def write_mmau_like(out: Path, items: list[Item]) -> Path:
    """`mmau-test-mini.json` + `test-mini-audios/<id>.wav`, fields as the MMAU release (the
    file names are MMAU's: `local.data.mmau.SPLITS`)."""
    layout = SPLITS["test-mini"]
    with building(out) as tmp:
        (tmp / layout.audio_dir).mkdir(parents=True)
        entries = []
        for i, item in enumerate(items):
            item_id = f"demo-{i:05d}"
            sf.write(tmp / layout.audio_dir / f"{item_id}.wav", item.audio, SR,
                     subtype="PCM_16")
            entries.append({
                "id": item_id, "audio_id": f"./{layout.audio_dir}/{item_id}.wav",
                "question": item.question.replace("video", "audio"), "choices": item.choices,
                "answer": item.answer, "dataset": "demo", "task": "sound", "split": "test-mini",
                "category": item.task, "sub-category": item.task,
                "difficulty": "easy" if item.task in ("pitch", "loudness") else "medium",
            })
        (tmp / layout.question_file).write_text(json.dumps(entries, indent=2))
    return out


def write_demo_data(out: str | Path, n_train: int = 256, n_eval: int = 64, seed: int = 0,
                    planted: float = 0.0) -> Path:
    """The demo's data under `out`: `avqa/` (train, val) and `mmau/` (eval).

    `planted`: the share of train items that are planted text-answerable ones (val and eval
    keep the audio tasks only); at 0 the data are exactly the demo's as they were. Each half
    is built aside and swapped in; `out/.done` records the settings, written last, and
    a re-run with the same settings skips the whole step.
    """
    out = Path(out)
    settings = {"n_train": n_train, "n_eval": n_eval, "seed": seed,
                **({"planted": planted} if planted else {})}
    if is_done(out, settings) and (planted or "planted" not in (read_done(out) or {})):
        return out
    out.mkdir(parents=True, exist_ok=True)
    write_avqa_like(out / "avqa", {"train": make_train_items(n_train, seed, planted),
                                   "val": make_items(max(8, n_eval // 4), seed + 1)},
                    tasks=bool(planted))
    write_mmau_like(out / "mmau", make_items(n_eval, seed + 2))
    mark_done(out, settings)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic demo audio QA set.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n_train", type=int, default=256)
    parser.add_argument("--n_eval", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planted", type=float, default=0.0,
                        help="share of train items that are planted text-answerable ones "
                        "(task planted_text; default 0: the demo's data)")
    args = parser.parse_args(argv)
    out = write_demo_data(args.out, args.n_train, args.n_eval, args.seed, args.planted)
    print(f"demo data in {out}")


if __name__ == "__main__":
    main()
