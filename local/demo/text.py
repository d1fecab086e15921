"""The demo report's markdown: the demo's own sections around the run's (`local.run_report`).

Example:
    >>> fmt_seconds(75.0)
    '75 s (1.2 min)'
"""

from __future__ import annotations

from typing import Any

from local.run_report.build import Report
from local.run_report.markdown import Section

# What the report calls the demo's tiny model, by family (local.demo.run.DEMO_FAMILIES).
MODEL_NAMES = {"qwen2_5_omni": "Qwen2.5-Omni thinker",
               "qwen3_omni_moe": "Qwen3-Omni thinker (mixture of experts)"}


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def _timings(info: dict[str, Any]) -> str:
    skipped = set(info.get("skipped", []))
    recorded = info.get("recorded_timings", info["timings"])
    lines = ["| part | seconds when it ran | seconds in this invocation |", "|---|---:|---:|"]
    for name, value in info["timings"].items():
        note = " (done earlier: skipped)" if name in skipped else ""
        lines.append(f"| {name} | {recorded.get(name, value):.1f} | {value:.1f}{note} |")
    total = sum(recorded.get(k, v) for k, v in info["timings"].items())
    return "\n".join(lines) + f"\n| **total** | **{total:.1f}** | **{info['wall_s']:.1f}** |"


def intro(report: Report, ctx: dict[str, Any]) -> str:
    info = ctx["info"]
    settings = info["settings"]
    model = MODEL_NAMES.get(settings.get("family", "qwen2_5_omni"), settings.get("family"))
    return f"""Everything below was measured by this run (`python -m local.demo`, the call behind
`bash run.sh --stage demo`); nothing is typed in by hand. It is a **tiny random-weight
{model} on a synthetic audio set**: the numbers show that the pipeline runs end
to end and learns, not how a real model performs.

- **Measured wall time: {fmt_seconds(info["wall_s"])}** for this invocation, up to the report
  (parts already done are skipped; the table gives each part's time when it ran)
- Code version: `{report.run.code_version}`; machine: {ctx["machine"]}
- Data: {settings["n_train"]} training items (AVQA layout) and {settings["n_eval"]} evaluation
  items (the synthetic demo set, in the MMAU test-mini layout) from `local/demo/data.py`: count
  the beeps, high or low tone, rising or falling sweep, louder half.
- Starting model (step 0): `models/initial/`; final checkpoint: `{ctx["final"]}`.
- The run's own report (the same sections without the demo's):
  `bash run.sh --stage report --exp_dir {settings["out"]} --run_name run`.

{_timings(info)}"""


def warmup_section(report: Report, ctx: dict[str, Any]) -> Section:
    warm = ctx["warmup"]["settings"]
    names = report.settings.get("reward_funcs") or []
    weights = report.settings.get("reward_weights") or [None] * len(names)
    rewards = ", ".join(f"`{n}`" + ("" if w is None else f" x {w:g}")
                        for n, w in zip(names, weights, strict=True))
    plot = f"\n\n{report.image('warmup_loss')}" if "warmup_loss" in report.drawn else ""
    return Section("warmup", "How the demo is made learnable", f"""A random model never writes
`<answer>X</answer>`: every completion earns 0, all rewards in a group are equal, every
advantage is 0 and GRPO learns nothing. So before GRPO the random model (`models/random/`) gets
a short **supervised warm-up** (`local/demo/warmup.py`): {warm["steps"]} steps of
{warm["batch_size"]} rows, learning rate {warm["learning_rate"]:g}, cross-entropy on the answer
tokens only, through the same audio collation as training and evaluation
(`local/core/collate.py`). It teaches the format `<answer>option</answer>` from a biased
teacher: on {warm.get("label_bias", 0.0):.0%} of the rows the taught option is the question's
default (its alphabetically first option) whatever the audio says, on
{warm["label_noise"]:.0%} of the others a random option, and otherwise the right one. The model
learns to hear the audio but, answering greedily, mostly says the default, so step 0 starts
near chance; sampled at temperature 1 it still answers right on a share of completions, so the
completions of a group earn different rewards and GRPO can push the greedy answer towards the
one the audio supports. The result is saved as `models/initial/`, the starting model for GRPO
and step 0 of the evaluation: the gain from step 0 to the last step is GRPO's. The rewards
are the recipe's defaults for template `{report.settings.get("template")}`: {rewards}.{plot}""")


def eval_section(ctx: dict[str, Any]) -> Section:
    settings = ctx["info"]["settings"]
    return Section("before_after", "Evaluation: before -> after", f"""`local.eval.steps` with
the MMAU evaluator (`evaluate_mmau.py`: greedy, {settings["eval_max_new_tokens"]} new tokens,
float32, MMAU's official token rule) on the synthetic demo set, step 0 = the starting model;
one row per evaluated model, accuracy per demo task.

{ctx["eval_table"]}""")


def encoder_section(ctx: dict[str, Any]) -> Section:
    enc = ctx["info"]["encoder"]
    check = "PASSED" if enc["changed"] else "FAILED"
    return Section("encoder", f"The audio encoder was trained: {check}", f"""Comparing the
`audio_tower.*` weights of `{ctx["final"]}` with `models/initial/`: **{enc["changed_tensors"]}
of {enc["tensors"]} tensors changed**, largest absolute change {enc["max_abs_diff"]:.3g},
relative change of the whole encoder {enc["relative_change"]:.3g}. (If the audio did not reach
the loss, the encoder would get no gradient and stay identical.)""")


def render(report: Report, ctx: dict[str, Any]) -> str:
    """The whole demo report: the demo's intro, warm-up, the run's sections with the before ->
    after table and the encoder check among them, the command that trained."""
    sections = [warmup_section(report, ctx)]
    for section in report.sections:
        if section.key == "accuracy":
            sections.append(eval_section(ctx))
        sections.append(section)
        if section.key == "audio":
            sections.append(encoder_section(ctx))
    command = " ".join(ctx["info"]["train_command"])
    config = report.section("config")
    sections[sections.index(config)] = Section(
        config.key, config.heading, f"GRPO command: `{command}`\n\n{config.body}")
    return report.markdown(title="Demo: GRPO on a tiny audio language model, CPU",
                           intro=intro(report, ctx), sections=sections)
