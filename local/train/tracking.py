"""Experiment tracking: TensorBoard or W&B through `report_to`, plus sample completions.

`report_to` (TrainingArguments) picks the integrations: the recipe's default is `tensorboard`
(event files under `<output_dir>/runs/`, no network), `wandb` works when wandb is installed
(`pip install wandb`; run name from `--run_name`, project from `WANDB_PROJECT`, default
`audio-grpo`), `none` turns them off. Every logged scalar (each reward, KL, completion length,
clipped fraction, learning rate, grad norm, ...) goes to whichever is on.

TRL 1.16 sends its table of sampled completions to W&B and Trackio only
(`GRPOTrainer.log`: `logging_backends`), and always to `<output_dir>/completions/*.parquet`.
`CompletionSamples` puts those same tables into TensorBoard as text (one markdown table per
logged step, tag `completions`), so a TensorBoard user sees what the model wrote next to the
curves. TRL writes step N's parquet after the step's `on_log`, so each table is written at the
next log (or at the end of training), under its own step.

Example:
    >>> trainer.add_callback(CompletionSamples(trainer, rows=4))              # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from local.runs.layout import COMPLETIONS_DIR

DEFAULT_WANDB_PROJECT = "audio-grpo"


def wants(report_to: Any, integration: str) -> bool:
    """True when `report_to` (a string or a list, after TrainingArguments' parsing) names it."""
    chosen = [report_to] if isinstance(report_to, str) else list(report_to or [])
    return integration in chosen or "all" in chosen


def set_up_tracking(report_to: Any) -> None:
    """Environment defaults of the chosen integrations (W&B's project name)."""
    if wants(report_to, "wandb"):
        os.environ.setdefault("WANDB_PROJECT", DEFAULT_WANDB_PROJECT)


def _cell(value: Any, width: int = 300) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[:width] + " ..."


def completions_markdown(table: pd.DataFrame, rows: int) -> str:
    """The first `rows` completions of one step as a markdown table (every column TRL logged)."""
    shown = table.head(rows)
    columns = [c for c in shown.columns if c != "step"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in shown.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)


class CompletionSamples(TrainerCallback):
    """Writes TRL's per-step completion tables into TensorBoard as text (rank 0 only)."""

    def __init__(self, trainer: Any, rows: int = 8) -> None:
        self.trainer, self.rows = trainer, rows
        self.written: set[Path] = set()
        self.writer: Any = None  # the TensorBoard callback's writer, kept past its on_train_end

    def _writer(self) -> Any:
        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                self.writer = callback.tb_writer
        return self.writer

    def _flush(self, args: Any, state: Any) -> None:
        writer = self._writer()
        folder = Path(args.output_dir) / COMPLETIONS_DIR
        if writer is None or not state.is_world_process_zero or not folder.is_dir():
            return
        for path in sorted(folder.glob("completions_*.parquet")):
            if path in self.written:
                continue
            table = pd.read_parquet(path)
            step = int(path.stem.rsplit("_", 1)[1])
            writer.add_text("completions", completions_markdown(table, self.rows), step)
            self.written.add(path)
        writer.flush()

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._flush(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The TensorBoard callback has closed its writer by now; torch's SummaryWriter reopens a
        # file on the next add_text, which we close again once the last table is in.
        self._flush(args, state)
        if self.writer is not None:
            self.writer.close()
