"""evaluate_mmau.py end to end on CPU: a tiny model, 20 MMAU items, generated audio.

The items are tests/sources.py's `mmau_eval_set`: from the real test-mini file when the workspace
has it (20 items spread over the file), else synthetic items of the same shape; the audio is
generated and named by each item's audio_id.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate_mmau
from local.core.answers import extract_answer
from local.eval.benchmarks.mmau import MMAU
from local.eval.generation import Generator
from local.eval.options import build_parser
from tests.helpers import REPO
from tests.sources import MMAU_EVAL_ITEMS, mmau_eval_set, write_mmau_json

N_ITEMS = MMAU_EVAL_ITEMS
FAST = ["--max_new_tokens", "8", "--batch_size", "4", "--dtype", "float32"]


def run(model: Path, json_path: Path, audio_dir: Path, out_dir: Path, *extra: str) -> dict:
    return evaluate_mmau.main(["--model", str(model), "--mmau_json", str(json_path),
                           "--mmau_audio_dir", str(audio_dir), "--out_dir", str(out_dir),
                           *FAST, *extra])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return mmau_eval_set(tmp_path_factory.mktemp("mmau"))


@pytest.fixture(scope="module")
def full_run(tiny_omni, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "0"
    run(tiny_omni, *data, out)
    return out


def _predictions(out: Path) -> dict[str, tuple]:
    return {i["id"]: (i["model_output"], i["response"])
            for i in json.loads((out / "predictions.json").read_text())}


def test_end_to_end_writes_every_file_in_the_official_format(full_run: Path, data) -> None:
    assert {p.name for p in full_run.iterdir()} >= {"predictions.json", "results.json",
                                                    "results.md", "partial"}
    original = json.loads(data[0].read_text())
    predictions = json.loads((full_run / "predictions.json").read_text())
    assert len(predictions) == N_ITEMS
    for item, pred in zip(original, predictions, strict=True):
        assert {k: pred[k] for k in item} == item  # every original field, unchanged
        assert pred["response"] is not None and pred["prediction_error"] is None
        assert pred["model_output"] == extract_answer(pred["response"], "eval")
    results = json.loads((full_run / "results.json").read_text())
    assert results["total"] == N_ITEMS and results["no_prediction"] == 0
    assert results["accuracy"] == pytest.approx(100 * results["correct"] / N_ITEMS)
    assert set(results["tables"]) == {"overall", "task", "difficulty", "sub-category"}
    assert sum(r["total"] for r in results["tables"]["task"]) == N_ITEMS
    markdown = (full_run / "results.md").read_text()
    assert "Accuracy [mmau]" in markdown and "| task |" in markdown


def test_score_only_reproduces_the_run(full_run: Path, data, tmp_path: Path) -> None:
    out = tmp_path / "rescored.json"
    rescored = evaluate_mmau.main(["--score_only", str(full_run / "predictions.json"),
                               "--mmau_json", str(data[0]), "--out", str(out)])
    original = json.loads((full_run / "results.json").read_text())
    assert rescored["accuracy"] == original["accuracy"]
    assert rescored["question_check"]["matched"] == N_ITEMS
    assert json.loads(out.read_text())["accuracy"] == original["accuracy"]
    assert out.with_suffix(".md").exists()


def test_a_killed_run_resumes_to_the_same_predictions(tiny_omni, data, full_run: Path,
                                                      tmp_path: Path, monkeypatch) -> None:
    original_generate = Generator.generate
    answered: list[str] = []

    def crash_on_third_batch(self, records, *args, **kwargs):
        if len(answered) >= 8:
            raise KeyboardInterrupt  # the job is killed
        answered.extend(r.id for r in records)
        return original_generate(self, records, *args, **kwargs)

    monkeypatch.setattr(Generator, "generate", crash_on_third_batch)
    out = tmp_path / "0"
    with pytest.raises(KeyboardInterrupt):
        run(tiny_omni, *data, out)
    log = out / "partial" / "rank0.jsonl"
    assert len(log.read_text().splitlines()) == 8 and not (out / "predictions.json").exists()
    with open(log, "a") as handle:  # and killed in the middle of writing a line
        handle.write('{"id": "torn", "respo')

    answered.clear()
    monkeypatch.setattr(Generator, "generate", lambda self, records, *a, **k: (
        answered.extend(r.id for r in records), original_generate(self, records, *a, **k))[1])
    run(tiny_omni, *data, out)
    assert len(answered) == N_ITEMS - 8  # only what was left
    assert _predictions(out) == _predictions(full_run)


def test_a_finished_run_is_not_redone_unless_overwrite(tiny_omni, data, full_run: Path,
                                                       tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "0"
    shutil.copytree(full_run, out)
    original_generate = Generator.generate
    answered: list[str] = []
    monkeypatch.setattr(Generator, "generate", lambda self, records, *a, **k: (
        answered.extend(r.id for r in records), original_generate(self, records, *a, **k))[1])
    run(tiny_omni, *data, out)
    assert answered == []  # nothing left to answer
    assert _predictions(out) == _predictions(full_run)
    run(tiny_omni, *data, out, "--overwrite")
    assert len(answered) == N_ITEMS  # started over
    assert _predictions(out) == _predictions(full_run)


def test_a_different_model_in_the_same_folder_is_refused(tiny_qwen2_audio, data,
                                                         full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "0"
    shutil.copytree(full_run, out)
    with pytest.raises(SystemExit, match="other settings.*--overwrite"):
        run(tiny_qwen2_audio, *data, out)


def test_bad_items_are_counted_wrong_and_listed(tiny_omni, tmp_path: Path) -> None:
    json_path, audio_dir = mmau_eval_set(tmp_path)
    items = json.loads(json_path.read_text())
    missing, corrupt = items[0], items[1]
    (audio_dir / Path(missing["audio_id"]).name).unlink()
    (audio_dir / Path(corrupt["audio_id"]).name).write_bytes(b"RIFF garbage")
    items[2]["answer"] = "not one of the choices"  # a malformed row: the reader skips it
    write_mmau_json(json_path, items)
    result = run(tiny_omni, json_path, audio_dir, tmp_path / "out")
    assert result["total"] == N_ITEMS  # nothing dropped
    assert set(result["no_prediction_ids"]) == {missing["id"], corrupt["id"], items[2]["id"]}
    reasons = result["no_prediction_reasons"]
    assert "not found" in reasons[missing["id"]] and "decode" in reasons[corrupt["id"]]
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions) == N_ITEMS
    assert all(p["model_output"] == "" for p in predictions[:3])  # official script: wrong


def test_duplicate_ids_in_the_question_file_are_counted_wrong_and_listed(
        tiny_omni, tmp_path: Path, monkeypatch) -> None:
    json_path, audio_dir = mmau_eval_set(tmp_path)
    a, b, c, d = json.loads(json_path.read_text())[:4]
    dup = {**a, "answer": a["choices"][-1]}  # same id, another answer: never scored with a's reply
    bad = {**c, "id": d["id"], "answer": "not one of the choices"}  # malformed, then d: same id
    write_mmau_json(json_path, [a, b, dup, bad, d])
    original_generate = Generator.generate
    answered: list[str] = []
    monkeypatch.setattr(Generator, "generate", lambda self, records, *x, **k: (
        answered.extend(r.id for r in records), original_generate(self, records, *x, **k))[1])
    result = run(tiny_omni, json_path, audio_dir, tmp_path / "out")
    assert result["total"] == 5
    # The first item with an id is the question; every later one is a duplicate, counted wrong.
    reasons = result["no_prediction_reasons"]
    assert set(reasons) == {f"{a['id']} (item 2)", f"{d['id']} (item 3)", f"{d['id']} (item 4)"}
    assert "duplicate id" in reasons[f"{a['id']} (item 2)"]
    assert "not one of the choices" in reasons[f"{d['id']} (item 3)"]
    assert "duplicate id" in reasons[f"{d['id']} (item 4)"]
    assert answered == [a["id"], b["id"]]  # nothing is generated for a duplicate
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [p["id"] for p in predictions] == [a["id"], b["id"], a["id"], d["id"], d["id"]]
    assert [p["model_output"] == "" for p in predictions] == [False, False, True, True, True]
    assert all(p["response"] is None and p["prediction_error"] for p in predictions[2:])


def test_no_audio_runs_without_any_audio_folder(tiny_omni, data, tmp_path: Path) -> None:
    result = run(tiny_omni, data[0], tmp_path / "absent", tmp_path / "out", "--no_audio",
                 "--limit", "6")
    assert result["total"] == 6 and result["no_prediction"] == 0
    assert result["settings"]["no_audio"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param("audio_dir", "--mmau_audio_dir .*folder not found", id="missing-audio-dir"),
        pytest.param("empty_audio_dir", "none of the .* audio files", id="no-audio-files"),
        pytest.param("model", "--model .*cannot read a model config", id="bad-checkpoint"),
        pytest.param("json_dict", "expected a JSON list", id="wrong-file"),
        pytest.param("json_missing", "question file not found", id="no-question-file"),
        pytest.param("json_empty", "--mmau_json .*holds no questions", id="empty-question-file"),
    ],
)
def test_clear_errors(tiny_omni, data, tmp_path: Path, change: str, message: str) -> None:
    model, json_path, audio_dir = tiny_omni, *data
    if change == "audio_dir":
        audio_dir = tmp_path / "nowhere"
    elif change == "empty_audio_dir":
        audio_dir = tmp_path / "empty"
        audio_dir.mkdir()
    elif change == "model":
        model = tmp_path
    elif change == "json_dict":
        json_path = tmp_path / "x.json"
        json_path.write_text('{"not": "a list"}')
    elif change == "json_missing":
        json_path = tmp_path / "none.json"
    elif change == "json_empty":
        json_path = tmp_path / "empty.json"
        json_path.write_text("[]")
    with pytest.raises(SystemExit, match=message):
        run(model, json_path, audio_dir, tmp_path / "out")


def test_cli_help_and_score_only_as_a_script(full_run: Path, data, tmp_path: Path) -> None:
    help_text = build_parser(MMAU).format_help()
    for option in ("--model", "--template", "--batch_size", "--max_new_tokens", "--no_audio",
                   "--max_audio_duration_in_seconds", "--score_only", "--overwrite", "--limit",
                   "--no_question_check"):
        assert option in help_text
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "evaluate_mmau.py", "--score_only",
                           str(full_run / "predictions.json"), "--mmau_json", str(data[0]),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "MMAU test-mini accuracy [mmau" in done.stdout
    assert json.loads(out.read_text())["accuracy"] == \
        json.loads((full_run / "results.json").read_text())["accuracy"]


def test_clips_over_the_audio_limit_are_cut_and_counted(tiny_omni, data, tmp_path: Path) -> None:
    # Clips last 0.5, 0.75, 1.0, 1.25, 1.5 s: four of the first five are over 0.6 s.
    result = run(tiny_omni, *data, tmp_path / "out", "--limit", "5",
                 "--max_audio_duration_in_seconds", "0.6")
    assert result["audio_truncated"] == 4 and result["total"] == 5


def test_a_truncated_wav_is_scored_and_listed(tiny_omni, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    """A clip whose WAV header promises more audio than the file holds (an interrupted copy):
    validation names it (`local.core.audio.wav_shortfall`); evaluation scores what the file
    holds, nothing dropped, and lists the item with the same reason."""
    json_path, audio_dir = mmau_eval_set(tmp_path)
    items = json.loads(json_path.read_text())
    cut = audio_dir / Path(items[1]["audio_id"]).name
    cut.write_bytes(cut.read_bytes()[:-4000])
    result = run(tiny_omni, json_path, audio_dir, tmp_path / "out", "--limit", "3")
    assert result["total"] == 3 and result["no_prediction"] == 0  # scored, not dropped
    assert list(result["audio_incomplete"]) == [items[1]["id"]]
    reason = result["audio_incomplete"][items[1]["id"]]
    assert reason.startswith(f"{items[1]['id']}: truncated WAV: its header declares")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["audio_incomplete"] == result["audio_incomplete"]
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "scored on truncated audio" in markdown and reason in markdown
    out, err = capsys.readouterr()  # the run's log (setup_logging: stderr) and its lines
    warned = [line for line in err.splitlines() if "WARNING" in line]
    assert sum(items[1]["id"] in line and "truncated WAV" in line for line in warned) == 1
    assert "1 items scored on truncated audio" in out


def test_set_title_names_results_json_and_md(tiny_omni, data, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    result = run(tiny_omni, *data, tmp_path / "out", "--limit", "2", "--set_title", "toy set")
    assert result["set_title"] == "toy set" and result["benchmark"] == "MMAU test-mini"
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert markdown.startswith(f"## toy set: {tiny_omni}")
    assert "Question set: toy set (scored as MMAU test-mini)" in markdown
    assert "toy set accuracy [mmau" in capsys.readouterr().out
    rescored = evaluate_mmau.main(["--score_only", str(tmp_path / "out" / "predictions.json"),
                                   "--mmau_json", str(data[0]), "--no_question_check",
                                   "--set_title", "toy set"])
    assert rescored["set_title"] == "toy set"
    plain = run(tiny_omni, *data, tmp_path / "plain", "--limit", "2")
    assert "set_title" not in plain  # the benchmark's own set: nothing added
