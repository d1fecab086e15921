"""Evaluate an audio language model on MMAU test-mini (or the full test); or re-score a file.

The flow, for one model (`local.eval.runner.evaluate`, the same for every benchmark; `bash run.sh
--stage mmau` runs it for step 0 and each checkpoint of a run through `local.eval.steps`):

  parse    the shared options (`local.eval.options`: model, template, greedy generation, audio
           cut at 30 s, output folder) and MMAU's: --mmau_json, --mmau_audio_dir; a --model
           checkpoint whose save did not finish, or whose weights are cut short, is refused in
           one line (`local.runs.checkpoints.model_problem`: the stage's rule)
  load     the question file, one record per item; an unusable item (malformed row, missing or
           unreadable audio, repeated id) is kept and counted wrong, with its reason
  predict  the `--template` prompt, this rank's shard, batched; one log line per answer under
           OUT/partial/, so an interrupted run resumes where it stopped; a WAV shorter than its
           header says is answered on what it holds and listed (results `audio_incomplete`)
  score    MMAU's official token rule on the `<answer>` content; tables by task, difficulty and
           sub-category (`local.eval.benchmarks.mmau`)
  write    OUT/predictions.json (the official format: every item with `model_output`),
           OUT/results.json and OUT/results.md

`--score_only PRED.json` skips load and predict: the file is checked against the question file
(`--mmau_json`), scored and written beside it (or to `--out`).

`--split test`: the full MMAU test (9,000 questions, answers withheld; `local.eval.benchmarks.
mmau_test`): load and predict as above on data/mmau/mmau-test.json + data/mmau/test-audios, then
OUT/submission.json (every question once, the official input format) and where to submit it;
nothing is scored here.

Example (CPU, a tiny model, 20 items):
    $ python -m local.tiny --family qwen2_5_omni --out .cache/tiny-omni
    $ python evaluate_mmau.py --model .cache/tiny-omni --out_dir exp/demo/eval/mmau/0 \\
        --mmau_json data/mmau/mmau-test-mini.json --mmau_audio_dir data/mmau/test-mini-audios \\
        --limit 20 --max_new_tokens 16
    $ python evaluate_mmau.py --score_only exp/demo/eval/mmau/0/predictions.json --out r.json

Multi-GPU (one node): torchrun --nproc_per_node 8 evaluate_mmau.py --model ... --out_dir ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from local.eval.benchmarks.mmau import MMAU
from local.eval.benchmarks.mmau_test import MMAU_TEST
from local.eval.runner import evaluate

BY_SPLIT = {"test-mini": MMAU, "test": MMAU_TEST}


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """parse -> load -> predict -> score -> write (or --score_only); rank 0 returns the results.

    `--split` picks the benchmark (test-mini: scored; test: a submission file).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argparse.ArgumentParser(add_help=False)
    split.add_argument("--split", choices=sorted(BY_SPLIT), default="test-mini")
    known, _ = split.parse_known_args(argv)
    return evaluate(BY_SPLIT[known.split], argv)


if __name__ == "__main__":
    main()
