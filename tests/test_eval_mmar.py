"""evaluate_mmar.py end to end on CPU: a tiny model, 12 MMAR items, generated audio.

The items are tests/sources.py's `mmar_eval_set`: from the real MMAR-meta.jsonl when the
workspace has it (the first is an item whose audio file is not `<id>.wav`), else synthetic items
of the same shape; the audio is generated and named as each item's `audio_path` says. One clip
is left out: that item is counted wrong and listed. Then `--score_only` on what the run wrote,
and the inputs it must refuse, each in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate_mmar
from local.core.answers import extract_answer
from local.eval.benchmarks.mmar import MMAR
from local.eval.benchmarks.mmar_official import official_verdict
from local.eval.options import parse_args
from tests.helpers import REPO
from tests.sources import MMAR_RENAMED, mmar_eval_set, mmau_item, write_mmar_jsonl

N_ITEMS = 12
NO_CLIP = 3  # the item whose audio file is removed
FAST = ["--max_new_tokens", "8", "--batch_size", "4", "--dtype", "float32"]


def run(model: Path, questions: Path, out_dir: Path, *extra: str) -> dict:
    return evaluate_mmar.main(["--model", str(model), "--mmar_json", str(questions),
                               "--out_dir", str(out_dir), *FAST, *extra])


def score(predictions: Path, questions: Path, out: Path, *extra: str) -> dict:
    return evaluate_mmar.main(["--score_only", str(predictions), "--mmar_json", str(questions),
                               "--out", str(out), *extra])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    questions = mmar_eval_set(tmp_path_factory.mktemp("mmar"), N_ITEMS)
    item = json.loads(questions.read_text().splitlines()[NO_CLIP])
    (questions.parent / "audio" / Path(item["audio_path"]).name).unlink()
    return questions


@pytest.fixture(scope="module")
def full_run(tiny_omni: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full") / "0"
    run(tiny_omni, data, out)
    return out


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_to_end_writes_the_official_format(full_run: Path, data: Path) -> None:
    original = lines_of(data)
    predictions = json.loads((full_run / "predictions.json").read_text())
    assert [p["id"] for p in predictions] == [i["id"] for i in original]  # file order
    missing = original[NO_CLIP]["id"]
    for item, pred in zip(original, predictions, strict=True):
        assert {k: pred[k] for k in item} == item  # every original field, unchanged
        assert "model_output" not in pred and isinstance(pred["answer_prediction"], str)
        if item["id"] == missing:
            assert pred["answer_prediction"] == "" and "not found" in pred["prediction_error"]
            continue
        assert pred["response"] is not None and pred["prediction_error"] is None
        assert pred["answer_prediction"] == extract_answer(pred["response"], "eval")
    # found through audio_path: its file is not <id>.wav
    assert original[0]["id"] == MMAR_RENAMED[0] and predictions[0]["response"] is not None
    results = json.loads((full_run / "results.json").read_text())
    assert results["benchmark"] == "MMAR" and results["protocol"] == "mmar"
    assert results["total"] == N_ITEMS and results["no_prediction_ids"] == [missing]
    assert set(results["tables"]) == {"overall", "modality", "category", "sub-category"}
    verdict = official_verdict(predictions)  # the official script on predictions.json: ours
    assert (results["official_correct"], results["official_denominator"]) == \
        (verdict.correct, N_ITEMS) == (results["correct"], results["total"])
    markdown = (full_run / "results.md").read_text()
    assert "Accuracy [mmar]" in markdown and "| modality |" in markdown
    assert "as the official code/evaluation.py computes it on predictions.json" in markdown


def test_score_only_reproduces_the_run(full_run: Path, data: Path, tmp_path: Path) -> None:
    rescored = score(full_run / "predictions.json", data, tmp_path / "r.json")
    original = json.loads((full_run / "results.json").read_text())
    for key in ("accuracy", "correct", "total", "no_prediction_ids", "tables",
                "official_accuracy"):
        assert rescored[key] == original[key], key
    assert rescored["question_check"]["matched"] == N_ITEMS
    reason = rescored["no_prediction_reasons"][original["no_prediction_ids"][0]]
    assert reason == original["no_prediction_reasons"][original["no_prediction_ids"][0]]


def test_score_only_as_a_script(full_run: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "evaluate_mmar.py", "--score_only",
                           str(full_run / "predictions.json"), "--mmar_json", str(data),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "MMAR accuracy [mmar: MMAR official rule" in done.stdout
    assert json.loads(out.read_text())["accuracy"] == \
        json.loads((full_run / "results.json").read_text())["accuracy"]


def test_duplicated_unknown_and_missing_ids_are_listed(full_run: Path, data: Path,
                                                       tmp_path: Path) -> None:
    rows = json.loads((full_run / "predictions.json").read_text())
    first, dropped = rows[0]["id"], rows[5]["id"]
    rows = [*rows[:5], *rows[6:], {**rows[0], "answer_prediction": "something else"},
            {**rows[1], "id": "not-a-question"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result = score(path, data, tmp_path / "r.json")
    check = result["question_check"]
    assert (check["duplicate_ids"], check["extra_ids"], check["missing_ids"]) == \
        ([first], ["not-a-question"], [dropped])
    assert result["total"] == N_ITEMS and dropped in result["no_prediction_ids"]
    markdown = (tmp_path / "r.md").read_text()
    assert "1 ids predicted more than once" in markdown and "not-a-question" in markdown


def test_bad_question_rows_are_counted_wrong_and_listed(data: Path, tmp_path: Path) -> None:
    a, b, c = lines_of(data)[:3]
    questions = write_mmar_jsonl(tmp_path / "q.jsonl", [
        a, b, {**a, "answer": a["choices"][-1]}, "{not json", {**c, "answer": "no such option"}])
    args = parse_args(MMAR, ["--model", "m", "--out_dir", str(tmp_path), "--mmar_json",
                             str(questions), "--mmar_audio_dir", str(data.parent / "audio")])
    loaded = MMAR.load(args)
    assert [r.id for r in loaded.records] == [a["id"], b["id"]]  # only these are asked
    reasons = [q.reason for q in loaded.questions]
    assert reasons[:2] == [None, None] and "duplicate id" in reasons[2]
    assert "line 4 is not JSON" in reasons[3] and "not one of the choices" in reasons[4]


@pytest.mark.parametrize(("content", "message"), [
    pytest.param("", "holds no predictions", id="empty"),
    pytest.param("[]", "holds no predictions", id="empty-list"),
    pytest.param(json.dumps([{**mmau_item(0), "model_output": "Violin"}]),
                 "not MMAR predictions: an MMAU predictions file", id="mmau-predictions"),
    pytest.param("QUESTIONS", "not MMAR predictions: no row has a prediction", id="questions"),
    pytest.param(json.dumps([{"id": "x1", "answer_prediction": "Yes"}]),
                 "none of its 1 predictions has the id of a question", id="unknown-ids"),
    pytest.param("not json\n{neither}\n", "neither a JSON list nor JSON lines", id="not-json"),
])
def test_score_only_refuses_in_one_line(content: str, message: str, data: Path,
                                        tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(data.read_text() if content == "QUESTIONS" else content)
    with pytest.raises(SystemExit, match=message) as err:
        score(path, data, tmp_path / "r.json")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("case", "message"), [
    pytest.param("empty", "--mmar_json .*holds no questions", id="empty-question-file"),
    pytest.param("absent", "question file .* is not found", id="no-question-file"),
])
def test_score_only_needs_the_question_file(case: str, message: str, full_run: Path,
                                            tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    if case == "empty":
        questions.write_text("")
    with pytest.raises(SystemExit, match=message) as err:
        score(full_run / "predictions.json", questions, tmp_path / "r.json")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("change", "message"), [
    pytest.param("audio_dir", "--mmar_audio_dir .*folder not found", id="missing-audio-dir"),
    pytest.param("empty_audio_dir", "none of the .* audio files", id="no-audio-files"),
])
def test_a_run_without_audio_is_refused_in_one_line(tiny_omni: Path, data: Path, tmp_path: Path,
                                                    change: str, message: str) -> None:
    audio_dir = tmp_path / "nowhere"
    if change == "empty_audio_dir":
        audio_dir.mkdir()
    with pytest.raises(SystemExit, match=message):
        run(tiny_omni, data, tmp_path / "out", "--mmar_audio_dir", str(audio_dir))


def test_the_stage_evaluates_and_summarises_with_and_without_audio(tiny_omni: Path, data: Path,
                                                                   tmp_path: Path) -> None:
    """What `run.sh --stage mmar --with_no_audio true` runs (`local.eval.steps`): step 0 with
    and without audio, then summary.md and summary.png with the audio contribution per
    modality."""
    from local.eval.steps import main as steps_main

    summary = steps_main(["--bench", "mmar", "--model", str(tiny_omni), "--run_dir",
                          str(tmp_path / "run"), "--with_no_audio", "--", "--mmar_json",
                          str(data), *FAST, "--limit", "4"])
    eval_dir = tmp_path / "run" / "eval" / "mmar"
    assert summary == eval_dir / "summary.md" and (eval_dir / "summary.png").is_file()
    assert json.loads((eval_dir / "0-no_audio" / "results.json").read_text())["settings"][
        "no_audio"] is True
    text = summary.read_text()
    assert text.startswith("# MMAR across steps") and "Audio contribution" in text
    assert "| modality |" in text
