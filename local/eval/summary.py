"""One table across a run's steps: `<eval_dir>/summary.md` and `summary.png` (accuracy vs step).

Reads `<eval_dir>/<step>/results.json` for every numeric step folder (0 = the starting model).
MMAU results have one protocol; MMSU results list theirs under `protocols`, each with its own
column and curve, so no number appears without the protocol that produced it.

Audio contribution: a step also evaluated with `--no_audio` (the prompt has no audio part and no
audio features are passed; `run.sh --with_no_audio true` does it for step 0 and the last step)
has its results in `<eval_dir>/<step>-no_audio/` (`local.runs.layout.no_audio_dir`; the steps
are read by `local.runs.eval_results`). summary.md then adds, per protocol, accuracy with audio,
without, and the difference (with - without, in points: what the audio adds), overall and per
group (`CONTRIBUTION_TABLES`: MMAU per task, MMSU per level-1 category); summary.png marks the
text-only points. Many MMAU/MMSU items are answerable from the text alone, so a number without
this says little about listening.

The title names the question set: `--title`, else the `--set_title` the steps were evaluated
with (results.json `set_title`), else the benchmark; each `--note TEXT` is a line under it. Under
the table: steps evaluated on different question sets, and per step the items scored on
truncated audio (a WAV shorter than its header says; listed in that step's results.md).

Example:
    $ python -m local.eval.summary exp/grpo/eval/mmau --note "step 0: the base model"
    >>> from local.eval.summary import write_summary                          # doctest: +SKIP
    >>> write_summary("exp/grpo/eval/mmau")                                   # doctest: +SKIP
    PosixPath('exp/grpo/eval/mmau/summary.md')
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from local.runs.eval_results import (
    CONTRIBUTION_TABLES,
    Results,
    collect,
    collect_no_audio,
    protocols_of,
)
from local.runs.layout import NO_AUDIO_SUFFIX, SUMMARY_FILE, SUMMARY_PLOT
from local.util.fsio import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)


def _protocol_names(results: Sequence[Results]) -> list[str]:
    names: list[str] = []
    for result in results:
        names += [p for p in protocols_of(result) if p not in names]
    return names


def default_title(rows: Sequence[tuple[int, Results]], eval_dir: Path) -> str:
    """'<question set> across steps (<eval_dir>)': the first `--set_title` the steps were
    evaluated with (results.json `set_title`), else the benchmark's name."""
    name = next((r["set_title"] for _, r in rows if r.get("set_title")), None)
    return f"{name or rows[0][1].get('benchmark', eval_dir.name)} across steps ({eval_dir})"


def incomplete_audio(result: Results) -> dict[str, str]:
    """{id: reason} of the items scored on truncated audio (`audio_incomplete`, per protocol
    for MMSU: the same clips)."""
    found: dict[str, str] = {}
    for per in [result, *protocols_of(result).values()]:
        found.update(per.get("audio_incomplete") or {})
    return found


def _table_notes(rows: Sequence[tuple[int, Results]]) -> list[str]:
    """Lines under the main table: steps evaluated on other question sets, steps with items
    scored on truncated audio."""
    lines = []
    titles = {step: r.get("set_title") or r.get("benchmark", "?") for step, r in rows}
    if len(set(titles.values())) > 1:
        lines.append("**The steps' question sets differ (compare with care): "
                     + "; ".join(f"step {s}: {t}" for s, t in titles.items()) + ".**")
    for step, result in rows:
        cut = incomplete_audio(result)
        if cut:
            lines.append(f"- step {step}: {len(cut)} items scored on truncated audio (listed in "
                         f"{step}/results.md)")
    return lines


def render(rows: Sequence[tuple[int, Results]], title: str,
           no_audio: Mapping[int, Results] | None = None, notes: Sequence[str] = (),
           header: Sequence[str] = ()) -> str:
    """The markdown: the title, each `header` line under it ("**Note:** ..."), one row per step
    (model, one accuracy column per protocol, unanswered counts), then, with `no_audio`
    results, the audio-contribution tables (`notes`: lines about them)."""
    names = _protocol_names([r for _, r in rows])
    head = ["step", "model", *(f"accuracy (%) [{p}]" for p in names), "correct/total",
            "no prediction"]
    lines = [f"# {title}", "", *(f"**Note:** {note}\n" for note in header),
             "| " + " | ".join(head) + " |",
             "|" + "|".join(["---:", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for step, result in rows:
        per = protocols_of(result)
        first = per[names[0]] if names[0] in per else next(iter(per.values()))
        cells = [str(step), str(result.get("settings", {}).get("model", "?"))]
        cells += [f"{per[p]['accuracy']:.2f}" if p in per else "-" for p in names]
        cells += [f"{first['correct']}/{first['total']}", str(first["no_prediction"])]
        lines.append("| " + " | ".join(cells) + " |")
    after = _table_notes(rows)
    text = "\n".join(lines + (["", *after] if after else [])) + "\n"
    if no_audio or notes:
        text += render_contribution(dict(rows), no_audio or {}, notes)
    return text


# ---------------------------------------------------------------------------------------------
# Audio contribution
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Contribution:
    """One group's accuracy with and without audio (percent; None: the group is absent)."""

    group: str
    items: int
    with_audio: float | None
    without_audio: float | None

    @property
    def difference(self) -> float | None:
        """With minus without, in points: what the audio adds."""
        if self.with_audio is None or self.without_audio is None:
            return None
        return self.with_audio - self.without_audio


def contribution_table(result: Results) -> str | None:
    """The name of the per-group table a protocol's result is compared by (None: overall only)."""
    return next((t for t in CONTRIBUTION_TABLES if t in result.get("tables", {})), None)


def contribution(with_audio: Results, without_audio: Results,
                 protocol: str) -> list[Contribution]:
    """Overall ("all"), then each group of `contribution_table`, for one protocol of one step."""
    per, other = protocols_of(with_audio)[protocol], protocols_of(without_audio).get(protocol)
    rows = [Contribution("all", per["total"], per["accuracy"],
                         other["accuracy"] if other else None)]
    table = contribution_table(per)
    if table is None:
        return rows
    without = {r["group"]: r["accuracy"] for r in (other or {}).get("tables", {}).get(table, [])}
    return rows + [Contribution(r["group"], r["total"], r["accuracy"], without.get(r["group"]))
                   for r in per["tables"][table]]


def _pct(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.2f}"


def render_contribution(with_audio: Mapping[int, Results], no_audio: Mapping[int, Results],
                        notes: Sequence[str] = ()) -> str:
    """Per protocol, a table: step, group, items, with audio, without, difference."""
    steps = [s for s in no_audio if s in with_audio]
    notes = [*notes, *(f"step {s}: text-only results but none with audio ({s}/results.json)"
                       for s in no_audio if s not in with_audio)]
    lines = ["", "## Audio contribution", "",
             f"Steps {', '.join(map(str, steps)) or '(none)'} were also evaluated with "
             f"`--no_audio` (the prompt has no audio part, no audio features are passed; "
             f"results in `<step>{NO_AUDIO_SUFFIX}/`). Difference = with audio - without, in "
             "points: what the audio adds; a small one means the items are answered from the "
             "text alone.", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    for protocol in _protocol_names([with_audio[s] for s in steps]):
        table = next((contribution_table(protocols_of(with_audio[s])[protocol]) for s in steps
                      if protocol in protocols_of(with_audio[s])), None)
        column = CONTRIBUTION_TABLES.get(table, "group") if table else "group"
        lines += [f"### [{protocol}]", "",
                  f"| step | {column} | items | with audio (%) | without audio (%) | "
                  "difference (points) |", "|---:|---|---:|---:|---:|---:|"]
        for step in steps:
            if protocol not in protocols_of(with_audio[step]):
                continue
            for row in contribution(with_audio[step], no_audio[step], protocol):
                lines.append(f"| {step} | {row.group} | {row.items} | {_pct(row.with_audio)} | "
                             f"{_pct(row.without_audio)} | {_pct(row.difference, '+')} |")
        lines += ["", *_count_mismatches(with_audio, no_audio, steps, protocol)]
    return "\n".join(lines)


def _count_mismatches(with_audio: Mapping[int, Results], no_audio: Mapping[int, Results],
                      steps: Sequence[int], protocol: str) -> list[str]:
    """A line per step whose two runs scored different item counts (e.g. another --limit)."""
    lines = []
    for step in steps:
        per, other = protocols_of(with_audio[step]).get(protocol), \
            protocols_of(no_audio[step]).get(protocol)
        if per and other and per["total"] != other["total"]:
            lines.append(f"**step {step}: {per['total']} items with audio, {other['total']} "
                         "without: the two runs differ (--limit?); compare with care.**\n")
    return lines


# ---------------------------------------------------------------------------------------------
# Plot and write
# ---------------------------------------------------------------------------------------------

def plot(rows: Sequence[tuple[int, Results]], path: Path, title: str,
         no_audio: Mapping[int, Results] | None = None) -> Path:
    """Accuracy vs step, one line per protocol (text-only points as hollow squares of the same
    colour), saved as PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curves: dict[str, list[tuple[int, float]]] = {}
    for step, result in rows:
        for name, res in protocols_of(result).items():
            curves.setdefault(name, []).append((step, res["accuracy"]))
    for name, points in curves.items():
        (line,) = ax.plot([s for s, _ in points], [a for _, a in points], marker="o",
                          label=name)
        text_only = [(s, protocols_of(r)[name]["accuracy"]) for s, r in (no_audio or {}).items()
                     if name in protocols_of(r)]
        if text_only:
            ax.scatter([s for s, _ in text_only], [a for _, a in text_only], marker="s", s=60,
                       facecolors="none", edgecolors=line.get_color(),
                       label=f"{name}, no audio", zorder=3)
    ax.set(xlabel="training step (0 = starting model)", ylabel="accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(title="protocol")
    with atomic_path(path, suffix=".png") as tmp:  # savefig picks the format by the suffix
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_summary(eval_dir: str | Path, title: str | None = None,
                  notes: Sequence[str] = ()) -> Path:
    """Write `summary.md` and `summary.png` in `eval_dir`; returns the markdown's path.

    `title` defaults to `default_title` (the question set's `--set_title`, else the benchmark's
    name); each of `notes` is a line under it."""
    eval_dir = Path(eval_dir)
    rows = collect(eval_dir)
    if not rows:
        raise SystemExit(f"{eval_dir}: no <step>/results.json found; run the evaluation first.")
    no_audio, left_out = collect_no_audio(eval_dir)
    for note in left_out:
        logger.warning("%s: %s", eval_dir, note)
    title = title or default_title(rows, eval_dir)
    path = atomic_write_text(eval_dir / SUMMARY_FILE,
                             render(rows, title, no_audio, left_out, header=notes))
    plot(rows, eval_dir / SUMMARY_PLOT, title, no_audio)
    also = f" ({len(no_audio)} also without audio)" if no_audio else ""
    logger.info("summary of %d steps%s: %s", len(rows), also, path)
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Summarise an evaluation across steps.")
    parser.add_argument("eval_dir", type=Path, help="e.g. exp/grpo/eval/mmau")
    parser.add_argument("--title", default=None,
                        help="title (default: '<question set> across steps (<eval_dir>)')")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="a line shown under the title (repeatable)")
    args = parser.parse_args(argv)
    path = write_summary(args.eval_dir, args.title, notes=args.note)
    print(path.read_text(encoding="utf-8"))
    return path


if __name__ == "__main__":
    main()
