"""An evaluation's results, rendered and written: results.json, results.md, the headline lines.

`write_results` is the one writer, for every benchmark and for `--score_only`: results.json
(`results_file`: one protocol as it is; several under `protocols`, the first as the headline),
results.md (`markdown`: per protocol the accuracy, the items scored on truncated audio, the
question check, the tables and the unanswered ids) and one headline line per protocol printed
(`headline`). The verdicts and tables come from `local.eval.judge` (data only); the run's
folders that hold these files are `local.runs.layout`'s.

Example:
    >>> from local.eval.judge import Row
    >>> print(render_markdown([Row("all", 1, 2, 1)]))
    | group | correct | total | accuracy (%) | no prediction |
    |---|---:|---:|---:|---:|
    | all | 1 | 2 | 50.00 | 1 |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.eval.benchmarks.base import Benchmark
from local.eval.judge import Row
from local.util.fsio import atomic_write_json, atomic_write_text

Results = dict[str, dict[str, Any]]  # protocol -> its results


def check_lines(check: dict[str, Any] | str) -> list[str]:
    """What the question check found, as lines for the log and results.md (empty: all fine)."""
    if isinstance(check, str):
        return [f"Predictions {check}."]
    lines = []
    for key, text in (("missing_ids", "questions without a prediction (counted wrong)"),
                      ("extra_ids", "predictions whose id is no question (ignored)"),
                      ("duplicate_ids", "ids predicted more than once (the first one scored)"),
                      ("duplicate_question_ids", "ids repeated in the question file (each "
                       "repeat counted wrong)")):
        if check.get(key):
            shown = ", ".join(check[key][:20]) + (", ..." if len(check[key]) > 20 else "")
            lines.append(f"{len(check[key])} {text}: {shown}")
    return lines


def public(result: dict[str, Any]) -> dict[str, Any]:
    """`result` without its in-memory-only keys (ready for JSON)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


TRUNCATED_AUDIO = ("scored on truncated audio (the file is shorter than its header says: an "
                   "interrupted download or copy; answered on the audio it holds, nothing dropped; "
                   "fetch the files again and re-run with --overwrite)")


def truncated_audio_lines(result: dict[str, Any]) -> list[str]:
    """The items of `result["audio_incomplete"]` ({id: why}) as markdown lines (none: [])."""
    cut = result.get("audio_incomplete") or {}
    if not cut:
        return []
    return [f"**{len(cut)} items {TRUNCATED_AUDIO}:**", "",
            *(f"- {reason}" for reason in cut.values()), ""]


def markdown(result: dict[str, Any], heading: str, preface: str = "") -> str:
    """One protocol's tables as markdown, the protocol named beside every number; `preface`
    goes under the heading (e.g. which question set), then the accuracy, then the items scored
    on truncated audio (`audio_incomplete`), then the tables."""
    name = f"{result['protocol']}: {result['protocol_description']}"
    summary = preface + (f"**Accuracy [{result['protocol']}]: {result['accuracy']:.2f}%** "
                         f"({result['correct']}/{result['total']}; {result['no_prediction']} "
                         "without a prediction, counted wrong)\n\n")
    cut = truncated_audio_lines(result)
    if cut:
        summary += "\n".join(cut) + "\n"
    body = render_report(result["_tables"], result["no_prediction_ids"], heading=heading,
                         protocol=name)
    if "question_check" in result:
        check = result["question_check"]
        found = check_lines(check) or [
            f"all {check['questions']} questions have exactly one prediction"]
        summary += "Question check: " + "; ".join(found) + "\n\n"
    return body.replace("\n\n", "\n\n" + summary, 1)


def headline(benchmark: str, result: dict[str, Any]) -> str:
    """The one line printed at the end of a run: the number with its protocol."""
    line = (f"{benchmark} accuracy [{result['protocol']}: {result['protocol_description']}]: "
            f"{result['accuracy']:.2f}% ({result['correct']}/{result['total']}, "
            f"{result['no_prediction']} without prediction counted wrong)")
    if isinstance(result.get("question_check"), str):
        line += f" [{result['question_check']}]"
    return line


def render_markdown(rows: Sequence[Row], title: str = "group") -> str:
    """A markdown table: group, correct, total, accuracy (%), no prediction."""
    lines = [f"| {title} | correct | total | accuracy (%) | no prediction |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.group} | {r.correct} | {r.total} | {r.accuracy:.2f} | {r.no_prediction} |"
              for r in rows]
    return "\n".join(lines)


def render_report(tables: dict[str, list[Row]], missing: Sequence[str] = (),
                  heading: str = "Accuracy", protocol: str | None = None) -> str:
    """Markdown for several tables (from `breakdown`/`level_breakdown`) and the unanswered ids.

    `protocol` names the matcher that produced the numbers (e.g. "MMAU official token rule").
    """
    parts = [f"## {heading}"]
    if protocol:
        parts.append(f"Scored with: {protocol}.")
    for name, rows in tables.items():
        parts.append(render_markdown(rows, name))
    if missing:
        parts.append(f"No prediction (counted wrong): {len(missing)} items: "
                     + ", ".join(missing))
    return "\n\n".join(parts) + "\n"


def results_file(benchmark: Benchmark, results: Results,
                 settings: dict[str, Any] | None = None,
                 title: str | None = None) -> dict[str, Any]:
    """What results.json holds: a one-protocol benchmark's result as it is; with several, the
    first protocol's accuracy as the headline (`accuracy_protocol`) and each under `protocols`.
    `title` (`--set_title`: the items are not the benchmark's own set) is kept as `set_title`
    beside `benchmark`, whose rules scored them."""
    head = {"benchmark": benchmark.title, **({"set_title": title} if title else {})}
    extra = {} if settings is None else {"settings": settings}
    if not benchmark.multi_protocol:
        (result,) = results.values()
        return {**head, **public(result), **extra}
    first = next(iter(results))
    return {**head, "accuracy": results[first]["accuracy"],
            "accuracy_protocol": first, "protocols": {p: public(r) for p, r in results.items()},
            **extra}


def write_results(benchmark: Benchmark, results: Results, out: Path, source: str,
                  settings: dict[str, Any] | None = None,
                  title: str | None = None) -> dict[str, Any]:
    """Write `out` (JSON) and its .md, print each protocol's headline; returns the JSON.

    Every file and line names the question set `title` (`--set_title`), default the
    benchmark's; `source` is what was scored (the model, or the predictions file).
    """
    written = results_file(benchmark, results, settings, title)
    atomic_write_json(out, written)
    heading = f"{title or benchmark.title}: {source}"
    named = (f"Question set: {title} (scored as {benchmark.title})\n\n" if title else "")
    atomic_write_text(out.with_suffix(".md"), "\n".join(
        markdown(r, f"{heading} [{p}]" if benchmark.multi_protocol else heading, named)
        + "".join(f"\n**{line}**\n" for line in benchmark.notes(r))
        for p, r in results.items()))
    cut: dict[str, str] = {}
    for result in results.values():
        for line in [headline(title or benchmark.title, result), *benchmark.notes(result)]:
            print(line, flush=True)
        cut.update(result.get("audio_incomplete") or {})
    if cut:
        print(f"{len(cut)} items scored on truncated audio (a WAV shorter than its header says), "
              f"listed in {out.with_suffix('.md')}", flush=True)
    return written
