"""Evaluate an audio language model on MMAR; or re-score a predictions file.

MMAR: 1,000 multiple-choice questions over speech, sound, music and their mixes (github
ddlBoJack/MMAR; data on the hub as BoJack/MMAR, licence CC BY-NC 4.0). The flow, for one model
(`local.eval.runner.evaluate`, the same for every benchmark; `bash run.sh --stage mmar` runs it
for step 0 and each checkpoint of a run through `local.eval.steps`):

  parse    the shared options (`local.eval.options`: model, template, greedy generation, audio
           cut at 30 s, output folder) and MMAR's: --mmar_json, --mmar_audio_dir; a --model
           checkpoint whose save did not finish, or whose weights are cut short, is refused in
           one line (`local.runs.checkpoints.model_problem`: the stage's rule)
  load     the question file (JSON lines or a JSON list), parsed once, one record per item,
           its audio the file `audio_path` names (`local.data.mmar`); an unusable item
           (malformed row, missing or unreadable audio, repeated id) is kept and counted wrong,
           with its reason
  predict  the `--template` prompt, this rank's shard, batched; one log line per answer under
           OUT/partial/, so an interrupted run resumes where it stopped
  score    the official token rule (MMAU's `string_match`) on the `<answer>` content, every
           question in the denominator; tables by modality, category and sub-category; beside
           it, labelled, the official `code/evaluation.py`'s verdict on the predictions file
           (it leaves items without `answer_prediction` out; `local.eval.benchmarks.mmar`)
  write    OUT/predictions.json (the official format: every item with `answer_prediction`),
           OUT/results.json and OUT/results.md

`--score_only FILE` skips load and predict: the official format (our predictions.json, or any
file of the official script's input, JSON list or JSON lines) is checked against the question
file (`--mmar_json`), scored and written beside it (or to `--out`).

Example (CPU, a tiny model, 20 items):
    $ python -m local.tiny --family qwen2_5_omni --out .cache/tiny-omni
    $ python evaluate_mmar.py --model .cache/tiny-omni --out_dir exp/demo/eval/mmar/0 \\
        --mmar_json data/mmar/MMAR-meta.jsonl --limit 20 --max_new_tokens 16
    $ python evaluate_mmar.py --score_only exp/demo/eval/mmar/0/predictions.json \\
        --mmar_json data/mmar/MMAR-meta.jsonl --out r.json

Multi-GPU (one node): torchrun --nproc_per_node 8 evaluate_mmar.py --model ... --out_dir ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from local.eval.benchmarks.mmar import MMAR
from local.eval.runner import evaluate


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """parse -> load -> predict -> score -> write (or --score_only); rank 0 returns the results."""
    return evaluate(MMAR, argv)


if __name__ == "__main__":
    main()
