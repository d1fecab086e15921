"""The report's sections as markdown, from a `RunFolder` and the figures drawn for it.

Every section is always there, under a fixed heading (`SECTIONS`); one without data says what is
missing and which stage makes it. No number is typed in: each comes from the run's files.

Example:
    >>> md_cell("a|b\\nc"), md_text("<answer>")
    ('a\\\\|b c', '&lt;answer&gt;')
    >>> fmt(0.000123), fmt(12.5), fmt(None)
    ('0.000123', '12.5', '-')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from local.run_report.run_folder import BenchmarkEval, Completion, RunFolder
from local.run_report.series import (
    Figure,
    audio_rows,
    audio_steps,
    group_accuracy,
    group_label,
    metric,
    protocols,
    reward_names,
    total_reward,
)
from local.runs.eval_results import protocols_of
from local.runs.layout import NO_AUDIO_SUFFIX

# key -> heading; the report has each of them, in this order.
SECTIONS = {
    "overview": "What was read",
    "training": "Training curves",
    "accuracy": "Accuracy by step",
    "audio": "Audio contribution (with vs without the audio)",
    "samples": "Sample completions (first, middle and last logged step)",
    "config": "Configuration and code version",
    "left_out": "Left out",
}
CONFIG_KEYS = ("model_name_or_path", "template", "reward_funcs", "reward_weights", "loss_type",
               "beta", "learning_rate", "num_generations", "per_device_train_batch_size",
               "gradient_accumulation_steps", "max_completion_length", "temperature",
               "max_steps", "save_steps", "seed", "freeze_audio_encoder", "model_dtype",
               "use_cpu", "report_to")
LAST_VALUES = (("reward", "reward"), ("reward_std", "reward std"),
               ("frac_reward_zero_std", "groups with zero spread"), ("kl", "KL"),
               ("completions/mean_length", "mean length (tokens)"),
               ("completions/clipped_ratio", "clipped"), ("learning_rate", "learning rate"),
               ("grad_norm", "grad norm"))
SAMPLE_CHARS = 300  # a completion longer than this is cut in the table


@dataclass
class Section:
    key: str
    heading: str
    body: str


def md_cell(text: Any) -> str:
    """Text safe inside a markdown table cell (pipes escaped, one line)."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_text(text: Any) -> str:
    """Prose that markdown shows as written (`<answer>` is no HTML tag)."""
    return str(text).replace("<", "&lt;").replace(">", "&gt;")


def fmt(value: float | None) -> str:
    """A number short and exact enough for a table."""
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4g}"


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    """A markdown table; columns from `numeric_from` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def image(figure: Figure, drawn: dict[str, Path], md_dir: Path) -> str:
    """The markdown image of a drawn figure, linked relative to the report."""
    rel = Path(os.path.relpath(Path(drawn[figure.name]).resolve(), md_dir.resolve()))
    return f"![{figure.title}]({rel.as_posix()})"


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def overview(run: RunFolder) -> str:
    lines = [f"- Run folder: `{run.path}`"]
    if run.log is None:
        lines.append("- Training log: no `trainer_state.json` yet (the HF Trainer writes one with "
                     "each checkpoint, every `save_steps` steps).")
    else:
        of = f" of {run.log.max_steps}" if run.log.max_steps else ""
        logged = metric(run.log.history, "reward") or metric(run.log.history, "loss")
        lines.append(f"- Training log: `{run.log.source.relative_to(run.path)}`, global step "
                     f"{run.log.global_step}{of}, {len(logged)} logged training steps (a run "
                     "still going has more in TensorBoard than in its newest checkpoint).")
    steps = sorted({c.step for c in run.completions})
    lines.append(f"- Completion logs: {len(run.completions)} completions at {len(steps)} steps "
                 f"({steps[0]}..{steps[-1]})" if steps else
                 "- Completion logs: none (`log_completions` off, or no step logged yet).")
    for bench in run.evals:
        no_audio = f"; without audio: steps {list(bench.no_audio)}" if bench.no_audio else ""
        lines.append(f"- Evaluation `eval/{bench.name}/` ({bench.title}): steps "
                     f"{list(bench.results)}{no_audio}")
    if not run.evals:
        lines.append("- Evaluation: none yet.")
    lines += [f"- Submission file `{p.relative_to(run.path)}`: answers withheld, not scored here;"
              " submit it (full MMAU test: the MMAU evaluation Space)." for p in run.submissions]
    lines += [f"- Note: {note}" for note in run.notes]
    if run.left_out:
        count = len(run.left_out)
        lines.append(f"- Left out: {count} {'entry' if count == 1 else 'entries'} (listed "
                     "under \"Left out\"): files, or parts of files, that are not what the "
                     "report expects.")
    return "\n".join(lines)


def _spread_text(run: RunFolder, spread: dict[int, dict[str, Any]]) -> str:
    zero = metric(run.log.history if run.log else [], "frac_reward_zero_std")
    mean_zero = sum(v for _, v in zero) / len(zero) if zero else None
    trl = (f"TRL's `frac_reward_zero_std` averages {mean_zero:.0%} of the groups per step with "
           "no spread (all advantages 0: nothing to learn from those prompts)."
           if mean_zero is not None else "")
    groups = sum(s["groups"] for s in spread.values())
    if not groups:
        return trl
    varied = sum(s["varied_groups"] for s in spread.values())
    verdict = "vary" if varied else "do NOT vary (every advantage was zero)"
    return (f"Rewards {verdict} within groups: in the logged completions, **{varied} of "
            f"{groups} groups** ({varied / groups:.0%}) had completions with different total "
            f"rewards (so non-zero advantages). {trl}")


def _last_values(history: Sequence[dict[str, Any]]) -> str:
    keys = [(k, label) for k, label in LAST_VALUES if metric(history, k)]
    names = reward_names(history)
    keys[1:1] = [(f"rewards/{n}/mean", n) for n in names]
    steps = sorted({s for k, _ in keys for s, _ in metric(history, k)})
    if not steps:
        return ""
    chosen = sorted({steps[0], steps[-1]})
    rows = []
    for step in chosen:
        values = {k: dict(metric(history, k)).get(step) for k, _ in keys}
        rows.append([str(step), *(fmt(values[k]) for k, _ in keys)])
    return "First and last logged step:\n\n" + table(["step", *(label for _, label in keys)],
                                                       rows)


def training(run: RunFolder, figures: Sequence[Figure], drawn: dict[str, Path], md_dir: Path,
             spread: dict[int, dict[str, Any]]) -> str:
    if run.log is not None and not run.log.history:
        return (f"No training log entry in `{run.log.source.relative_to(run.path)}` yet (any "
                "left out are listed under \"Left out\").")
    if run.log is None:
        return ("No training log yet: no `checkpoint-N/trainer_state.json` in the run folder. "
                "Curves appear after the first checkpoint (`save_steps`); until then "
                f"`tensorboard --logdir {run.path}/runs` shows them live.")
    parts = [f"From `log_history` of `{run.log.source.relative_to(run.path)}` (TRL's metric "
             "names), against the GRPO step."]
    parts += [image(f, drawn, md_dir) for f in figures if f.name in drawn]
    parts += [f"Not plotted: {m}." for f in figures for m in f.missing]
    parts += [f"Not plotted: {f.title} (nothing logged)." for f in figures
              if f.name not in drawn and not f.missing]
    parts += [_spread_text(run, spread), _last_values(run.log.history)]
    return "\n\n".join(p for p in parts if p)


def _describe_protocols(bench: BenchmarkEval) -> str:
    described = {}
    for result in [*bench.results.values(), *bench.no_audio.values()]:
        for name, one in protocols_of(result).items():
            described.setdefault(name, one.get("protocol_description", name))
    return "\n".join(f"- protocol `{n}`: {md_text(d)}" for n, d in described.items())


def accuracy_table(bench: BenchmarkEval, protocol: str) -> str:
    """Step, accuracy, counts and the per-group accuracies of one protocol, every step."""
    groups: list[str] = []
    for result in bench.results.values():
        groups += [g for g in group_accuracy(bench, result, protocol) if g not in groups]
    groups = [g for g in groups if g != "overall"]
    rows = []
    for step, result in bench.results.items():
        one = protocols_of(result).get(protocol)
        if one is None:
            continue
        per = group_accuracy(bench, result, protocol)
        rows.append([str(step), f"{one['accuracy']:.2f}", f"{one['correct']}/{one['total']}",
                     str(one.get("no_prediction", "-")),
                     *(f"{per[g]:.1f}" if g in per else "-" for g in groups)])
    return table(["step", "accuracy (%)", "correct/total", "no prediction",
                  *(f"{g} (%)" for g in groups)], rows)


def accuracy(run: RunFolder, figures: dict[str, Figure], drawn: dict[str, Path],
             md_dir: Path) -> str:
    with_steps = [b for b in run.evals if b.results]
    if not with_steps:
        return (f"No evaluation yet: no `eval/<bench>/<step>/results.json` in `{run.path}`. "
                "`bash run.sh --stage mmau` (or `mmsu`, `mmar`) evaluates step 0 and every "
                "checkpoint.")
    parts = []
    for bench in with_steps:
        parts.append(f"### {bench.title} (`eval/{bench.name}/`)\n\n{_describe_protocols(bench)}")
        for protocol in protocols(bench):
            parts.append(f"Protocol `{protocol}`, per {group_label(bench, protocol)}:\n\n"
                         + accuracy_table(bench, protocol))
        figure = figures.get(f"accuracy_{bench.name}")
        if figure is not None and figure.name in drawn:
            parts.append(image(figure, drawn, md_dir))
    return "\n\n".join(parts)


def audio(run: RunFolder, figures: dict[str, Figure], drawn: dict[str, Path],
          md_dir: Path) -> str:
    benches = [b for b in run.evals if audio_steps(b)]
    if not benches:
        return ("No step was evaluated without the audio yet. `bash run.sh --stage mmau "
                "--with_no_audio true` (or `mmsu`, `mmar`) adds the no-audio evaluation of step 0 "
                f"and the last step (`eval/<bench>/<step>{NO_AUDIO_SUFFIX}/`); the difference is "
                "how much of the accuracy needs the audio (items answerable from the text alone "
                "score the same without it).")
    parts = []
    for bench in benches:
        parts.append(f"### {bench.title} (`eval/{bench.name}/`)")
        for protocol in protocols(bench):
            for step in audio_steps(bench):
                rows = [[g, f"{a:.2f}", f"{b:.2f}", f"{a - b:+.2f}"]
                        for g, a, b in audio_rows(bench, step, protocol)]
                parts.append(f"Protocol `{protocol}`, step {step}, per "
                             f"{group_label(bench, protocol)}:\n\n" + table(
                                 [group_label(bench, protocol), "with audio (%)",
                                  "without audio (%)", "difference (points)"], rows))
        figure = figures.get(f"audio_contribution_{bench.name}")
        if figure is not None and figure.name in drawn:
            parts.append(image(figure, drawn, md_dir))
    return "\n\n".join(parts)


def sample_steps(rows: Sequence[Completion]) -> list[int]:
    """The first, middle and last logged step (fewer when fewer were logged)."""
    steps = sorted({r.step for r in rows})
    return sorted({steps[0], steps[len(steps) // 2], steps[-1]}) if steps else []


def samples(run: RunFolder, weights: dict[str, float] | None, per_step: int) -> str:
    if not run.completions:
        return ("No completion logs: TRL writes `completions/completions_<step>.parquet` when "
                "`log_completions: true` (conf/grpo.yaml), one file per logged step.")
    names = list(dict.fromkeys(n for r in run.completions for n in r.rewards))
    parts = [f"From TRL's `completions/*.parquet`; up to {per_step} completions per step, "
             "consecutive rows of one group share a prompt (and its audio). Total: the rewards "
             "weighted as the run weighted them. Completions longer than "
             f"{SAMPLE_CHARS} characters are cut (…)."]
    for step in sample_steps(run.completions):
        rows = [r for r in run.completions if r.step == step][:per_step]
        body = [[md_text(r.question), f"`{_cut(r.completion)}`",
                 *(fmt(r.rewards.get(n)) for n in names), fmt(total_reward(r, weights)),
                 "-" if r.advantage is None else f"{r.advantage:+.2f}"] for r in rows]
        parts.append(f"### Step {step}\n\n" + table(
            ["question", "completion", *names, "total", "advantage"], body, numeric_from=2))
    return "\n\n".join(parts)


def _cut(text: str) -> str:
    text = text.replace("`", "'")
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "…"


def config(run: RunFolder, resolved: dict[str, Any]) -> str:
    trained = (run.config or {}).get("code") if isinstance(run.config, dict) else None
    parts = [f"Code version that trained: `{trained or 'not recorded'}`; the checkout that "
             f"wrote this report: `{run.code_version}`"]
    if run.commands:
        more = (f" (the run was started {len(run.commands)} times; the last command)"
                if len(run.commands) > 1 else "")
        parts.append(f"Training command{more}:\n\n```\n{run.commands[-1]}\n```")
    if run.config is None:
        parts.append("No `resolved_config.yaml` in the run folder (train.py writes it at start).")
        return "\n\n".join(parts)
    rows = [[f"`{k}`", f"`{resolved[k]}`"] for k in CONFIG_KEYS if k in resolved]
    parts.append(table(["key", "value"], rows, numeric_from=2))
    dumped = yaml.safe_dump(run.config, sort_keys=True)
    parts.append("<details><summary>Full resolved configuration (resolved_config.yaml)"
                 f"</summary>\n\n```yaml\n{dumped}```\n</details>")
    return "\n\n".join(parts)


def left_out(run: RunFolder) -> str:
    """The files (or parts of files) the report could not use, each with the reason."""
    if not run.left_out:
        return "Nothing: every file read was what the report expects."
    rows = [[f"`{entry.relative(run.path)}`", md_text(entry.reason)] for entry in run.left_out]
    return ("Files, or parts of files, that are not what the report expects; the rest of the "
            "report is written without them (a value left out is not drawn and shows as "
            "\"-\").\n\n" + table(["file", "what is wrong"], rows, numeric_from=2))


def render(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole report: title, intro, then each section under its heading."""
    body = "\n\n".join(f"## {s.heading}\n\n{s.body}" for s in sections)
    return f"# {title}\n\n{intro}\n\n{body}\n".replace("\n\n\n", "\n\n")
