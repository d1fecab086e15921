"""Evaluate an audio language model on MMSU under two protocols; or re-score a predictions file.

Every number is printed with its protocol: `exact` (the reference recipe's, WeST's GRPO example:
the `<answer>` content is the option text) and `letter` (MMSU's official prompt and letter rule,
strict and official figures). The flow, for one model (`local.eval.runner.evaluate`, the same for
every benchmark; `bash run.sh --stage mmsu` runs it for step 0 and each checkpoint of a run
through `local.eval.steps`):

  parse    the shared options (`local.eval.options`) and MMSU's: --mmsu_path, --protocols; a
           --model checkpoint whose save did not finish, or whose weights are cut short, is
           refused in one line (`local.runs.checkpoints.model_problem`: the stage's rule)
  load     the MMSU rows, options by position ('None' padding kept); a malformed row or one
           without audio is kept and counted wrong, with its reason
  predict  one pass per protocol (its own prompt), this rank's shard, batched; one log line per
           answer under OUT/<protocol>/partial/, so an interrupted run resumes where it stopped
  score    each protocol's matcher; tables by category level; the letter protocol also gets
           the official scorer's figure (`local.eval.benchmarks.mmsu`, `mmsu_official`)
  write    OUT/predictions_<protocol>.json, OUT/predictions_letter.jsonl (the official
           scorer's input format), OUT/results.json (headline: the first protocol) and .md

`--score_only FILE` skips load and predict: our predictions JSON (checked against `--mmsu_path`)
or the official JSONL format (letter protocol only, its headline: the file holds letters, not
option text; rows checked one by one, a bad or unanswerable row named, counted wrong and listed,
a repeated id counted once).

Example (CPU, a tiny model, 20 items):
    $ python -m local.tiny --family qwen2_5_omni --out .cache/tiny-omni
    $ python evaluate_mmsu.py --model .cache/tiny-omni --mmsu_path data/mmsu \\
        --out_dir exp/demo/eval/mmsu/0 --limit 20 --max_new_tokens 16
    $ python evaluate_mmsu.py --score_only exp/demo/eval/mmsu/0/predictions_exact.json \\
        --protocols exact --out r.json

Multi-GPU (one node): torchrun --nproc_per_node 8 evaluate_mmsu.py --model ... --out_dir ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from local.eval.benchmarks.mmsu import MMSU
from local.eval.runner import evaluate


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """parse -> load -> predict -> score -> write (or --score_only); rank 0 returns the results."""
    return evaluate(MMSU, argv)


if __name__ == "__main__":
    main()
