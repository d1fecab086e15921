"""Logs are rank 0's: other ranks show warnings once per kind, errors always, never what every
rank reads alike (the readers' warnings), and nothing below WARNING (`local.util.dist`)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from local.core.records import ReadReport
from local.data.mmsu import read_mmsu
from local.util.dist import ReplicaLogFilter
from tests.helpers import REPO
from tests.sources import MMSU_WAV, mmsu_row, save_mmsu

READERS = "local.data.mmsu"  # a reader's logger (SHARED_LOGGERS covers local.data.*)


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


# (logger, level, template, args) in order; what rank 1 lets through (message text)
CASES = [
    pytest.param([("local.eval.runner", logging.INFO, "loaded %s", ("m",))], [],
                 id="info-never"),
    pytest.param([("local.eval.generation", logging.WARNING, "%s: %s; scored wrong.", ("a", "x")),
                  ("local.eval.generation", logging.WARNING, "%s: %s; scored wrong.", ("b", "y")),
                  ("local.eval.generation", logging.WARNING, "%s: %s; scored wrong.", ("c", "z"))],
                 ["a: x; scored wrong."], id="a-kind-of-warning-once"),
    pytest.param([("local.eval.runner", logging.WARNING, "rank %d: %d clips were cut", (1, 2)),
                  ("local.eval.generation", logging.WARNING, "%s: %s; scored wrong.", ("b", "y"))],
                 ["rank 1: 2 clips were cut", "b: y; scored wrong."], id="two-kinds-each-once"),
    pytest.param([(READERS, logging.WARNING, "%s: %d audio files not found", ("q.json", 3)),
                  ("local.core.records", logging.WARNING, "%s: skipping %s: %s", ("f", "r", "e"))],
                 [], id="what-every-rank-reads-alike-is-rank-0s"),
    pytest.param([("local.eval.runner", logging.ERROR, "broken %s", ("x",)),
                  ("local.eval.runner", logging.ERROR, "broken %s", ("y",)),
                  (READERS, logging.ERROR, "unreadable %s", ("f",))],
                 ["broken x", "broken y", "unreadable f"], id="errors-always"),
]


@pytest.mark.parametrize(("records", "shown"), CASES)
def test_what_a_replica_rank_logs(records: list, shown: list[str]) -> None:
    rank1 = ReplicaLogFilter(rank=1)
    passed = [r for r in (_record(n, lvl, m, *a) for n, lvl, m, a in records) if rank1.filter(r)]
    assert [r.getMessage().removeprefix("[rank 1] ").split(" [")[0] for r in passed] == shown
    assert all(r.getMessage().startswith("[rank 1] ") for r in passed)


def _run(rank: str) -> str:
    code = (
        "import logging\n"
        "from local.util.dist import setup_logging\n"
        f"setup_logging({rank})\n"
        f"for i in range(5): logging.getLogger('{READERS}').warning('row %d has no audio', i)\n"
        "for i in range(5): logging.getLogger('local.eval.generation').warning('%d: bad', i)\n"
        "logging.getLogger('local.eval.runner').info('loaded')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_setup_logging_on_rank_0_and_on_another_rank() -> None:
    main = _run("0")
    assert main.count("has no audio") == 5 and main.count(": bad") == 5 and "loaded" in main
    other = _run("1")
    assert "has no audio" not in other and "loaded" not in other
    assert other.count(": bad") == 1 and "[rank 1] 0: bad" in other
    assert "later ones of this kind on rank 1 not shown" in other


def test_mmsu_rows_without_audio_are_one_warning_not_one_per_row(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """5,000 MMSU rows can lack audio: the reader says how many in one line (as MMAU's does)."""
    root = save_mmsu(tmp_path / "mmsu", [mmsu_row(i, audio=None if i % 2 else MMSU_WAV)
                                         for i in range(7)])
    report = ReadReport()
    with caplog.at_level(logging.WARNING, logger=READERS):
        records = list(read_mmsu(root, report=report))
    assert len(records) == 7 and report.missing_audio == ["k1", "k3", "k5"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "3 rows without audio (e.g. k1)" in warnings[0] and "scored wrong" in warnings[0]
