"""MMAU (evaluation): test-mini and the full test; their layout facts and the one reader.

Layout (one folder, `data/mmau/` by default), from the MMAU project (github Sakshi113/MMAU) and
its hub datasets:

    split      question file          audio folder         audio on the hub            answers
    test-mini  mmau-test-mini.json    test-mini-audios/    gamma-lab-umd/MMAU-test-mini  given
    test       mmau-test.json         test-audios/         gamma-lab-umd/MMAU-test       withheld

A question file is a JSON list of items (`id`, `audio_id` "./<audio folder>/<file>.wav",
`question`, `choices`, `answer`, `task`, `difficulty`, `sub-category`, ...). The 9,000 test
questions come without their answers (the MMAU README: "available without their answers"; they
are scored by the MMAU team's evaluation Space), so a test item needs no `answer` and its record
carries `answer=None`. The hub's test audio is one archive, `test-audios.tar.gz` (public
loaders download that file name from gamma-lab-umd/MMAU-test; `local.prepare.mmau` extracts it).

`parse_question_file` is the one parse of a question file: evaluation parses it once and hands
the items to `read_mmau(items=...)` and to its alignment of items and records.

Example:
    >>> from local.data.mmau import SPLITS
    >>> SPLITS["test"].question_file, SPLITS["test"].has_answers
    ('mmau-test.json', False)
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.core.records import Errors, ReadReport, Record, RecordError
from local.data.question_files import records_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """One MMAU question set: where its files are and whether its answers are public."""

    name: str
    question_file: str
    audio_dir: str
    hub_id: str
    has_answers: bool
    title: str


SPLITS = {
    "test-mini": Split("test-mini", "mmau-test-mini.json", "test-mini-audios",
                       "gamma-lab-umd/MMAU-test-mini", True, "MMAU test-mini"),
    "test": Split("test", "mmau-test.json", "test-audios", "gamma-lab-umd/MMAU-test", False,
                  "MMAU test"),
}
QUESTIONS_URL = "https://raw.githubusercontent.com/Sakshi113/MMAU/main/{file}"
TEST_AUDIO_ARCHIVE = "test-audios.tar.gz"
# Where the MMAU team scores the full test (MMAU README, 30 Jan 2026: moved from Eval.ai).
SUBMISSION_SPACE = "https://huggingface.co/spaces/sonalkum/MMAU-Eval"


def parse_question_file(json_path: str | Path, sources: str = "mmau") -> list[Any]:
    """The items of an MMAU question file, parsed once; a clear error for anything else
    (`sources`: the prepare part that writes it, named in the messages)."""
    json_path = Path(json_path)
    try:
        items = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{json_path}: MMAU question file not found; run "
                                f"`bash run.sh --stage prepare --sources {sources}`.") from err
    except json.JSONDecodeError as err:
        raise RecordError(f"{json_path}: not valid JSON ({err}); re-download it.") from err
    if not isinstance(items, list):
        raise RecordError(f"{json_path}: expected a JSON list of questions, got "
                          f"{type(items).__name__}; is this an MMAU question file? Re-download "
                          f"it with `bash run.sh --stage prepare --sources {sources}`, or pass "
                          "the right file.")
    return items


def audio_names(items: Sequence[Any]) -> dict[str, str]:
    """{item id: audio file name} (`audio_id`'s base name) of the items that name one."""
    return {str(item["id"]): Path(item["audio_id"]).name for item in items
            if isinstance(item, dict) and isinstance(item.get("audio_id"), str) and "id" in item}


def _answer(item: dict[str, Any], withheld: bool) -> Any:
    """The item's answer; with `withheld` (the full test) a missing or empty one is None,
    without it a missing one is an error (a Record takes None as "withheld")."""
    answer = item.get("answer")
    if answer in (None, ""):
        if withheld:
            return None
        raise RecordError("answer is missing (only the full test withholds its answers: "
                          "--split test).")
    return answer


def read_mmau(
    json_path: str | Path,
    audio_dir: str | Path | None = None,
    *,
    items: Sequence[Any] | None = None,
    withheld: bool = False,
    errors: Errors = "skip",
    report: ReadReport | None = None,
) -> Iterator[Record]:
    """Yield MMAU records; every original field is kept in `meta` (a deep copy).

    `items`: the question file already parsed (`parse_question_file`), so it is not read again;
    `json_path` still names the source and anchors relative audio paths. Audio resolves by file
    name under `audio_dir` (default: `audio_id` relative to the JSON's folder). A missing audio
    file keeps the record (path set, listed in `report.missing_audio`): evaluation scores it
    wrong rather than dropping it. Rows skipped for bad questions are in `report.reasons`;
    evaluators must count them wrong too. `withheld` (the full test): items without an answer
    are valid, their records carry `answer=None`.

    Example:
        >>> recs = list(read_mmau("data/mmau/mmau-test-mini.json", "data/mmau/test-mini-audios"))
        ... # doctest: +SKIP
    """
    report = report if report is not None else ReadReport()
    json_path = Path(json_path)
    report.source = report.source or f"MMAU ({json_path})"
    sources = "mmau_test" if withheld else "mmau"
    if items is None:
        items = parse_question_file(json_path, sources)
    root = Path(audio_dir) if audio_dir is not None else None

    def make_record(item: Any) -> Record:
        if not isinstance(item, dict):
            raise RecordError(f"item is a {type(item).__name__}, not an object.")
        audio_id = item.get("audio_id")
        if not isinstance(audio_id, str) or not audio_id:
            raise RecordError("audio_id is missing.")
        audio = (root / Path(audio_id).name) if root is not None else (json_path.parent / audio_id)
        return Record(id=item.get("id"), audio=str(audio), question=item.get("question"),
                      choices=item.get("choices"), answer=_answer(item, withheld),
                      meta=copy.deepcopy(item))

    yield from records_of(items, make_record, report, errors,
                          fetch=f"bash run.sh --stage prepare --sources {sources}")
