"""The full MMAU test (9,000 questions, answers withheld): a submission file, no accuracy.

The same prompt, generation and `<answer>` extraction as MMAU test-mini (`mmau`), on
`data/mmau/mmau-test.json` + `data/mmau/test-audios/` (`local.data.mmau`). Its answers are not
public, so nothing is scored here: the run writes `submission.json` and says where to submit it,
the MMAU team's evaluation Space (`local.data.mmau.SUBMISSION_SPACE`).

`submission.json` is the official `evaluation.py` input format (github Sakshi113/MMAU: "the
original MMAU benchmark file with an additional key" holding the prediction): every item of the
question file once, in file order, with all its fields, plus the `<answer>` content under both
`model_prediction` (the key the MMAU README names) and `model_output` (the key its
`evaluation.py` reads), and `response` / `prediction_error`. The Space's own input schema is not
published; this is the format of the official script, which the Space runs, as far as public
evidence shows. A question without a prediction (audio missing or unreadable, a malformed item,
a duplicated id, a run cut short) still has its entry, with an empty prediction and the reason,
so the file always holds every question once.

Example:
    $ python evaluate_mmau.py --split test --model exp/grpo/checkpoint-1000 \\
        --out_dir exp/grpo/eval/mmau_test/1000
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from local.data.mmau import SPLITS, SUBMISSION_SPACE
from local.eval.benchmarks.base import NOT_ASKED, QuestionSet, register
from local.eval.benchmarks.mmau import MMAUBenchmark
from local.eval.benchmarks.question_file import FileQuestions
from local.runs.layout import SUBMISSION_FILE

PREDICTION_KEYS = ("model_prediction", "model_output")  # README's name, evaluation.py's key


class MMAUTestBenchmark(MMAUBenchmark):
    """The full MMAU test (see the module docstring)."""

    name = "mmau_test"
    title = "MMAU test"
    split = SPLITS["test"]
    prepare_sources = " --sources mmau_test"
    prepare_part = "mmau_test"
    scored = False
    protocols = {"mmau": "MMAU test: predictions for the MMAU evaluation Space (answers "
                 "withheld, not scored here)"}
    description = ("Predict the full MMAU test (9,000 questions, answers withheld) and write "
                   "the submission file for the MMAU evaluation Space.")

    def items(self, data: QuestionSet, protocol: str,
              by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Every question once, in file order, its prediction under both keys ("" if none)."""
        items = super().items(data, protocol, by_id)
        for item in items:
            item["model_prediction"] = item["model_output"]
        return items

    def load(self, args: argparse.Namespace) -> FileQuestions:
        """Every question of the file (each gets an entry); `--limit` caps what is asked."""
        limit, args.limit = args.limit, None
        try:
            data = super().load(args)
        finally:
            args.limit = limit
        if limit is not None:
            data.records = data.records[:limit]
        return data

    def prediction_files(self, protocol: str) -> list[str]:
        return [SUBMISSION_FILE]

    def read_predictions(self, path: Path) -> tuple[list[dict[str, Any]], str | None]:
        raise SystemExit("--score_only: the MMAU test answers are withheld, so nothing can be "
                         f"scored here; submit {path} at {SUBMISSION_SPACE}.")

    def submission(self, out_dir: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Count the file's entries, print where it goes; returns what was printed, as data."""
        ids = Counter(str(item.get("id")) for item in items)
        empty = {str(item.get("id")): item.get("prediction_error") or "no prediction"
                 for item in items if not item["model_prediction"]}
        never = sum(1 for item in items if str(item.get("prediction_error") or "")
                    .startswith(NOT_ASKED))
        account = {"benchmark": self.title, "submission": str(out_dir / SUBMISSION_FILE),
                   "questions": len(items), "distinct_ids": len(ids), "never_asked": never,
                   "without_prediction": empty, "submit_at": SUBMISSION_SPACE}
        repeated = "" if len(ids) == len(items) else f", {len(ids)} distinct ids"
        print(f"{self.title}: {len(items)} entries, one per item of the question file"
              f"{repeated}, in {account['submission']} ({len(empty)} without a prediction, "
              "left empty: they count as wrong).", flush=True)
        if never:
            print(f"{never} questions were never asked (--limit, or a run cut short): this file "
                  "is NOT a complete submission; run again without --limit (it resumes) before "
                  "submitting it.", flush=True)
        else:
            print(f"The answers are withheld, so no accuracy is computed here: submit the file "
                  f"at {SUBMISSION_SPACE}.", flush=True)
        return account


MMAU_TEST = register(MMAUTestBenchmark())
