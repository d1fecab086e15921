"""train.py's log file: rank 0's log, warnings and the Trainer's metrics in `<run>/train.log`.

A multi-day run's log should not depend on `| tee`: `RunLog` keeps the records from the start of
train.py in memory, writes them once the run folder exists and appends from then on (a resumed
run continues the same file); `MetricsLog` adds one line per Trainer log (loss, rewards, KL, ...)
to the file only.

Example:
    >>> from local.train.run_log import RunLog
    >>> with RunLog(enabled=False) as run_log:
    ...     run_log.open("exp/x")   # disabled (a rank other than 0): nothing is written
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from local.util.dist import LOG_FORMAT

METRICS = logging.getLogger("train.metrics")  # train.log only (RunLog)
METRICS.propagate = False
METRICS.setLevel(logging.INFO)


class RunLog:
    """Rank 0's log, also in `<output_dir>/train.log` (appended: a resumed run continues it).

    From the start of `main` the records are kept in memory and written once the run folder is
    there (`open`), so a run refused before that leaves no folder. The handler sits on the root
    logger and on transformers' (which does not propagate); Python warnings (TRL's among them)
    are logged while it is open; the Trainer's metrics (`MetricsLog`) go to the file only, the
    console has them from the progress bar.
    """

    LOGGERS = ("", "transformers")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.handler: logging.Handler | None = None
        self.file: logging.FileHandler | None = None

    def __enter__(self) -> RunLog:
        if self.enabled:
            self.handler = logging.handlers.MemoryHandler(
                capacity=sys.maxsize, flushLevel=logging.CRITICAL + 1)  # never flushes itself
            for name in self.LOGGERS:
                logging.getLogger(name).addHandler(self.handler)
            logging.captureWarnings(True)
        return self

    def open(self, run_dir: Path) -> None:
        """Write the kept records to `run_dir/train.log` and log there from now on."""
        if not self.enabled or self.file is not None:
            return
        self.file = logging.FileHandler(Path(run_dir) / "train.log", mode="a", encoding="utf-8")
        self.file.setFormatter(logging.Formatter(LOG_FORMAT))
        for record in self.handler.buffer:
            self.file.handle(record)
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self.handler)
            logging.getLogger(name).addHandler(self.file)
        METRICS.addHandler(self.file)
        self.handler = None

    def __exit__(self, *_: Any) -> None:
        if not self.enabled:
            return
        for handler in (self.handler, self.file):
            if handler is not None:
                for name in (*self.LOGGERS, METRICS.name):
                    logging.getLogger(name).removeHandler(handler)
                handler.close()
        logging.captureWarnings(False)


class MetricsLog(TrainerCallback):
    """The Trainer's logged metrics (loss, rewards, KL, ...) as one line per log in train.log."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **_: Any) -> None:
        if state.is_world_process_zero and logs:
            METRICS.info("step %d: %s", state.global_step, json.dumps(logs, default=str))
