"""Write a run's report: `<run>/report.md` and its PNGs under `<run>/plots/`.

The single call behind `bash run.sh --stage report`. Reads the run folder
(`local.run_report.run_folder`), turns it into figures (`series`), draws them (`plots`) and writes
the sections (`markdown`). Works on a finished run, on one still going (the newest checkpoint's
log, the completions and evaluations so far) and on one without any evaluation yet; a folder
with nothing to report is a one-line error. A run file that is not what the report expects
(half written, an array where an object belongs, NaN or text where a number belongs) is one
warning line naming it and what is wrong; the report is written without it and lists it under
"Left out". A place the report cannot be written (`--out` under a file, a read-only folder) is
one line naming the path, exit status 1. The demo builds its report from the same pieces
(`local.demo.demo_report`).

Example:
    $ python -m local.run_report --run_dir exp/grpo           # exp/grpo/report.md, exp/grpo/plots/
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.core.rewards import resolve_reward_weights
from local.run_report import markdown, output
from local.run_report.files import one_line
from local.run_report.left_out import record
from local.run_report.markdown import SECTIONS, Section
from local.run_report.output import ReportOutputError
from local.run_report.plots import DATA_FILE, draw_all
from local.run_report.run_folder import RunFolder, read_run
from local.run_report.series import (
    Figure,
    accuracy_figure,
    audio_figure,
    audio_steps,
    spread_by_step,
    training_figures,
)
from local.runs.layout import RUN_RECORD
from local.util.fsio import atomic_write_text

logger = logging.getLogger(__name__)


def reward_names_and_weights(config: dict[str, Any]) -> tuple[list[str], list[float]]:
    """The rewards a run used, resolved from its config as train.py resolves them.

    >>> reward_names_and_weights({"template": "default", "reward_funcs": None,
    ...                           "reward_weights": None, "robust_rewards": False})
    (['accuracy', 'format'], [1.0, 1.0])
    """
    return resolve_reward_weights(config["template"], robust=bool(config.get("robust_rewards")),
                                  reward_funcs=config.get("reward_funcs"),
                                  reward_weights=config.get("reward_weights"))


def resolved_settings(run: RunFolder) -> dict[str, Any]:
    """The training arguments, the model, and the rewards as train.py resolved them (rewards
    that do not resolve are left out: the totals then weigh each reward 1)."""
    settings = {**run.training,
                "model_name_or_path": ((run.config or {}).get("model") or {}).get(
                    "model_name_or_path")}
    if "template" in settings:
        try:
            names, weights = reward_names_and_weights(settings)
            settings["reward_funcs"], settings["reward_weights"] = names, weights
        except (ValueError, KeyError) as err:  # a template or reward this checkout lacks
            settings.pop("reward_funcs", None)
            settings.pop("reward_weights", None)
            record(run.left_out, run.path / RUN_RECORD,
                   f"rewards not resolved ({one_line(err)}): totals weigh each reward 1")
    return settings


@dataclass
class Report:
    """A run's report before it is written: what was read, the figures drawn, the sections."""

    run: RunFolder
    settings: dict[str, Any]  # `resolved_settings`
    figures: list[Figure]  # those with data, drawn
    drawn: dict[str, Path]
    sections: list[Section]
    md_path: Path

    def image(self, name: str) -> str:
        """The markdown image of drawn figure `name`, relative to the report."""
        figure = next(f for f in self.figures if f.name == name)
        return markdown.image(figure, self.drawn, self.md_path.parent)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    def markdown(self, title: str | None = None, intro: str | None = None,
                 sections: Sequence[Section] | None = None) -> str:
        return markdown.render(
            title or f"Run report: {self.run.path}",
            intro if intro is not None else INTRO.format(run=self.run.path),
            self.sections if sections is None else sections)


INTRO = ("Written by `python -m local.run_report --run_dir {run}` (`bash run.sh --stage report`) "
         "from the run's own files; nothing is typed in by hand. Run it again any time: a run "
         "that is still going gets its newest data.")


def build(run_dir: str | Path, md_path: str | Path | None = None,
          plot_dir: str | Path | None = None, extra: Sequence[Figure] = ()) -> Report:
    """Read the run, draw its figures into `plot_dir` (default `<run>/plots`) and make the
    sections for a report at `md_path` (default `<run>/report.md`; links are relative to it).
    `extra`: more figures to draw beside them (the demo's warm-up loss)."""
    md_path = Path(md_path) if md_path else Path(run_dir) / "report.md"
    plot_dir = Path(plot_dir) if plot_dir else Path(run_dir) / "plots"
    if Path(run_dir).is_dir():  # (no run folder: read_run says so)
        output.check(md_path)
        output.check(plot_dir, folder=True)
    run = read_run(run_dir)
    settings = resolved_settings(run)
    weights = (dict(zip(settings["reward_funcs"], settings["reward_weights"], strict=True))
               if settings.get("reward_funcs") and settings.get("reward_weights") else None)
    group = int(settings.get("num_generations") or 0)
    spread = spread_by_step(run.completions, group, weights) if group else {}
    history = run.log.history if run.log else []
    training = [f.with_data() for f in training_figures(history, spread)] if history else []
    evals = {f.name: f.with_data() for f in [
        *(accuracy_figure(b) for b in run.evals if b.results),
        *(audio_figure(b) for b in run.evals if audio_steps(b))]}
    figures = [*training, *evals.values(), *(f.with_data() for f in extra)]
    with output.writing(plot_dir / DATA_FILE):
        drawn = draw_all(figures, plot_dir)
    md_dir = md_path.parent
    bodies = {
        "overview": markdown.overview(run),
        "training": markdown.training(run, training, drawn, md_dir, spread),
        "accuracy": markdown.accuracy(run, evals, drawn, md_dir),
        "audio": markdown.audio(run, evals, drawn, md_dir),
        "samples": markdown.samples(run, weights, per_step=max(8, 2 * group)),
        "config": markdown.config(run, settings),
        "left_out": markdown.left_out(run),
    }
    sections = [Section(key, heading, bodies[key]) for key, heading in SECTIONS.items()]
    return Report(run, settings, [f for f in figures if f.name in drawn], drawn, sections,
                  md_path)


def write_report(run_dir: str | Path, md_path: str | Path | None = None,
                 plot_dir: str | Path | None = None) -> Path:
    """Build and write the report; returns its path."""
    report = build(run_dir, md_path, plot_dir)
    with output.writing(report.md_path):
        path = atomic_write_text(report.md_path, report.markdown())
    logger.info("report: %s (%d plots)", path, len(report.drawn))
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", type=Path, required=True,
                        help="the run folder train.py writes, e.g. exp/grpo")
    parser.add_argument("--out", type=Path, default=None,
                        help="the report (default: <run_dir>/report.md)")
    parser.add_argument("--plot_dir", type=Path, default=None,
                        help="where the PNGs go (default: <run_dir>/plots)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        path = write_report(args.run_dir, args.out, args.plot_dir)
    except ReportOutputError as err:
        raise SystemExit(str(err)) from None
    print(f"report: {path}", flush=True)
    return path
