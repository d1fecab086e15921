"""The demo report's markdown, from the values `local.demo.report` collected (no figure typed in).

Example:
    >>> fmt_seconds(75.0)
    '75 s (1.2 min)'
"""

from __future__ import annotations

from typing import Any


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


def _spread_text(ctx: dict[str, Any]) -> str:
    spread = ctx["spread"]
    groups = sum(s["groups"] for s in spread.values())
    varied = sum(s["varied_groups"] for s in spread.values())
    share = ctx["series"]["groups with varied rewards"]
    mean_share = sum(v for _, v in share) / len(share) if share else float("nan")
    if not groups:
        return ("No completion logs were found (log_completions off), so the spread comes from "
                f"TRL's `frac_reward_zero_std` only: on average {mean_share:.0%} of the groups "
                "per step had rewards that differ.")
    verdict = "vary" if varied else "do NOT vary (every advantage was zero)"
    return (f"Rewards {verdict} within groups: in the logged completions, **{varied} of "
            f"{groups} groups** ({varied / groups:.0%}) had completions with different total "
            f"rewards (so non-zero advantages); per step, TRL's `frac_reward_zero_std` gives "
            f"on average {mean_share:.0%} of groups with varied rewards.")


def _config_table(config: dict[str, Any]) -> str:
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| `{k}` | `{v}` |" for k, v in config.items()]
    return "\n".join(lines)


def render(ctx: dict[str, Any]) -> str:
    """The whole report."""
    info, enc, warm = ctx["info"], ctx["info"]["encoder"], ctx["warmup"]["settings"]
    settings = info["settings"]
    plots = ctx["plots"]
    rewards = ", ".join(f"`{n}` x {w:g}" for n, w in zip(ctx["names"], ctx["weights"],
                                                          strict=True))
    check = "PASSED" if enc["changed"] else "FAILED"
    warmup_plot = f"\n![warm-up loss]({plots['warmup']})\n" if "warmup" in plots else ""
    return f"""# Demo: GRPO on a tiny audio language model, CPU

Everything below was measured by this run (`python -m local.demo`, the call behind
`bash run.sh --stage demo`); nothing is typed in by hand. It is a **tiny random-weight
Qwen2.5-Omni thinker on a synthetic audio set**: the numbers show that the pipeline runs end
to end and learns, not how a real model performs.

- **Measured wall time: {fmt_seconds(info["wall_s"])}** for this invocation, up to the report
  (parts already done are skipped; the table gives each part's time when it ran)
- Commit: `{ctx["commit"]}`; machine: {ctx["machine"]}
- Data: {settings["n_train"]} training items (AVQA layout) and {settings["n_eval"]} evaluation
  items (MMAU test-mini layout) from `local/demo/data.py`: count the beeps, high or low tone,
  rising or falling sweep, louder half.
- Starting model (step 0): `models/initial/`; final checkpoint: `{ctx["final"]}`.

{_timings(info)}

## How the demo is made learnable

A random model never writes `<answer>X</answer>`: every completion earns 0, all rewards in a
group are equal, every advantage is 0 and GRPO learns nothing. So before GRPO the random model
(`models/random/`) gets a short **supervised warm-up** (`local/demo/warmup.py`):
{warm["steps"]} steps
of {warm["batch_size"]} rows, learning rate {warm["learning_rate"]:g}, cross-entropy on the
answer tokens only, through the same audio collation as training and evaluation
(`local/core/collate.py`). It teaches the format `<answer>option</answer>`; on
{warm["label_noise"]:.0%}
of the rows the taught option is a random choice instead of the right one, so the model starts
uncertain, sampled completions differ within a group, and GRPO has something to sharpen.
The result is saved as `models/initial/`, the starting model for GRPO and step 0 of the
evaluation. The rewards are the recipe's defaults for template `{ctx["config"]["template"]}`:
{rewards}.
{warmup_plot}
## Training curves

From `log_history` of `{ctx["final"]}/trainer_state.json`.

![rewards]({plots["rewards"]})
![KL]({plots["kl"]})
![completion length]({plots["length"]})
![reward spread]({plots["spread"]})

{_spread_text(ctx)}

## Evaluation: before -> after

`local.eval.steps` with the MMAU evaluator (`evaluate_mmau.py`: greedy,
{settings["eval_max_new_tokens"]} new tokens, float32, MMAU official token rule) on the
synthetic MMAU-shaped set, step 0 = the starting model.

{ctx["eval_table"]}

![accuracy vs step]({ctx["eval_plot"]})

## The audio encoder was trained: {check}

Comparing the `audio_tower.*` weights of `{ctx["final"]}` with `models/initial/`:
**{enc["changed_tensors"]} of {enc["tensors"]} tensors changed**, largest absolute change
{enc["max_abs_diff"]:.3g}, relative change of the whole encoder {enc["relative_change"]:.3g}.
(If the audio did not reach the loss, the encoder would get no gradient and stay identical.)

## Sample completions (last logged step, from TRL's completions parquet)

Groups of {ctx["config"]["num_generations"]} consecutive rows share one prompt (and its audio).

{ctx["samples"]}

## Resolved configuration

GRPO command: `{" ".join(info["train_command"])}`

{_config_table(ctx["config"])}

<details><summary>Full resolved training config (run/resolved_config.yaml)</summary>

```yaml
{ctx["config_yaml"]}```
</details>
"""
