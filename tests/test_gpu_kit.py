"""The GPU kit (bench/gpu_kit.py) as far as a CPU shows it: its dry run (the parts in priority
order, their caps within the budget), the planner check's CPU half, the wheel plan and the
device-side check, a part past its timeout, and a whole run of stand-in parts writing RESULTS.md.
No GPU, no network, no timing asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import gpu_kit, gpu_wheels
from bench.gpu_kit import Part
from bench.gpu_kit_report import grpo_rows, plan_rows

WHEEL = "{}-{}-py3-none-any.whl"


def wheel_folder(tmp_path: Path, *wheels: tuple[str, str], manifest: bool = True) -> Path:
    """Empty files named as wheels: the dry run and the check read names, not contents."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name, version in wheels:
        (folder / WHEEL.format(name.replace("-", "_"), version)).write_bytes(b"")
    if manifest:
        (folder / gpu_wheels.MANIFEST).write_text("{}")
    return folder


def dry(tmp_path: Path, folder: Path) -> int:
    return gpu_kit.main(["--dry_run", "--wheels", str(folder), "--out", str(tmp_path / "out"),
                         "--results", str(tmp_path / "RESULTS.md")])


def test_dry_run_prints_every_command_and_checks_the_wheels(tmp_path, capsys) -> None:
    folder = wheel_folder(tmp_path, ("transformers", "5.24.0"), ("trl", "1.16.0"))
    assert dry(tmp_path, folder) == 0
    printed = capsys.readouterr().out
    for text in ("pip install -q --no-index --no-deps", "--target /tmp/gpu-kit-site",
                 str(folder / WHEEL.format("trl", "1.16.0")),
                 f"-m bench.gpu_wheels --check {folder}", "-m pytest -m gpu tests/test_gpu.py",
                 "--real_size qwen2_5_omni_3b", "--real_size qwen2_5_omni_7b",
                 "--max_completion_length 1024 --encoder trained", "-m bench.generation",
                 "-m bench.gpu_kit --plan_check qwen2_5_omni_7b",
                 "python -m local.train.plan --model " + str(tmp_path / "out" / "model_configs"),
                 "--config conf/grpo.yaml --deepspeed none --nproc 1 --nnodes 1",
                 "--lora_r 64 --lora_alpha 128",
                 "-m bench.lora_merge --real_size qwen2_5_omni_7b --lora_r 64 --json",
                 "HF only where vllm does not import", "wheels: 2 in",
                 "-m bench.grpo_moe --layers 2,4 --max_completion_length 128",
                 "config reported, not byte-exact", "48 EXTRAPOLATED"):
        assert text in printed, text
    order = [line[1:line.index("]")] for line in printed.splitlines() if line.startswith("[")]
    assert order == ["install", "check", "plan_qwen2_5_omni_7b", "grpo_qwen2_5_omni_7b",
                     "grpo_qwen2_5_omni_3b", "plan_qwen2_5_omni_3b", "lora_merge",
                     "grpo_qwen3_omni_moe", "gpu_tests", "generation"]
    assert "PROBLEM" not in printed
    assert not (tmp_path / "RESULTS.md").exists() and not (tmp_path / "out").exists()
    assert (folder / "COMMIT").read_text().strip()  # the device's copy has no git


def test_the_priority_parts_fit_the_budget_together(tmp_path) -> None:
    """Planner check, default-config steps and the LoRA merge come first, and their caps (each
    part's timeout) fit the 8-minute budget less the report's reserve; no cap exceeds it."""
    args = gpu_kit.parse(["--out", str(tmp_path)])
    kit = gpu_kit.parts(args)
    names = [p.name for p in kit]
    assert tuple(names[:len(gpu_kit.PRIORITY)]) == gpu_kit.PRIORITY
    assert args.budget_s == 480
    assert sum(p.cap_s for p in kit[:len(gpu_kit.PRIORITY)]) <= args.budget_s - gpu_kit.RESERVE_S
    assert all(p.needs_s <= p.cap_s <= args.budget_s for p in kit)
    steps = [p for p in kit if p.name.startswith("grpo_") and p.name != gpu_kit.MOE_PART]
    assert [p.name for p in steps] == ["grpo_qwen2_5_omni_7b", "grpo_qwen2_5_omni_3b"]
    assert all(p.argv[p.argv.index("--encoder") + 1] == "trained" for p in steps)
    # the Qwen3-Omni step comes after the priorities: the default budget reaches it only where
    # they end early (their caps leave nothing for its 90 s); --only runs it on its own
    assert gpu_kit.MOE_PART not in gpu_kit.PRIORITY
    assert names.index(gpu_kit.MOE_PART) == len(gpu_kit.PRIORITY)
    moe = kit[names.index(gpu_kit.MOE_PART)]
    assert args.budget_s - gpu_kit.RESERVE_S - sum(
        p.cap_s for p in kit[:len(gpu_kit.PRIORITY)]) < moe.needs_s <= moe.cap_s
    only = gpu_kit.selected(kit, gpu_kit.MOE_PART)
    assert [p.name for p in only] == ["install", "check", gpu_kit.MOE_PART]
    assert sum(p.cap_s for p in only) <= args.budget_s - gpu_kit.RESERVE_S


def test_only_runs_the_named_parts_and_refuses_an_unknown_one(tmp_path, capsys) -> None:
    folder = wheel_folder(tmp_path, ("trl", "1.16.0"))
    assert gpu_kit.main(["--dry_run", "--only", "grpo_qwen3_omni_moe", "--wheels", str(folder),
                         "--out", str(tmp_path / "out")]) == 0
    order = [line[1:line.index("]")] for line in capsys.readouterr().out.splitlines()
             if line.startswith("[")]
    assert order == ["install", "check", "grpo_qwen3_omni_moe"]
    with pytest.raises(SystemExit, match="no part grpo_nothing"):
        gpu_kit.main(["--dry_run", "--only", "grpo_nothing", "--wheels", str(folder)])


@pytest.mark.slow  # ~10 s: the real vocabulary, the 7B config planned (CPU, no weights)
def test_plan_check_plans_the_benchs_model_and_setting(tmp_path) -> None:
    """The plan part writes the bench's 7B config (bench/models.py) where the planner reads it
    and plans the step bench's setting: 1 GPU, no DeepSpeed, batch 4, 1024 new tokens, LoRA."""
    assert gpu_kit.main(["--plan_check", "qwen2_5_omni_7b", "--out", str(tmp_path)]) == 0
    config = json.loads((tmp_path / "model_configs" / "qwen2_5_omni_7b" / "config.json")
                        .read_text())
    assert config["model_type"] == "qwen2_5_omni_thinker"
    assert config["text_config"]["hidden_size"] == 3584
    plan = json.loads((tmp_path / "plan_qwen2_5_omni_7b.json").read_text())
    s = plan["settings"]
    assert (s["gpus_per_node"], s["nodes"], s["zero"]) == (1, 1, None)
    assert (s["batch"], s["grad_accum"], s["completion"], s["audio_seconds"]) == (4, 2, 1024, 10)
    assert s["peft"]["r"] == 64 and not s["freeze_audio"] and not s["use_vllm"]
    counts = plan["parameters"]
    assert 8.8e9 < sum(counts["trained"].values()) + sum(counts["frozen"].values()) < 9.3e9
    (row,) = plan_rows(tmp_path, ("qwen2_5_omni_7b",))  # no step JSON here: no ratio
    assert row.startswith("| qwen2_5_omni_7b | ") and row.endswith("| - | - |")


@pytest.mark.parametrize("case,expected", [
    ("empty", "no wheels"),
    ("two_versions", "two wheels of peft"),
    ("no_manifest", "manifest.json: missing"),
    ("too_large", "MiB a device call carries"),
])
def test_dry_run_refuses_a_folder_the_device_call_would_fail_on(tmp_path, capsys, monkeypatch,
                                                                case: str, expected: str) -> None:
    wheels = {"empty": [], "two_versions": [("peft", "0.21.2"), ("peft", "0.20.0")]}.get(
        case, [("peft", "0.21.2")])
    folder = wheel_folder(tmp_path, *wheels, manifest=case != "no_manifest")
    if case == "too_large":
        monkeypatch.setattr(gpu_wheels, "CARRY_LIMIT", 1000)  # the working tree alone is larger
    assert dry(tmp_path, folder) == 1
    assert expected in capsys.readouterr().out
    assert not (folder / "COMMIT").exists()


def test_plan_carries_what_the_device_lacks_or_holds_at_another_version(monkeypatch) -> None:
    monkeypatch.setattr(gpu_wheels, "DEVICE", {"fine": "2.0", "old": "1.0", "unread": None,
                                               "torch": "2.11.0"})
    requires = {
        "app": ["fine>=1.5", "old>=1.5", "unread>=3", "absent", "torch>=2.12",
                "docs; extra == 'docs'", "aifc; python_version >= '3.13'"],
        "old": [], "absent": ["app>=2", "deeper"], "deeper": [],
    }
    result = gpu_wheels.plan({"app": "1.0"}, {"old": "1.7", "absent": "0.3", "deeper": "9"},
                             lambda name, version: requires[name])
    assert result.carry == {"app": "1.0", "old": "1.7", "absent": "0.3", "deeper": "9"}
    assert "the device has 1.0" in result.why["old"] and "absent" in result.why["deeper"]
    assert result.device_unread == ["unread>=3 (app)"]
    assert any("torch" in w and "not carried" in w for w in result.warnings)
    assert any("app>=2 (absent): carried app is 1.0" in w for w in result.warnings)


def test_plan_lets_pip_choose_where_the_lock_does_not_fit(monkeypatch) -> None:
    monkeypatch.setattr(gpu_wheels, "DEVICE", {})
    result = gpu_wheels.plan({"app": "1.0"}, {"dep": "1.0"},
                             lambda name, version: {"app": ["dep>=2"], "dep": []}[name])
    assert result.carry["dep"] == ">=2"  # gather() downloads `dep>=2`, then records its version


def test_check_reports_what_the_device_would_get_wrong(tmp_path, monkeypatch) -> None:
    """A carried wheel not importable, one shadowed by another version, and unmet needs."""
    site = tmp_path / "site"
    meta = site / "kitprobe-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: kitprobe\nVersion: 1.0\n"
                                   "Requires-Dist: packaging>=999\n"
                                   "Requires-Dist: kitprobe-missing-dep\n"
                                   "Requires-Dist: pytest; extra == 'test'\n")
    monkeypatch.syspath_prepend(str(site))
    folder = wheel_folder(tmp_path, ("kitprobe", "1.0"), ("kitprobe-absent", "2.0"),
                          ("pytest", "0.1"))
    problems = gpu_wheels.check(folder)
    assert "kitprobe-absent: carried 2.0 but not importable" in problems
    assert any(p.startswith("pytest: carried 0.1 but") for p in problems)
    assert any(p.startswith("packaging>=999 (kitprobe):") for p in problems)
    assert "kitprobe-missing-dep (kitprobe): not installed" in problems
    assert len(problems) == 4  # the extra's need is not one


def test_a_part_past_its_timeout_is_killed_and_recorded(tmp_path) -> None:
    part = Part("sleeper", [sys.executable, "-c",
                            "import time; print('started', flush=True); time.sleep(120)"], 1, 0)
    outcome = gpu_kit.run_part(part, 2, {}, tmp_path / "log")
    assert outcome.status == "timed out after 2 s"
    assert outcome.output == ["started"]
    assert "===== sleeper" in (tmp_path / "log").read_text()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("vllm", [False, True])
def test_kit_runs_each_part_and_appends_its_figures(tmp_path, monkeypatch, vllm: bool) -> None:
    """Stand-in parts (real processes): a failure and a budget shortfall are recorded and the
    next part runs; generation runs only where vllm imports; RESULTS.md keeps what it had and
    gains the section; --out gets a copy."""
    out, results = tmp_path / "out", tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nearlier figures\n")
    versions = {"python": "3.12.3", "torch": "2.11.0", "cuda": "13.0", "transformers": "5.24.0",
                "vllm": "0.33.0" if vllm else None, "vllm_imports": vllm}
    if not vllm:
        versions["vllm_error"] = "ModuleNotFoundError"
    junit = ('<testsuites><testsuite tests="2" failures="1" errors="0" skipped="0">'
             '<testcase classname="tests.test_gpu" name="test_a"/>'
             '<testcase classname="tests.test_gpu" name="test_b"><failure/></testcase>'
             '</testsuite></testsuites>')
    grpo = {"results": {"qwen2_5_omni_3b/G=4": {"ours": {
        "rollout": 30.5, "ref_logps": 1.25, "policy_logps": 1.5, "backward": 3.0,
        "optimizer": 0.5, "step": 37.0, "tokens_per_s": 123.4, "peak_mb": 81920}}}}
    plan = {"peak_gib": 81.5, "rows": [{"label": "states", "gib": 80.0, "kind": "states"},
                                       {"label": "CUDA context", "gib": 1.5, "kind": "allowance"}]}
    merge = {"model": "qwen2_5_omni_7b", "dtype": "bfloat16", "device": "Stand-in GPU",
             "args": {"lora_r": 64, "targets": "q_proj k_proj v_proj o_proj"}, "lora_layers": 112,
             "merged_state": {"median_s": 0.25, "times_s": [0.3, 0.25, 0.2], "bytes": 17 * 2**30,
                              "peak_extra_mb": 300.0},
             "peft_in_place": {"median_s": 0.5}}
    moe = {"extrapolated_to": 48, "results": [
        {"layers": 2, "step": 10.0, "peak_mb": 10240, "trainable": 2e8},
        {"layers": 4, "step": 12.0, "peak_mb": 14336, "trainable": 4e8}],
        "extrapolated": {"step": {"per_layer": 1.0, "value": 56.0},
                         "peak_mb": {"per_layer": 2048.0, "value": 104448.0}}}
    fake = [
        Part("install", _python("pass"), 10, 0),
        Part("check", _python(f"print('VERSIONS ' + {json.dumps(versions)!r})"), 10, 0),
        Part("gpu_tests", _python(f"open({str(out / 'gpu_tests.xml')!r}, 'w').write({junit!r});"
                                  " raise SystemExit(1)"), 10, 0),
        Part("grpo_qwen2_5_omni_3b", _python(
            f"open({str(out / 'grpo_qwen2_5_omni_3b.json')!r}, 'w').write({json.dumps(grpo)!r})"),
            10, 0),
        Part("plan_qwen2_5_omni_3b", _python(
            f"open({str(out / 'plan_qwen2_5_omni_3b.json')!r}, 'w').write({json.dumps(plan)!r})"),
            10, 0),
        Part("grpo_qwen2_5_omni_7b", _python("pass"), 10, 10_000),
        Part("lora_merge", _python(
            f"open({str(out / 'lora_merge.json')!r}, 'w').write({json.dumps(merge)!r})"), 10, 0),
        Part("grpo_qwen3_omni_moe", _python(
            f"open({str(out / 'grpo_qwen3_omni_moe.json')!r}, 'w').write({json.dumps(moe)!r})"),
            10, 0),
        Part("generation", _python("import sys; hf_only = '--hf_only' in sys.argv;"
                                   "print('## omni 3b'); print('| hf | 10 tokens/s |');"
                                   "print('- ratio 2x' if not hf_only else '- hf only');"
                                   "print('noise')"), 10, 0),
    ]
    monkeypatch.setattr(gpu_kit, "parts", lambda args, py=sys.executable: fake)
    monkeypatch.setattr(gpu_kit, "card", lambda: "Stand-in GPU, 80 GiB")
    assert gpu_kit.main(["--out", str(out), "--results", str(results), "--budget_s", "300"]) == 1
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nearlier figures\n")
    assert "## GPU kit: Stand-in GPU, 80 GiB (" in text and ", commit " in text
    assert "torch 2.11.0 (CUDA 13.0), transformers 5.24.0" in text
    assert "| gpu_tests | failed (exit 1) |" in text
    assert "1 passed, 1 failed, 0 errors, 0 skipped; failed: tests.test_gpu::test_b" in text
    assert "| qwen2_5_omni_3b | 30.50 | 1.25 | 1.50 | 3.00 | 0.50 | 37.00 | 123 | 80.0 |" in text
    assert "| grpo_qwen2_5_omni_7b | not run: " in text and "| qwen2_5_omni_7b | - |" in text
    assert "audio encoder trained" in text and "not its DeepSpeed rows" in text
    assert "| qwen2_5_omni_3b | 81.5 | 80.0 | 80.0 | 1.00 |" in text  # measured / planned
    assert "| qwen2_5_omni_7b | - | - | - | - |" in text
    assert ("`merged_state` fully consumed 0.250 s (median of 3), 17.0 GiB read, peak extra "
            "300 MiB; peft merge_adapter + read + unmerge_adapter (TRL 1.16's sync) 0.500 s"
            in text)
    assert ("one LoRA GRPO step at reduced depth** (bench/grpo_moe.py; config reported, not "
            "byte-exact; random weights, bf16, the family's LoRA targets): measured: 2 layers: "
            "step 10.00 s, peak 10.0 GiB, 200.0M trained; 4 layers: step 12.00 s, peak 14.0 GiB, "
            "400.0M trained. **EXTRAPOLATED** (linear in text layers, not measured): step +1.00 "
            "s per layer, 56.0 s at 48 layers; peak +2.00 GiB per layer, 102.0 GiB at 48 layers"
            in text)
    assert "| qwen3_omni_moe |" not in text  # not a grpo_step row nor a planner row
    if vllm:
        assert "vLLM 0.33.0" in text and "| generation | passed |" in text
        assert "*omni 3b*\n| hf | 10 tokens/s |\n- ratio 2x\n" in text and "noise" not in text
    else:
        assert "vLLM not importable (ModuleNotFoundError)" in text
        assert "| generation | passed (HF only: vllm does not import here" in text
        assert "*omni 3b*\n| hf | 10 tokens/s |\n- hf only\n" in text  # ran with --hf_only
    assert (out / "RESULTS.md").read_text() == text
    assert "===== gpu_tests" in (out / "gpu_kit.log").read_text()


@pytest.mark.slow  # ~15 s: one tiny CPU GRPO step
def test_step_rows_read_what_the_step_bench_writes(tmp_path) -> None:
    from bench import grpo_step

    grpo_step.main(["--models", "scaled_omni7b", "--configs", "ours", "--G", "2",
                    "--prompts", "1", "--clip_s", "1", "--steps", "1", "--warmup", "0",
                    "--max_completion_length", "2",
                    "--json", str(tmp_path / "grpo_qwen2_5_omni_3b.json")])
    (row,) = grpo_rows(tmp_path, ("qwen2_5_omni_3b",))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "qwen2_5_omni_3b" and len(cells) == 9
    assert all(float(c) >= 0 for c in cells[1:]) and float(cells[6]) > 0  # step seconds


@pytest.mark.slow  # ~15 s: imports both benches, builds the real-size configs
def test_the_bench_parts_arguments_are_the_benches_own(tmp_path) -> None:
    """The kit's grpo_step / grpo_moe / lora_merge / generation arguments parse: grpo_step,
    grpo_moe and lora_merge get as far as asking for a GPU, generation's dry run (no model, no
    vLLM) plans the engine."""
    from bench import generation, grpo_moe, grpo_step, lora_merge

    kit = {p.name: p.argv for p in gpu_kit.parts(gpu_kit.parse(["--out", str(tmp_path)]))}
    for model in gpu_kit.REAL:
        argv = kit[f"grpo_{model}"]
        with pytest.raises(SystemExit, match="needs a CUDA GPU"):
            grpo_step.main(argv[argv.index("bench.grpo_step") + 1:])
    argv = kit[gpu_kit.MOE_PART]
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        grpo_moe.main(argv[argv.index("bench.grpo_moe") + 1:])
    argv = kit["lora_merge"]
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        lora_merge.main(argv[argv.index("bench.lora_merge") + 1:])
    argv = kit["generation"]
    plans = generation.main([*argv[argv.index("bench.generation") + 1:], "--dry_run"])
    assert set(plans) == {"qwen2_5_omni_3b"}
