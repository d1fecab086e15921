"""An evaluation's results.json as a run folder holds them, for every reader of `eval/<bench>/`.

A results file (written by `local.eval.results`) holds one protocol (MMAU: `protocol`,
`accuracy`, `tables`, ...) or several under `protocols` (MMSU); `protocols_of` gives both the
same shape. The evaluation summary (`local.eval.summary`), the run report (`local.run_report`)
and the demo read them through here.

Example:
    >>> from local.runs.eval_results import protocols_of
    >>> list(protocols_of({"protocol": "mmau", "accuracy": 50.0}))
    ['mmau']
    >>> list(protocols_of({"protocols": {"exact": {}, "letter": {}}}))
    ['exact', 'letter']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from local.runs.layout import NO_AUDIO_SUFFIX, RESULTS_FILE

Results = dict[str, Any]
# The per-group table the audio contribution is shown for, the first a result has: MMAU's by
# task, MMSU's by level-1 category, MMAR's by modality (the tables `local.eval.benchmarks` score
# into results.json).
CONTRIBUTION_TABLES = {"task": "task", "level 1": "level 1 category", "modality": "modality"}


def protocols_of(result: Results) -> dict[str, Results]:
    """{protocol: its result} for an MMAU (single) or MMSU (several protocols) results file."""
    if "protocols" in result:
        return result["protocols"]
    return {result.get("protocol", "accuracy"): result}


def collect(eval_dir: str | Path) -> list[tuple[int, Results]]:
    """(step, results) for every `<step>/results.json` under `eval_dir`, by step."""
    found = []
    for path in Path(eval_dir).glob(f"*/{RESULTS_FILE}"):
        if path.parent.name.isdigit():
            found.append((int(path.parent.name), _read(path)))
    return sorted(found, key=lambda pair: pair[0])


def collect_no_audio(eval_dir: str | Path) -> tuple[dict[int, Results], list[str]]:
    """({step: results} of every `<step>-no_audio/results.json` made with --no_audio, notes on
    those left out (made with audio: `settings.no_audio` false)."""
    found: dict[int, Results] = {}
    notes = []
    for path in Path(eval_dir).glob(f"*{NO_AUDIO_SUFFIX}/{RESULTS_FILE}"):
        step = path.parent.name.removesuffix(NO_AUDIO_SUFFIX)
        if not step.isdigit():
            continue
        result = _read(path)
        if not result.get("settings", {}).get("no_audio", False):
            notes.append(f"{path.parent.name}/ left out: its results were not made with "
                         "--no_audio (settings.no_audio is false)")
            continue
        found[int(step)] = result
    return dict(sorted(found.items())), notes


def _read(path: Path) -> Results:
    return json.loads(path.read_text(encoding="utf-8"))
