"""run.sh stages mmau/mmsu: the command they expand to, the steps they evaluate, the summary,
and (slow) a real run through run.sh and a 2-process data-parallel run on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import evaluate_mmau
from local.eval.steps import evaluations, steps
from local.eval.steps import main as steps_main
from local.eval.summary import write_summary
from tests.helpers import REPO
from tests.sources import MMAU_EVAL_ITEMS, mmau_eval_set

N_ITEMS = MMAU_EVAL_ITEMS
COMPLETE = ("model.safetensors", "trainer_state.json")  # a finished HF Trainer save


def run_sh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    return subprocess.run(["bash", "run.sh", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def _command(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if "local.eval.steps" in line)


@pytest.mark.parametrize(
    ("args", "expected", "absent"),
    [
        pytest.param(["--stage", "mmau", "--nproc", "8"],  # (default auto: the visible GPUs)
                     ["Stage mmau: Qwen/Qwen2.5-Omni-7B (step 0)",
                      "-m torch.distributed.run --standalone --nproc_per_node 8 -m "
                      "local.eval.steps --bench mmau --model Qwen/Qwen2.5-Omni-7B --run_dir "
                      "exp/grpo --checkpoints '' -- --template default --batch_size 8 "
                      "--max_new_tokens 2048 --mmau_json data/mmau/mmau-test-mini.json "
                      "--mmau_audio_dir data/mmau/test-mini-audios"],
                     ["--overwrite", "--with_no_audio", "--no_audio"], id="mmau-defaults"),
        pytest.param(["--stage", "mmsu", "--with_no_audio", "true"],
                     ["--checkpoints '' --with_no_audio -- --template default",
                      "(step 0) + exp/grpo/checkpoint-*", "step 0 and the last step also "
                      "without audio"], ["-- --no_audio", " --no_audio "],
                     id="with-no-audio-asks-the-steps-loop"),
        pytest.param(["--stage", "mmsu", "--nproc", "1", "--checkpoints", "100 200",
                      "--overwrite", "--", "--limit", "5"],
                     ["Stage mmsu:", "python -m local.eval.steps --bench mmsu",
                      "--checkpoints 100\\ 200", "--mmsu_path data/mmsu --overwrite --limit 5"],
                     ["torch.distributed.run"], id="mmsu-one-process-overrides"),
        pytest.param(["--stage", "mmau", "--template", "think", "--eval_batch_size", "2",
                      "--eval_max_new_tokens", "16", "--run_name", "r1", "--data_dir", "/d"],
                     ["--template think --batch_size 2 --max_new_tokens 16",
                      "--run_dir exp/r1", "--mmau_json /d/mmau/mmau-test-mini.json"], [],
                     id="options-reach-the-evaluator"),
    ],
)
def test_dry_run_expands_to_one_eval_call(args: list[str], expected: list[str],
                                          absent: list[str]) -> None:
    result = run_sh("--dry_run", *args)
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stderr, text
    command = _command(result.stderr)
    for text in absent:
        assert text not in command, text


def _checkpoint(run_dir: Path, name: str, files: tuple[str, ...] = COMPLETE) -> Path:
    folder = run_dir / name
    folder.mkdir(parents=True)
    for file in files:
        if file.endswith(".safetensors"):  # whole weights: the stage checks they are not cut
            save_file({"w": torch.zeros(4)}, str(folder / file))
        else:
            (folder / file).write_text("{}")
    return folder


def test_steps_are_step_zero_then_checkpoints_by_number(tmp_path: Path) -> None:
    for name in ["checkpoint-20", "checkpoint-100", "checkpoint-5", "checkpoint-x", "other"]:
        _checkpoint(tmp_path, name)
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    assert [s for s, _ in steps("base", tmp_path)] == [0, 5, 20, 100]
    assert steps("base", tmp_path, "100 20") == [(0, "base"), (20, str(tmp_path / "checkpoint-20")),
                                                 (100, str(tmp_path / "checkpoint-100"))]
    with pytest.raises(SystemExit, match="checkpoint-300 not found"):
        steps("base", tmp_path, "20 300")
    assert steps("base", tmp_path / "no-run-yet") == [(0, "base")]


@pytest.mark.parametrize(
    ("plan", "text_only"),
    [
        pytest.param([(0, "m")], [0], id="step-0-only"),
        pytest.param([(0, "m"), (5, "c5")], [0, 5], id="two-steps"),
        pytest.param([(0, "m"), (5, "c5"), (9, "c9"), (20, "c20")], [0, 20], id="first-and-last"),
    ],
)
def test_text_only_runs_are_step_zero_and_the_last_step(tmp_path: Path, plan: list,
                                                         text_only: list[int]) -> None:
    runs = evaluations(plan, tmp_path, with_no_audio=True)
    assert [(s, o.name, a) for s, _, o, a in runs] == (
        [(s, str(s), []) for s, _ in plan]
        + [(s, f"{s}-no_audio", ["--no_audio"]) for s in text_only])
    assert dict((s, m) for s, m, _, _ in runs) == dict(plan)  # the same model per step
    assert evaluations(plan, tmp_path, with_no_audio=False) == runs[:len(plan)]


def test_with_no_audio_refuses_a_no_audio_main_run(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        steps_main(["--bench", "mmau", "--model", "m", "--run_dir", str(tmp_path),
                    "--with_no_audio", "--", "--no_audio"])
    assert "must not hold --no_audio" in capsys.readouterr().err



# The HF Trainer writes trainer_state.json last (transformers 5.24 trainer.py, _save_checkpoint:
# save_model, then optimizer/scheduler/RNG, then state.save_to_json): a folder without it is a
# save that was interrupted, its weights possibly half-written.
@pytest.mark.parametrize(
    ("files", "evaluated"),
    [
        pytest.param(COMPLETE, True, id="complete"),
        pytest.param(("model.safetensors",), False, id="weights-but-no-trainer-state"),
        pytest.param(("model.safetensors.index.json",), False, id="sharded-save-interrupted"),
        pytest.param(("trainer_state.json",), False, id="no-weights"),
        pytest.param((), False, id="empty-folder"),
    ],
)
def test_a_half_written_checkpoint_is_not_evaluated(tmp_path: Path, files: tuple[str, ...],
                                                    evaluated: bool) -> None:
    _checkpoint(tmp_path, "checkpoint-10")
    _checkpoint(tmp_path, "checkpoint-20", files)
    assert [s for s, _ in steps("base", tmp_path)] == ([0, 10, 20] if evaluated else [0, 10])
    if evaluated:
        assert steps("base", tmp_path, "20")[-1] == (20, str(tmp_path / "checkpoint-20"))
    else:  # named explicitly: refused, with the reason
        with pytest.raises(SystemExit, match="checkpoint-20 .*incomplete"):
            steps("base", tmp_path, "20")


def test_set_title_and_notes_reach_every_file(tiny_omni: Path, tmp_path: Path) -> None:
    """`-- --set_title X` names the question set in results.json, results.md and summary.md;
    `--note` puts a line under summary.md's title (e.g. what step 0's model is)."""
    title = "toy set (MMAU format)"
    notes = ["step 0 evaluated with --model A although the run was trained from B",
             "a second note"]
    json_path, audio_dir = mmau_eval_set(tmp_path / "data")
    run_dir = tmp_path / "exp" / "r"
    summary = steps_main(["--bench", "mmau", "--model", str(tiny_omni), "--run_dir",
                          str(run_dir), "--note", notes[0], "--note", notes[1], "--",
                          "--mmau_json", str(json_path), "--mmau_audio_dir", str(audio_dir),
                          "--set_title", title, "--max_new_tokens", "2", "--batch_size", "2",
                          "--dtype", "float32", "--limit", "2"])
    step0 = run_dir / "eval" / "mmau" / "0"
    assert json.loads((step0 / "results.json").read_text())["set_title"] == title
    assert (step0 / "results.md").read_text().startswith(f"## {title}: {tiny_omni}")
    text = summary.read_text()
    assert text.startswith(f"# {title} across steps ({run_dir / 'eval' / 'mmau'})\n")
    head = text.split("| step |")[0]
    assert [line for line in head.splitlines() if line.startswith("**Note:**")] == \
        [f"**Note:** {note}" for note in notes]
    assert "MMAU test-mini" not in text.splitlines()[0]


def _results(folder: Path, step: int, protocols: dict[str, float]) -> None:
    entries = {p: {"protocol": p, "accuracy": acc, "correct": int(acc), "total": 100,
                   "no_prediction": 1} for p, acc in protocols.items()}
    data = next(iter(entries.values())) if len(entries) == 1 else \
        {"benchmark": "MMSU", "protocols": entries}
    (folder / str(step)).mkdir(parents=True)
    (folder / str(step) / "results.json").write_text(json.dumps(
        {**data, "settings": {"model": f"m{step}"}}))


@pytest.mark.parametrize(
    ("protocols", "header"),
    [
        pytest.param({"mmau": 50.0}, "| step | model | accuracy (%) [mmau] |", id="mmau"),
        pytest.param({"exact": 40.0, "letter": 60.0},
                     "| step | model | accuracy (%) [exact] | accuracy (%) [letter] |", id="mmsu"),
    ],
)
def test_summary_table_and_plot(tmp_path: Path, protocols: dict, header: str) -> None:
    for step in (100, 0, 20):
        _results(tmp_path, step, {p: a + step / 10 for p, a in protocols.items()})
    (tmp_path / "notes").mkdir()
    path = write_summary(tmp_path)
    lines = path.read_text().splitlines()
    assert any(line.startswith(header) for line in lines)
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 0", "| 20", "| 100"]
    assert f"{list(protocols.values())[0] + 2:.2f}" in rows[1]
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_without_results_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="run the evaluation first"):
        write_summary(tmp_path)


@pytest.mark.slow
def test_stage_mmau_end_to_end_through_run_sh(tiny_omni: Path, tmp_path: Path) -> None:
    mmau_eval_set(tmp_path / "data" / "mmau")
    run_dir = tmp_path / "exp" / "r"
    run_dir.mkdir(parents=True)
    shutil.copytree(tiny_omni, run_dir / "checkpoint-5")
    (run_dir / "checkpoint-5" / "trainer_state.json").write_text("{}")  # a finished save
    result = run_sh("--stage", "mmau", "--nproc", "1", "--model", str(tiny_omni),
                    "--exp_dir", str(tmp_path / "exp"), "--run_name", "r",
                    "--data_dir", str(tmp_path / "data"), "--eval_max_new_tokens", "4",
                    "--eval_batch_size", "4", "--", "--dtype", "float32", "--limit", "6")
    assert result.returncode == 0, result.stderr[-3000:]
    eval_dir = run_dir / "eval" / "mmau"
    for step in ("0", "5"):
        results = json.loads((eval_dir / step / "results.json").read_text())
        assert results["total"] == 6 and (eval_dir / step / "predictions.json").exists()
    summary = (eval_dir / "summary.md").read_text()
    assert "| 0 |" in summary and "| 5 |" in summary
    assert (eval_dir / "summary.png").exists()
    # without --with_no_audio: no text-only run, no contribution section
    assert not list(eval_dir.glob("*-no_audio")) and "without audio" not in summary


@pytest.mark.slow
def test_with_no_audio_evaluates_first_and_last_step_text_only(tiny_omni: Path,
                                                               tmp_path: Path) -> None:
    json_path, audio_dir = mmau_eval_set(tmp_path / "data")
    run_dir = tmp_path / "exp" / "r"
    for step in (5, 10):
        shutil.copytree(tiny_omni, run_dir / f"checkpoint-{step}")
        (run_dir / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    summary = steps_main(["--bench", "mmau", "--model", str(tiny_omni), "--run_dir",
                          str(run_dir), "--with_no_audio", "--", "--mmau_json", str(json_path),
                          "--mmau_audio_dir", str(audio_dir), "--max_new_tokens", "3",
                          "--batch_size", "4", "--dtype", "float32", "--limit", "6"])
    eval_dir = run_dir / "eval" / "mmau"
    assert sorted(p.name for p in eval_dir.iterdir() if p.is_dir()) == [
        "0", "0-no_audio", "10", "10-no_audio", "5"]
    text = summary.read_text()
    assert "| step | task | items | with audio (%) | without audio (%) | difference (points) |" \
        in text
    for step in (0, 10):
        with_audio = json.loads((eval_dir / str(step) / "results.json").read_text())
        without = json.loads((eval_dir / f"{step}-no_audio" / "results.json").read_text())
        assert (with_audio["settings"]["no_audio"], without["settings"]["no_audio"]) == \
            (False, True)
        assert with_audio["settings"]["model"] == without["settings"]["model"]
        rows = [("all", with_audio["total"], with_audio["accuracy"], without["accuracy"])]
        text_only = {r["group"]: r["accuracy"] for r in without["tables"]["task"]}
        rows += [(r["group"], r["total"], r["accuracy"], text_only[r["group"]])
                 for r in with_audio["tables"]["task"]]
        for group, total, acc, acc_text in rows:
            assert (f"| {step} | {group} | {total} | {acc:.2f} | {acc_text:.2f} | "
                    f"{acc - acc_text:+.2f} |") in text
    assert "| 5 | all |" not in text  # a middle step is evaluated with audio only


@pytest.mark.slow
def test_two_processes_shard_and_merge_to_the_single_process_predictions(
        tiny_omni: Path, tmp_path: Path) -> None:
    json_path, audio_dir = mmau_eval_set(tmp_path / "data")
    missing = sorted(audio_dir.iterdir())[3]
    missing.unlink()  # one clip gone: every rank reads the question file, rank 0 alone says so
    common = ["--model", str(tiny_omni), "--mmau_json", str(json_path), "--mmau_audio_dir",
              str(audio_dir), "--max_new_tokens", "6", "--batch_size", "1", "--dtype", "float32"]
    evaluate_mmau.main([*common, "--out_dir", str(tmp_path / "single")])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "evaluate_mmau.py", *common, "--out_dir",
                           str(tmp_path / "dp")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [(tmp_path / "dp" / "partial" / f"rank{r}.jsonl").read_text().splitlines()
            for r in (0, 1)]
    assert [len(lines) for lines in logs] == [N_ITEMS // 2, N_ITEMS // 2]
    assert done.stdout.count("MMAU test-mini accuracy") == 1  # rank 0 alone reports
    assert done.stderr.count("1 audio files not found") == 1, done.stderr[-3000:]
    assert f"MMAU test-mini (rank 0 of 2): 100%|██████████| {N_ITEMS // 2}/{N_ITEMS // 2} [" \
        in done.stderr  # rank 0's bar: its share, with elapsed<ETA and rate
    assert "INFO" not in "".join(line for line in done.stderr.splitlines()
                                 if "[rank 1]" in line)
    # the clip's "scored wrong" warning comes from the rank that asked it, once
    assert done.stderr.count(f"{missing.stem}: unreadable audio") == 1, done.stderr[-3000:]

    def predictions(folder: str) -> list:
        items = json.loads((tmp_path / folder / "predictions.json").read_text())
        return [(i["id"], i["model_output"], i["response"]) for i in items]

    assert predictions("dp") == predictions("single")
