"""The memory plan as `python -m local.train.plan` prints it, and as `--json` writes it.

`Plan` holds the model's counts, the settings, the rows (`local.train.plan_memory.estimate`) and
the changes that make it fit (`local.train.plan_changes.fitting_changes`); `render(plan)` is the
text: a header (parameters trained and frozen, the run), a markdown table with one row per item
(GiB per GPU, when it is held, how it was computed), the peak against the card, host RAM per
node, notes, and the verdict line (`verdict: fits (...)` or `verdict: does not fit: <cheapest
change> (...)`), then the other changes that fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from local.train.plan_changes import Fix, fits
from local.train.plan_model import ModelShape
from local.train.plan_settings import Estimate, Settings, billions, tokens


@dataclass
class Plan:
    shape: ModelShape
    settings: Settings
    estimate: Estimate
    fixes: list[Fix]  # changes that make it fit, cheapest first (empty when it fits)
    card_source: str  # "--gpu_memory_gb" or the visible GPU's name

    @property
    def fits(self) -> bool:
        return fits(self.estimate, self.settings.card_gib)

    @property
    def verdict(self) -> str:
        est, card = self.estimate, self.settings.card_gib
        if self.fits:
            return f"fits ({est.peak:.1f} of {card:g} GiB per GPU, {card - est.peak:.1f} to spare)"
        if not self.fixes:
            return ("does not fit: no single change, nor a pair of them, makes it fit: more GPUs "
                    "or a larger card")
        fix = self.fixes[0]
        return f"does not fit: {fix.label} (then {fix.estimate.peak:.1f} of {card:g} GiB)"


def _parts(counts: dict[str, int]) -> str:
    shown = [f"{part} {billions(n)}" for part, n in counts.items() if n]
    return " + ".join(shown) + (f" = {billions(sum(counts.values()))}" if len(shown) > 1 else "") \
        if shown else "none"


def _run_line(plan: Plan) -> str:
    s = plan.settings
    zero = "no DeepSpeed (DDP)" if s.zero is None else f"{s.deepspeed} (ZeRO-{s.zero}" + (
        f", offload optimizer {s.offload_optimizer} / parameters {s.offload_param}"
        if "cpu" in (s.offload_optimizer, s.offload_param) or
        "nvme" in (s.offload_optimizer, s.offload_param) else "") + ")"
    vllm = (f"vLLM colocate, share {s.vllm_share:g}" + (", sleep mode" if s.vllm_sleep else "")
            if s.use_vllm else "HF generate")
    prompt, length = tokens(plan.shape, s)
    lora = f"LoRA r {s.peft.r}" if s.peft is not None else "full fine-tuning"
    nodes = f"{s.nodes} node{'s' if s.nodes > 1 else ''}"
    return (f"{s.world} GPUs ({nodes} x {s.gpus_per_node}), {zero}, "
            f"{'16-bit mixed precision' if s.mixed16 else '32-bit'}; {lora}; beta {s.beta:g}; "
            f"{vllm}; {s.batch} completions per micro-step of {prompt} prompt + {s.completion} "
            f"completion tokens; gradient checkpointing "
            f"{'on' if s.gradient_checkpointing else 'off'}")


def _host_line(est: Estimate) -> str:
    offloaded = [row for row in est.host if row.kind != "loading"]
    if not offloaded:
        loading = sum(row.gib for row in est.host)
        return ("host RAM per node: nothing offloaded (DeepSpeed's estimator keeps "
                f"{loading:.1f} GiB for loading 32-bit weights in every process; train.py loads "
                "16-bit ones)")
    parts = ", ".join(f"{row.label} {row.gib:.1f} ({row.how})" for row in offloaded)
    return f"host RAM per node: {est.host_gib:.1f} GiB: {parts}"


def render(plan: Plan) -> str:
    """The printed plan (see the module docstring)."""
    shape, s, est = plan.shape, plan.settings, plan.estimate
    thinker = " (the thinker)" if shape.family == "qwen2_5_omni" else ""
    lines = [
        f"Memory plan (estimates) for {shape.name}: {shape.model_type}{thinker}, "
        f"{billions(shape.total)} parameters",
        f"  trained: {_parts(est.trained)}; frozen: {_parts(est.frozen)}",
        f"  run: {_run_line(plan)}",
        "  GiB = 2^30 bytes, what DeepSpeed's estimators print as GB (an '80 GB' H100 has 79.2)",
        "",
        "| row | GiB per GPU | held | how |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {r.label} | {r.gib:.2f} | {r.when} | {r.how} |" for r in est.rows]
    always, update, rollout = (est.phase(w) for w in ("always", "update", "rollout"))
    lines += [f"| **peak**: always + max(update, rollout) | {est.peak:.2f} | | {always:.2f} + "
              f"max({update:.2f}, {rollout:.2f}) |", ""]
    gap = s.card_gib - est.peak
    lines.append(f"card: {s.card_gib:g} GiB per GPU ({plan.card_source}): "
                 + (f"{gap:.1f} GiB to spare" if gap >= 0 else f"{-gap:.1f} GiB over"))
    lines.append(_host_line(est))
    lines += [f"note: {note}" for note in est.notes]
    lines += [f"problem: {problem}" for problem in est.problems]
    lines.append(f"verdict: {plan.verdict}")
    if len(plan.fixes) > 1:
        lines.append("also fits: " + "; ".join(f"{f.label} ({f.estimate.peak:.1f} GiB)"
                                              for f in plan.fixes[1:]))
    return "\n".join(lines)


def plan_json(plan: Plan) -> dict[str, Any]:
    """The numbers of the plan (GiB), for `--json`."""
    s, est = plan.settings, plan.estimate
    settings = {k: v for k, v in asdict(s).items() if k != "peft"}
    if s.peft is not None:
        targets = s.peft.target_modules
        settings["peft"] = {"r": s.peft.r, "target_modules": targets if isinstance(targets, str)
                            else sorted(targets or [])}
    else:
        settings["peft"] = None
    return {
        "model": plan.shape.name, "model_type": plan.shape.model_type,
        "parameters": {"trained": est.trained, "frozen": est.frozen},
        "settings": settings, "unit": "GiB (2^30 bytes)",
        "rows": [asdict(row) for row in est.rows],
        "host_ram_per_node": [asdict(row) for row in est.host],
        "host_ram_per_node_gib": est.host_gib,
        "phases": {w: est.phase(w) for w in ("always", "update", "rollout")},
        "peak_gib": est.peak, "card_gib": s.card_gib, "card_source": plan.card_source,
        "vllm": est.vllm, "notes": est.notes, "problems": est.problems,
        "fits": plan.fits, "verdict": plan.verdict,
        "changes_that_fit": [{"change": f.label, "peak_gib": f.estimate.peak}
                             for f in plan.fixes],
    }
