"""TRL's completion logs (`completions/completions_<step>.parquet`) as rows the report shows.

Each file needs the columns `step`, `prompt` and `completion`; numeric columns besides
`advantage` are the rewards (TRL writes one per reward function, NaN where a function gave
None), text columns are TRL's extra logs and are not shown (one holding only numbers is a
reward written as text: left out and named). A row whose step is not a whole
number or whose prompt or completion is not text or chat messages is left out; a reward or
advantage that is not a finite number is shown as "-" and left out of the total; both are
named in the report's "Left out" section.

Example:
    >>> from local.core.prompts import TEMPLATES
    >>> question_of(TEMPLATES["default"].format(question="Who speaks?", choices="['a', 'b']"))
    "Who speaks? ['a', 'b']"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.core.prompts import TEMPLATES
from local.core.rewards import completion_text
from local.run_report.files import kind, read_parquet
from local.run_report.left_out import LeftOutList, ReportInputError
from local.run_report.shapes import finite, shown, whole
from local.runs.layout import COMPLETIONS_DIR

REQUIRED = ("step", "prompt", "completion")
ROWS = ("row", "rows")


@dataclass
class Completion:
    """One logged completion: its step, question, text, rewards by name and advantage."""

    step: int
    question: str
    completion: str
    rewards: dict[str, float]
    advantage: float | None


def question_of(prompt_text: str) -> str:
    """The question and options of a templated prompt, without the template's instructions.

    >>> question_of("free text")
    'free text'
    """
    for template in TEMPLATES.values():
        head, _, rest = template.partition("{question}")
        between, _, tail = rest.partition("{choices}")
        if head or not between or between not in prompt_text:
            continue
        question, _, choices = prompt_text.partition(between)
        if tail and choices.endswith(tail):
            choices = choices[: -len(tail)]
        return f"{question.strip()} {choices.strip()}".strip()
    return prompt_text.strip()


def _plain(value: Any) -> Any:
    """Parquet gives nested lists back as numpy arrays (inside dicts too): plain lists again."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _text(value: Any, column: str) -> str:
    """The text of a logged prompt (its last message) or completion."""
    value = _plain(value)
    if column == "prompt" and isinstance(value, list) and value:
        value = value[-1]
    try:
        return completion_text(value)
    except (TypeError, AttributeError) as err:
        raise ReportInputError(f"{column} is {kind(value)}, not text or chat messages") from err


def read_file(path: Path, left_out: LeftOutList) -> list[Completion]:
    """The usable rows of one completions parquet file (the others recorded in `left_out`)."""
    import pandas as pd  # deferred: only a run with completion logs needs it

    frame = read_parquet(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ReportInputError(f"no {', '.join(repr(c) for c in missing)} column (columns: "
                               f"{', '.join(map(str, frame.columns)) or 'none'})")
    names = [str(c) for c in frame.columns if c not in (*REQUIRED, "advantage")
             and pd.api.types.is_numeric_dtype(frame[c])]
    bad_rows, bad_values = [], []
    bad_values += [f"column '{c}' holds numbers as text" for c in frame.columns
                   if c not in (*REQUIRED, "advantage") and str(c) not in names
                   and _numbers_as_text(frame[c])]
    rows = []
    for i, record in enumerate(frame.to_dict("records")):
        step = whole(record["step"])
        try:
            if step is None:
                raise ReportInputError(f"step is {shown(record['step'])}")
            question = question_of(_text(record["prompt"], "prompt"))
            text = _text(record["completion"], "completion")
        except ReportInputError as err:
            bad_rows.append(f"row {i}: {err}")
            continue
        rewards = {n: finite(record[n]) for n in names}
        bad_values += [f"row {i} '{n}' is {shown(record[n])}" for n, v in rewards.items()
                       if v is None]
        advantage = record.get("advantage")
        if advantage is not None and finite(advantage) is None:
            bad_values.append(f"row {i} 'advantage' is {shown(advantage)}")
        rows.append(Completion(step, question, text,
                               {n: v for n, v in rewards.items() if v is not None},
                               finite(advantage)))
    left_out.add_parts(path, bad_rows, ROWS)
    left_out.add_parts(path, bad_values)
    return rows


def _numbers_as_text(column: Any) -> bool:
    """Whether a text column holds only numbers (a reward written as text: not shown)."""
    values = [v for v in column if v is not None]
    if not values or not all(isinstance(v, str) for v in values):
        return False
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def read_completions(run: Path, left_out: LeftOutList) -> list[Completion]:
    """Every usable row of TRL's completions parquet files, by step."""
    folder = run / COMPLETIONS_DIR
    if folder.exists() and not folder.is_dir():
        left_out.add(folder, "a file, not the completions/ folder")
        return []
    rows: list[Completion] = []
    for path in sorted(folder.glob("completions_*.parquet")):
        with left_out.reading(path):
            rows += read_file(path, left_out)
    return sorted(rows, key=lambda r: r.step)
