"""Clips per second of the audio data path: read, resample, feature extraction (+ tokenization).

For each family (real processor classes and settings, from local/demo/tiny.py) three paths over the
same WAV files (44.1 kHz, so every clip is resampled to 16 kHz):

- `default`: `local.core.audio` decode + processor with its default padding (Omni: every
  clip to 300 s,
  30,000 mel frames; Qwen2-Audio: 30 s) - what naive recipes do;
- `ours`:    decode + `local.core.collate.encode_batch` (Omni: padded to the longest clip of
  the batch);
- `ceiling`: the bare feature extractor on already-decoded 16 kHz arrays, at the padding `ours`
  uses (no file reading, no resampling, no tokenization): the most any data path could reach.

Part 1 measures one clip at a time at `--clip_s` seconds (training collates a few prompts);
part 2 an evaluation pass over `--eval_clips` MMAU-like clips (2-30 s, mostly ~10 s), batches of
`--batch`. The three paths are timed batch by batch in turn on the same first `--default_max`
clips (the default path is slow; a shared machine's load then hits all three alike), and `ours`
alone over all clips (the full evaluation pass).

Example:
    $ .venv/bin/python -m bench.data --clips 20 --eval_clips 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from local.core.audio import decode_audio
from local.core.collate import encode_batch, feature_samples, render_prompt
from local.core.models import QWEN2_5_OMNI, QWEN2_AUDIO, ModelFamily
from local.core.prompts import build_messages, build_prompt
from local.demo.tiny import build_processor
from local.demo.tokenizers import build_tokenizer

FILE_RATE = 44_100
FAMILIES: dict[str, ModelFamily] = {"qwen2_audio": QWEN2_AUDIO, "qwen2_5_omni": QWEN2_5_OMNI}


def write_clips(folder: Path, durations: Sequence[float], seed: int = 0) -> list[Path]:
    """WAV files at 44.1 kHz: a tone plus noise, one per duration."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, seconds in enumerate(durations):
        t = np.arange(int(seconds * FILE_RATE)) / FILE_RATE
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
        wave += 0.02 * rng.standard_normal(t.size)
        path = folder / f"clip{i:05d}.wav"
        sf.write(path, wave.astype(np.float32), FILE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def mmau_like_durations(n: int, seed: int = 0) -> list[float]:
    """MMAU test-mini-like lengths: most clips ~10 s, some shorter, a few up to 30 s."""
    rng = np.random.default_rng(seed)
    kind = rng.random(n)
    return [10.0 if k < 0.7 else float(rng.uniform(2, 10)) if k < 0.9
            else float(rng.uniform(10, 30)) for k in kind]


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def make_paths(processor: Any, family: ModelFamily) -> dict[str, Callable[[Sequence[Any]], Any]]:
    """The three data paths as functions of a batch (paths for default/ours, arrays for ceiling)."""
    text = render_prompt(processor, build_messages(build_prompt("What is heard?", ["a", "b"])))

    def decoded(paths: Sequence[Path]) -> list[np.ndarray]:
        return [decode_audio(str(p), max_duration_s=family.max_audio_seconds).array for p in paths]

    def default(paths: Sequence[Path]) -> Any:
        return encode_batch(processor, family, [text] * len(paths), decoded(paths),
                            pad_to_longest=False)

    def ours(paths: Sequence[Path]) -> Any:
        return encode_batch(processor, family, [text] * len(paths), decoded(paths))

    def ceiling(arrays: Sequence[np.ndarray]) -> Any:
        extractor = processor.feature_extractor
        return extractor(list(arrays), sampling_rate=16_000, return_attention_mask=True,
                         max_length=feature_samples(processor, family, arrays),
                         padding="max_length", truncation=True, return_tensors="np")

    return {"default": default, "ours": ours, "ceiling": ceiling}


def interleaved(fns: dict[str, Callable[[Sequence[Any]], Any]],
                inputs: dict[str, Sequence[Any]], batch: int) -> dict[str, float]:
    """Clips/s of each path, batch by batch in turn (a shared machine's load hits all alike)."""
    spent = dict.fromkeys(fns, 0.0)
    for name, fn in fns.items():
        fn(inputs[name][:batch])  # warm-up (filter banks, caches)
    n = len(next(iter(inputs.values())))
    for start in range(0, n, batch):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(inputs[name][start:start + batch])
            spent[name] += time.perf_counter() - t0
    return {name: n / seconds for name, seconds in spent.items()}


def measure(family_name: str, paths: list[Path], batch: int, default_max: int) -> dict[str, float]:
    """The three paths on the same first `default_max` clips; `ours` alone on all clips."""
    family = FAMILIES[family_name]
    processor = build_processor(family_name, build_tokenizer("real"))  # type: ignore[arg-type]
    fns = make_paths(processor, family)
    sample = paths[:default_max]
    arrays = [decode_audio(str(p)).array for p in sample]
    result = interleaved(fns, {"default": sample, "ours": sample, "ceiling": arrays}, batch)
    start = time.perf_counter()
    for chunk in _batches(paths, batch):
        fns["ours"](chunk)
    result["ours_all"] = len(paths) / (time.perf_counter() - start)
    return {**result, "sample": float(len(sample)), "clips": float(len(paths))}


def report(title: str, results: dict[str, dict[str, float]]) -> str:
    lines = [f"**{title}**", "",
             "| family | clips timed | default clips/s | ours clips/s | ceiling clips/s | "
             "ours/default | ours/ceiling | ours, all clips |", "|---|---|---|---|---|---|---|---|"]
    for family, r in results.items():
        lines.append(f"| {family} | {r['sample']:.0f} | {r['default']:.2f} | {r['ours']:.2f} | "
                     f"{r['ceiling']:.2f} | **{r['ours'] / r['default']:.1f}x** | "
                     f"{r['ours'] / r['ceiling']:.2f} | {r['ours_all']:.2f} clips/s "
                     f"({r['clips']:.0f} clips, {r['clips'] / r['ours_all']:.0f} s) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="qwen2_audio,qwen2_5_omni")
    parser.add_argument("--clip_s", type=float, default=10.0, help="part 1 clip length")
    parser.add_argument("--clips", type=int, default=20, help="part 1 clips per path")
    parser.add_argument("--eval_clips", type=int, default=1000, help="part 2 clips")
    parser.add_argument("--batch", type=int, default=8, help="part 2 batch size")
    parser.add_argument("--default_max", type=int, default=48,
                        help="part 2: the default path is timed on this many clips")
    args = parser.parse_args(argv)
    families = args.families.split(",")
    out: dict[str, dict[str, dict[str, float]]] = {"clip": {}, "eval": {}}
    with tempfile.TemporaryDirectory() as tmp:
        clip_paths = write_clips(Path(tmp), [args.clip_s] * args.clips)
        for family in families:
            out["clip"][family] = measure(family, clip_paths, 1, args.clips)
        print(report(f"Part 1: {args.clips} clips of {args.clip_s:g} s, one at a time "
                     f"(44.1 kHz WAV -> 16 kHz -> features)", out["clip"]), flush=True)
        omni = out["clip"].get("qwen2_5_omni")
        if omni:
            ratio = omni["ours"] / omni["default"]
            verdict = "meets" if ratio >= 10 else "does NOT meet"
            print(f"\nOmni data path on {args.clip_s:g} s clips: {ratio:.1f}x the processor "
                  f"default ({verdict} the >= 10x bar)\n", flush=True)
        eval_dir = Path(tmp) / "eval"
        eval_dir.mkdir()
        eval_paths = write_clips(eval_dir, mmau_like_durations(args.eval_clips), seed=1)
        for family in families:
            out["eval"][family] = measure(family, eval_paths, args.batch, args.default_max)
        print(report(f"Part 2: evaluation pass, {args.eval_clips} MMAU-like clips (2-30 s), "
                     f"batches of {args.batch}", out["eval"]), flush=True)
    return out


if __name__ == "__main__":
    main()
