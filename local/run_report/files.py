"""Read one run file as text, JSON, YAML or parquet; a file that cannot be read raises
`ReportInputError` with what is wrong in one line (a folder where the file belongs, not UTF-8,
empty, half written, not JSON...). What the parsed content must look like is `shapes`' job.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "trainer_state.json"
    >>> _ = path.write_text('{"global_step": 3, "log_hi')
    >>> read_json(path)
    Traceback (most recent call last):
    ...
    local.run_report.left_out.ReportInputError: not valid JSON (Unterminated string starting at: \
line 1 column 20; half written?)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from local.run_report.left_out import ReportInputError

MAX_REASON = 160  # characters of a library's error message kept in a reason


def one_line(text: Any, limit: int = MAX_REASON) -> str:
    """`text` on one line, at most `limit` characters.

    >>> one_line("a\\n  b"), one_line("x" * 10, 4)
    ('a b', 'x...')
    """
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def kind(value: Any) -> str:
    """What a parsed value is, in the words of a JSON/YAML reader.

    >>> kind([]), kind({}), kind("a"), kind(None), kind(True), kind(1.5)
    ('an array', 'an object', 'a string', 'null', 'a boolean', 'a number')
    """
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def read_text(path: Path) -> str:
    """The file's UTF-8 text."""
    if path.is_dir():
        raise ReportInputError("a folder, not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ReportInputError(f"not readable ({one_line(err.strerror or err)})") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ReportInputError(f"not UTF-8 text (byte {err.start} is {data[err.start]:#04x})"
                               ) from err


def _not_empty(text: str) -> str:
    if not text.strip():
        raise ReportInputError("empty (being written?)")
    return text


def read_json(path: Path) -> Any:
    """The file's JSON (NaN and Infinity parse; `shapes` leaves them out)."""
    text = _not_empty(read_text(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportInputError(f"not valid JSON ({err.msg}: line {err.lineno} column "
                               f"{err.colno}; half written?)") from err
    except RecursionError as err:
        raise ReportInputError("not usable JSON (nested too deeply)") from err


def read_yaml(path: Path) -> Any:
    """The file's YAML (safe types only)."""
    text = _not_empty(read_text(path))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f": line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ReportInputError(f"not valid YAML ({one_line(problem)}{where})") from err


def read_parquet(path: Path) -> Any:
    """The file as a pandas DataFrame."""
    if path.is_dir():
        raise ReportInputError("a folder, not a file")
    import pandas as pd  # deferred: only a run with completion logs needs it

    try:
        return pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow's errors have no common base: say which
        raise ReportInputError(f"not a readable parquet file ({type(err).__name__}: "
                               f"{one_line(err)}; being written?)") from err
