"""What `local.prepare.validate` found about one dataset, the usable/unusable verdict, and the
report.

Issue kinds (counted, the first few ids kept as examples):

| kind | meaning | makes a row broken? |
|---|---|---|
| malformed | question/choices/row unreadable (no 'Choices:' block, empty question, ...) | yes |
| answer_not_in_choices | the answer is not one of the options | yes |
| missing_audio | the row has no audio, or its file does not exist | yes |
| unreadable_audio | the audio does not decode | yes |
| truncated_audio | a WAV file shorter than its header says (decodes, part missing) | yes |
| duplicate_choices | two options with the same text (legal: MMAU has 27) | no |
| none_option | a literal 'None' option (legal: MMSU pads two-choice items) | no |
| beyond_window_FAMILY | longer than the family's window (cut with a count later) | no |

Example:
    >>> check = DatasetCheck("demo", rows=10, checked=10, read=10, audio_ok=10)
    >>> check.judge(max_bad_fraction=0.05).usable
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from local.util.fsio import atomic_write_text

BROKEN = ("malformed", "answer_not_in_choices", "missing_audio", "unreadable_audio",
          "truncated_audio")
EXAMPLES = 5


@dataclass
class DatasetCheck:
    """Counts for one dataset (or AVQA split) and its verdict."""

    name: str
    rows: int = 0  # rows in the source
    checked: int = 0  # rows examined (fewer than rows when sampled)
    sampled: bool = False
    read: int = 0  # rows the reader turned into records
    skipped: int = 0  # rows the reader rejected (malformed, answer not a choice, no audio)
    audio_ok: int = 0
    audio_bad: int = 0  # records whose audio is missing, does not decode, or is truncated
    rates: dict[int, int] = field(default_factory=dict)
    channels: dict[int, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    issues: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    fatal: str = ""  # the dataset could not be opened at all
    usable: bool = True
    verdict: str = ""

    def add(self, kind: str, ident: str, reason: str = "") -> None:
        self.issues[kind] = self.issues.get(kind, 0) + 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < EXAMPLES:
            text = reason if reason.startswith(ident) else f"{ident}: {reason}" if reason else ident
            shown.append(text if len(text) <= 200 else text[:197] + "...")

    @property
    def broken(self) -> int:
        return self.skipped + self.audio_bad

    def first_broken(self) -> list[str]:
        return [e[:120] for kind in BROKEN for e in self.examples.get(kind, [])][:3]

    def judge(self, max_bad_fraction: float) -> DatasetCheck:
        """Set `usable` and `verdict`: unusable if unopenable, empty, silent, or too broken."""
        if self.fatal:
            self.usable, why = False, f"cannot be opened: {self.fatal}"
        elif self.read == 0:
            self.usable, why = False, "no row could be read"
        elif self.audio_ok == 0 and self.audio_bad > 0:
            self.usable, why = False, "no audio could be decoded in full"
        elif self.checked and self.broken / self.checked > max_bad_fraction:
            self.usable = False
            why = (f"{self.broken} of {self.checked} checked rows are broken "
                   f"({self.broken / self.checked:.1%} > {max_bad_fraction:.0%})")
        else:
            why = f"{self.broken} of {self.checked} checked rows broken"
        first = self.first_broken()
        if not self.usable and first:
            why += "; first: " + " | ".join(first)
        self.verdict = f"{self.name}: {why}"
        return self

    def one_line(self) -> str:
        state = "ok" if self.usable else "UNUSABLE"
        sample = f" (sampled {self.checked} of {self.rows})" if self.sampled else ""
        return (f"{self.name}: {state}, {self.read} records read{sample}, "
                f"{self.audio_ok} clips decoded, {self.broken} broken")

    def summary(self) -> dict:
        """JSON-ready: counts, duration stats, verdict (durations themselves left out)."""
        data = asdict(self)
        data.pop("durations")
        data["duration_s"] = _stats(self.durations)
        return data


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"min": round(ordered[0], 2), "median": round(ordered[len(ordered) // 2], 2),
            "max": round(ordered[-1], 2), "total_h": round(sum(ordered) / 3600, 2)}


def _top(counts: dict[int, int], unit: str = "") -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{k}{unit}: {v}" for k, v in items) or "-"


def markdown(checks: list[DatasetCheck], family: str | None, windows: dict[str, float]) -> str:
    """The report as a short markdown page."""
    lines = ["# Data validation", ""]
    lines.append("| dataset | rows | checked | read | skipped | audio ok | audio bad | "
                 + " | ".join(f"> {w:g} s ({f})" for f, w in windows.items())
                 + " | duration min/median/max s | rates (Hz) | channels | dup. choices "
                 "| 'None' options | verdict |")
    lines.append("|" + "---|" * (13 + len(windows)))
    for c in checks:
        stats = _stats(c.durations)
        dur = f"{stats['min']}/{stats['median']}/{stats['max']}" if stats else "-"
        beyond = " | ".join(str(c.issues.get(f"beyond_window_{f}", 0)) for f in windows)
        lines.append(
            f"| {c.name} | {c.rows} | {c.checked}{' (sample)' if c.sampled else ''} | {c.read} "
            f"| {c.skipped} | {c.audio_ok} | {c.audio_bad} | {beyond} | {dur} | {_top(c.rates)} "
            f"| {_top(c.channels)} | {c.issues.get('duplicate_choices', 0)} "
            f"| {c.issues.get('none_option', 0)} | {'ok' if c.usable else '**UNUSABLE**'} |")
    lines += ["", "## Details", ""]
    for c in checks:
        lines.append(f"- **{c.verdict}**")
        for kind, shown in sorted(c.examples.items()):
            lines.append(f"  - {kind} ({c.issues[kind]}): " + "; ".join(shown))
    if family:
        lines += ["", f"Model family: {family} (window {windows[family]:g} s); longer clips are "
                  "cut to the window with a warning and a count."]
    return "\n".join(lines) + "\n"


def write_report(checks: list[DatasetCheck], path: Path, family: str | None,
                 windows: dict[str, float]) -> None:
    """Write the markdown report and its `.json` twin at `path`, each atomically."""
    data = {"model_family": family, "windows_s": windows,
            "usable": all(c.usable for c in checks),
            "datasets": [c.summary() for c in checks]}
    md_path = path.with_suffix(".md") if path.suffix == ".json" else path
    for target, text in ((md_path, markdown(checks, family, windows)),
                         (path.with_suffix(".json"), json.dumps(data, indent=1) + "\n")):
        atomic_write_text(target, text)
