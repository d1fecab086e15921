"""The GPU kit's RESULTS.md section: card, versions, commit, each part's outcome and figures.

Reads what the parts left under the kit's --out folder (gpu_tests.xml from pytest --junitxml,
grpo_<model>.json from bench/grpo_step.py --json, plan_<model>.json from local.train.plan --json,
lora_merge.json from bench/lora_merge.py --json, grpo_qwen3_omni_moe.json from bench/grpo_moe.py
--json) and the printed lines of the others.

Example:
    >>> from bench.gpu_kit_report import write_atomically
    >>> write_atomically(path, text)   # a reader sees the old file or the new, never half
"""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

PHASES = ("rollout", "ref_logps", "policy_logps", "backward", "optimizer", "step")
MOE_PART = "grpo_qwen3_omni_moe"  # bench/grpo_moe.py's JSON, not grpo_step's: its own line


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def versions(outcomes: list[Any]) -> dict[str, Any]:
    """The `check` part's printed versions ({} when it did not run)."""
    for o in outcomes:
        for line in o.output:
            if o.name == "check" and line.startswith("VERSIONS "):
                return json.loads(line[len("VERSIONS "):])
    return {}


def gpu_tests(xml: Path) -> str:
    """'N passed, M failed, K skipped' from pytest's JUnit XML, with the failed tests' names."""
    if not xml.is_file():
        return "no report (the part did not finish)"
    suites = ET.parse(xml).getroot()
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    count = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    bad = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
           if case.find("failure") is not None or case.find("error") is not None]
    passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    line = (f"{passed} passed, {count['failures']} failed, {count['errors']} errors, "
            f"{count['skipped']} skipped")
    return line + (f"; failed: {', '.join(bad)}" if bad else "")


def grpo_rows(out: Path, models: tuple[str, ...]) -> list[str]:
    """One table row per real-size model whose bench wrote its JSON."""
    rows = []
    for model in models:
        path = out / f"grpo_{model}.json"
        if not path.is_file():
            rows.append(f"| {model} | " + " | ".join(["-"] * (len(PHASES) + 2)) + " |")
            continue
        results = json.loads(path.read_text())["results"]
        ours = next(iter(results.values()))["ours"]
        cells = [f"{ours.get(p, 0):.2f}" for p in PHASES]
        cells += [f"{ours['tokens_per_s']:.0f}", f"{ours['peak_mb'] / 1024:.1f}"]
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return rows


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def measured_peak_gib(out: Path, model: str) -> float | None:
    """The step bench's peak CUDA allocation (GiB) of `model`, None without its JSON."""
    grpo = _json(out / f"grpo_{model}.json")
    if not grpo or not grpo.get("results"):
        return None
    return next(iter(grpo["results"].values()))["ours"]["peak_mb"] / 1024


def plan_rows(out: Path, models: tuple[str, ...]) -> list[str]:
    """Planned peak per GPU, the part of it PyTorch's allocator holds (less the CUDA context
    allowance, which max_memory_allocated does not see), the step bench's measured peak, and
    measured / planned (allocator)."""
    rows = []
    for model in models:
        plan, measured = _json(out / f"plan_{model}.json"), measured_peak_gib(out, model)
        if plan is None:
            rows.append(f"| {model} | - | - | "
                        + (f"{measured:.1f}" if measured is not None else "-") + " | - |")
            continue
        allowance = sum(r["gib"] for r in plan["rows"] if r.get("kind") == "allowance")
        allocator = plan["peak_gib"] - allowance
        ratio = f"{measured / allocator:.2f}" if measured is not None and allocator > 0 else "-"
        rows.append(f"| {model} | {plan['peak_gib']:.1f} | {allocator:.1f} | "
                    + (f"{measured:.1f}" if measured is not None else "-") + f" | {ratio} |")
    return rows


def lora_merge_line(out: Path) -> str:
    """bench/lora_merge.py's figures, one line."""
    got = _json(out / "lora_merge.json")
    if got is None:
        return "no figures (the part did not finish)"
    ours = got["merged_state"]
    line = (
        f"{got['model']} ({got['dtype']}, {got['device']}), LoRA r {got['args']['lora_r']} on "
        f"{got['args']['targets']} ({got['lora_layers']} layers): `merged_state` fully consumed "
        f"{ours['median_s']:.3f} s (median of {len(ours['times_s'])}), "
        f"{ours['bytes'] / 2**30:.1f} GiB read, peak extra {ours['peak_extra_mb']:.0f} MiB")
    peft = got.get("peft_in_place")
    return line + (f"; peft merge_adapter + read + unmerge_adapter (TRL 1.16's sync) "
                   f"{peft['median_s']:.3f} s" if peft else "")


def moe_line(out: Path) -> str:
    """bench/grpo_moe.py's figures, one line: each measured depth, then the per-layer slope and
    the value at the full depth, labelled extrapolated."""
    got = _json(out / f"{MOE_PART}.json")
    if got is None:
        return "no figures (the part did not finish)"
    measured = "; ".join(f"{r['layers']} layers: step {r['step']:.2f} s, peak "
                         f"{r['peak_mb'] / 1024:.1f} GiB, {r['trainable'] / 1e6:,.1f}M trained"
                         for r in got["results"])
    target, parts = got["extrapolated_to"], []
    for key, scale, unit in (("step", 1.0, "s"), ("peak_mb", 1 / 1024, "GiB")):
        slope, value = (got.get("extrapolated", {}).get(key) or {}).get("per_layer"), None
        if slope is not None and slope > 0:
            value = got["extrapolated"][key]["value"]
            parts.append(f"{key.removesuffix('_mb')} +{slope * scale:.2f} {unit} per layer, "
                         f"{value * scale:.1f} {unit} at {target} layers")
        elif slope is not None:
            parts.append(f"{key.removesuffix('_mb')}: slope not positive, not extrapolated")
    return (f"measured: {measured}. **EXTRAPOLATED** (linear in text layers, not measured): "
            + ("; ".join(parts) if parts else "one depth only, none"))


def render(outcomes: list[Any], out: Path, *, card: str, commit: str, date: str,
           total_s: float, budget_s: float, settings: str) -> str:
    """The markdown section for one kit run."""
    v = versions(outcomes)
    vllm = (f"vLLM {v.get('vllm')}" if v.get("vllm_imports")
            else "vLLM not importable" + (f" ({v['vllm_error']})" if v.get("vllm_error") else ""))
    lib = (f"Python {v.get('python')}, torch {v.get('torch')} (CUDA {v.get('cuda')}), "
           f"transformers {v.get('transformers')}, trl {v.get('trl')}, peft {v.get('peft')}, "
           f"accelerate {v.get('accelerate')}, datasets {v.get('datasets')}, {vllm}"
           if v else "versions not read (the part did not run)")
    lines = [f"## GPU kit: {card} ({date}, commit {commit})", "",
             f"`python3 -m bench.gpu_kit` on the device machine, {total_s:.0f} s of its "
             f"{budget_s:.0f} s budget. {lib}.", "",
             "| part | result | seconds |", "|---|---|---|"]
    lines += [f"| {o.name} | {o.status} | {o.seconds:.0f} |" for o in outcomes]
    for o in outcomes:
        if o.status != "passed" and o.output:
            lines += ["", f"`{o.name}` ended with:", "```", *o.output[-5:], "```"]
    lines += ["", f"**gpu tests** (`pytest -m gpu`): {gpu_tests(out / 'gpu_tests.xml')}", "",
              f"**Real-size GRPO step** (bench/grpo_step.py, random weights, bf16, {settings}; "
              "3B trains fully, 7B LoRA r 64; median seconds per phase):", "",
              "| model | " + " | ".join(PHASES) + " | tokens/s | peak GPU GiB |",
              "|---|" + "---|" * (len(PHASES) + 2)]
    stepped = tuple(o.name.removeprefix("grpo_") for o in outcomes
                    if o.name.startswith("grpo_") and o.name != MOE_PART)
    lines += grpo_rows(out, stepped)
    planned = tuple(dict.fromkeys([*(o.name.removeprefix("plan_") for o in outcomes
                                     if o.name.startswith("plan_")), *stepped]))
    if planned:
        lines += ["", "**Planner check** (local.train.plan, 1 GPU, no DeepSpeed, the step "
                  "bench's batch and completion length, 10 s clips, encoder trained; GiB): the "
                  "step bench is not train.py (no DDP, no dataloader workers, one process; its "
                  "peak is torch.cuda.max_memory_allocated), so the ratio checks the order of "
                  "magnitude of the planner's model-state, activation and logit rows on one "
                  "card, not its DeepSpeed rows.", "",
                  "| model | planned peak | planned, allocator (no CUDA context) | measured "
                  "peak | measured / planned |", "|---|---|---|---|---|"]
        lines += plan_rows(out, planned)
    if any(o.name == "lora_merge" for o in outcomes):
        lines += ["", "**LoRA merge, HF side of one vLLM weight sync** (bench/lora_merge.py, "
                  "random weights): " + lora_merge_line(out)]
    if any(o.name == MOE_PART for o in outcomes):
        lines += ["", "**Qwen3-Omni-30B-A3B thinker, one LoRA GRPO step at reduced depth** "
                  "(bench/grpo_moe.py; config reported, not byte-exact; random weights, bf16, "
                  "the family's LoRA targets): " + moe_line(out)]
    generation = next((o for o in outcomes if o.name == "generation"), None)
    lines += ["", "**Generation tokens/s** (bench/generation.py): "
              + (generation.status if generation else "not run")]
    if generation and generation.output:  # its report: "## model", a table, "- " figures
        lines += [""] + [f"*{line[3:]}*" if line.startswith("## ") else line
                         for line in generation.output if line.startswith(("|", "- ", "## "))]
    return "\n".join(lines) + "\n"
