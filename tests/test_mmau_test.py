"""The full MMAU test (answers withheld): a submission file holding every question once.

The 9,000-question shape is tested on 300 items (CI stays fast): answers absent, empty or null
as the release withholds them, some audio missing, a malformed item and a repeated id, answered
by a stand-in backend; a tiny model answers a few items for real. The MMAU question file is
parsed once per evaluation (counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import evaluate_mmau
from local.core.records import ReadReport, RecordError
from local.data.mmau import SPLITS, SUBMISSION_SPACE, read_mmau
from local.eval import runner
from local.eval.benchmarks.mmau_test import MMAU_TEST
from local.eval.generation import Output
from local.eval.steps import main as steps_main
from local.eval.steps import one_model
from local.eval.steps import steps as steps_of
from local.run_report.build import main as run_report_main
from local.train.dataset import training_row
from tests.helpers import REPO
from tests.helpers_report import full_run
from tests.sources import cache_repo, mmau_eval_set, mmau_item, wav, write_mmau_json

N = 300
WITHHELD = ({}, {"answer": ""}, {"answer": None})  # how a test item may lack its answer


def withheld_item(i: int) -> dict:
    item = mmau_item(i, id=f"t{i}", audio_id=f"./test-audios/t{i}.wav", split="test")
    del item["answer"]
    return {**item, **WITHHELD[i % 3]}


def save_test_set(root: Path, n: int = N, no_audio: tuple[int, ...] = (5, 150)) -> Path:
    """root/mmau-test.json + root/test-audios/: `n` items, item 1 malformed (no audio_id),
    item 3 repeating item 2's id, items `no_audio` without their clip."""
    items = [withheld_item(i) for i in range(n)]
    del items[1]["audio_id"]
    items[3]["id"] = items[2]["id"]
    (root / "test-audios").mkdir(parents=True)
    clip = wav(0.05)
    for i, item in enumerate(items):
        if i not in no_audio and "audio_id" in item:
            (root / "test-audios" / Path(item["audio_id"]).name).write_bytes(clip)
    return write_mmau_json(root / SPLITS["test"].question_file, items)


class Answers:
    """A stand-in backend: answers "<answer>Violin</answer>", or, as the real one does, an
    error where the clip is missing; records who was asked."""

    truncated = 0
    max_audio_seconds = 30.0

    def __init__(self) -> None:
        self.asked: list[str] = []

    def generate(self, records, template, texts=None):
        self.asked += [r.id for r in records]
        return [Output(r.id, "<think>x</think><answer>Violin</answer>") if Path(r.audio).exists()
                else Output(r.id, None, "audio file not found") for r in records]


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Answers:
    answers = Answers()
    monkeypatch.setattr(runner, "build_generator", lambda args, dist: answers)
    return answers


def test_the_submission_holds_every_question_once_in_file_order(
        tmp_path: Path, backend: Answers, capsys: pytest.CaptureFixture) -> None:
    questions = save_test_set(tmp_path / "mmau")
    out = tmp_path / "eval"
    account = evaluate_mmau.main(["--split", "test", "--model", "m", "--mmau_json",
                                  str(questions), "--out_dir", str(out), "--batch_size", "64"])
    items = json.loads(questions.read_text())
    submission = json.loads((out / "submission.json").read_text())
    assert len(submission) == N == account["questions"]
    assert [s["id"] for s in submission] == [i["id"] for i in items]  # the repeat kept in place
    for item, entry in zip(items, submission, strict=True):
        assert {k: entry[k] for k in item} == item  # every original field, unchanged
        assert entry["model_prediction"] == entry["model_output"]
    empty = {s["id"]: s["prediction_error"] for s in submission if not s["model_prediction"]}
    assert set(empty) == {"t5", "t1", "t150", "t2"}  # no audio, malformed, the repeat of t2
    assert "audio_id is missing" in empty["t1"]
    assert empty["t5"] == "audio file not found"
    assert submission[2]["model_prediction"] == "Violin"  # the first t2 is asked, not the repeat
    assert "duplicate id" in submission[3]["prediction_error"]
    assert sorted(backend.asked) == sorted({i["id"] for i in items} - {"t1"})  # each once
    assert set(account["without_prediction"]) == set(empty)
    assert not (out / "results.json").exists()  # nothing scored
    printed = capsys.readouterr().out
    assert f"{N} entries, one per item of the question file, {N - 1} distinct ids" in printed
    assert SUBMISSION_SPACE in printed and "no accuracy is computed here" in printed


def test_a_limited_run_keeps_every_entry_and_says_it_is_not_complete(
        tmp_path: Path, backend: Answers, capsys: pytest.CaptureFixture) -> None:
    questions = save_test_set(tmp_path / "mmau", n=10, no_audio=())
    out = tmp_path / "eval"
    argv = ["--split", "test", "--model", "m", "--mmau_json", str(questions), "--out_dir",
            str(out)]
    account = evaluate_mmau.main([*argv, "--limit", "4"])
    submission = json.loads((out / "submission.json").read_text())
    assert len(submission) == 10 and account["never_asked"] == 4  # 4 of the 8 usable asked
    printed = capsys.readouterr().out
    assert "NOT a complete submission" in printed and SUBMISSION_SPACE not in printed
    account = evaluate_mmau.main(argv)  # resumes: the rest asked, now complete
    assert account["never_asked"] == 0 and len(backend.asked) == 8
    assert SUBMISSION_SPACE in capsys.readouterr().out


@pytest.mark.parametrize(
    ("split", "items", "message"),
    [
        pytest.param("test-mini", [withheld_item(i) for i in range(3)],
                     "without --split test", id="the-full-test-without-split-test"),
        pytest.param("test-mini", [{"id": "x", "audio_path": "./audio/x.wav"}],
                     "another benchmark's question file", id="an-mmar-file"),
        pytest.param("test", [{"id": "x", "audio_path": "./audio/x.wav"}],
                     "audio_id is missing", id="an-mmar-file-as-the-test"),
    ],
)
def test_a_question_file_with_no_usable_item_stops_in_one_line(
        tmp_path: Path, backend: Answers, split: str, items: list, message: str) -> None:
    path = write_mmau_json(tmp_path / "q.json", items)
    with pytest.raises(SystemExit, match=f"none of its {len(items)} items is a usable question"
                       f".*{message}"):
        evaluate_mmau.main(["--split", split, "--model", "m", "--mmau_json", str(path),
                            "--out_dir", str(tmp_path / "o")])
    assert backend.asked == []


def test_a_tiny_model_answers_the_test_split(tiny_omni: Path, tmp_path: Path) -> None:
    questions = save_test_set(tmp_path / "mmau", n=6, no_audio=())
    out = tmp_path / "eval"
    evaluate_mmau.main(["--split", "test", "--model", str(tiny_omni), "--mmau_json",
                        str(questions), "--out_dir", str(out), "--max_new_tokens", "4",
                        "--dtype", "float32"])
    submission = json.loads((out / "submission.json").read_text())
    answered = [s for s in submission if s["prediction_error"] is None]
    assert len(submission) == 6 and len(answered) == 4  # t1 malformed, the repeated t2
    assert all(isinstance(s["response"], str) for s in answered)


def test_score_only_on_the_test_split_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="answers are withheld.*MMAU-Eval"):
        evaluate_mmau.main(["--split", "test", "--score_only", str(tmp_path / "s.json")])


def test_a_split_given_to_the_other_benchmark_is_named(tmp_path: Path) -> None:
    questions = save_test_set(tmp_path / "mmau", n=4, no_audio=())
    with pytest.raises(SystemExit, match="this is the MMAU test benchmark"):
        runner.evaluate(MMAU_TEST, ["--split", "test-mini", "--model", "m", "--mmau_json",
                                    str(questions), "--out_dir", str(tmp_path / "o")])


@pytest.mark.parametrize(
    ("withheld", "answer", "kept"),
    [
        pytest.param(True, None, True, id="test-no-answer"),
        pytest.param(True, "", True, id="test-empty-answer"),
        pytest.param(True, "Violin", True, id="test-with-an-answer"),
        pytest.param(True, "Tuba", False, id="test-answer-not-a-choice"),
        pytest.param(False, None, False, id="test-mini-needs-its-answer"),
        pytest.param(False, "", False, id="test-mini-empty-answer"),
    ],
)
def test_withheld_answers_are_valid_in_the_test_split_only(tmp_path: Path, withheld: bool,
                                                           answer: str | None,
                                                           kept: bool) -> None:
    path = write_mmau_json(tmp_path / "q.json", [mmau_item(0, answer=answer)])
    report = ReadReport()
    records = list(read_mmau(path, withheld=withheld, report=report))
    assert len(records) == int(kept) and len(report.reasons) == int(not kept)
    if kept:
        assert records[0].answer == (answer or None)


def test_a_record_without_its_answer_is_never_a_training_row(tmp_path: Path) -> None:
    path = write_mmau_json(tmp_path / "q.json", [withheld_item(0)])
    (record,) = read_mmau(path, withheld=True)
    with pytest.raises(RecordError, match="withheld.*cannot be trained on"):
        training_row(record, "default")


@pytest.mark.parametrize(
    ("plan", "checkpoints", "chosen"),
    [
        pytest.param([(0, "base")], "", (0, "base"), id="no-checkpoint-the-model"),
        pytest.param([(0, "base"), (100, "c100"), (200, "c200")], "", (200, "c200"),
                     id="the-newest-checkpoint"),
        pytest.param([(0, "base"), (100, "c100")], "100", (100, "c100"), id="the-named-step"),
        pytest.param([(0, "base")], "0", (0, "base"), id="step-0-the-starting-model"),
    ],
)
def test_the_full_test_predicts_one_model(plan, checkpoints: str, chosen) -> None:
    assert one_model(plan, checkpoints, "MMAU test") == chosen


@pytest.mark.parametrize("checkpoints", ["1 2", "1,2"])
def test_more_than_one_named_step_is_refused(checkpoints: str) -> None:
    with pytest.raises(SystemExit, match=r"evaluates one model.*not \[1, 2\]"):
        one_model([(0, "b"), (1, "c1"), (2, "c2")], checkpoints, "MMAU test")


def test_checkpoints_0_names_the_starting_model_in_a_trained_run(tmp_path: Path) -> None:
    assert steps_of("base", tmp_path, "0") == [(0, "base")]


def test_the_steps_loop_writes_one_submission_and_no_summary(tmp_path: Path,
                                                             backend: Answers) -> None:
    questions = save_test_set(tmp_path / "mmau", n=12, no_audio=())
    run = tmp_path / "run"
    found = steps_main(["--bench", "mmau_test", "--model", "m", "--run_dir", str(run), "--",
                        "--split", "test", "--mmau_json", str(questions)])
    assert found == run / "eval" / "mmau_test" / "0"
    assert len(json.loads((found / "submission.json").read_text())) == 12
    assert not (run / "eval" / "mmau_test" / "summary.md").exists()
    with pytest.raises(SystemExit):
        steps_main(["--bench", "mmau_test", "--model", "m", "--run_dir", str(run),
                    "--with_no_audio", "--", "--split", "test"])


# ------------------------------------------------------------------ one parse per evaluation

@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every read of a .json file through Path.read_text, in order."""
    seen: list[Path] = []
    original = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if self.suffix == ".json":
            seen.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    return seen


def test_the_question_file_is_parsed_once_per_evaluation(tmp_path: Path, backend: Answers,
                                                         reads: list[Path]) -> None:
    questions, audio = mmau_eval_set(tmp_path / "mmau", n=6)
    out = tmp_path / "eval"
    evaluate_mmau.main(["--model", "m", "--mmau_json", str(questions), "--mmau_audio_dir",
                        str(audio), "--out_dir", str(out)])
    assert reads.count(questions) == 1
    reads.clear()
    evaluate_mmau.main(["--score_only", str(out / "predictions.json"), "--mmau_json",
                        str(questions), "--out", str(tmp_path / "r.json")])
    assert reads.count(questions) == 1


# ------------------------------------------------------------------ run.sh

def run_sh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    return subprocess.run(["bash", "run.sh", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_run_sh_split_test_predicts_one_model_into_a_submission() -> None:
    done = run_sh("--stage", "mmau", "--split", "test", "--nproc", "1", "--mmau_args",
                  "--limit 5", "--dry_run", "true")
    assert done.returncode == 0, done.stderr
    command = next(line for line in done.stderr.splitlines() if "local.eval.steps" in line)
    assert "--bench mmau_test" in command and "--split test" in command
    assert "--mmau_json data/mmau/mmau-test.json --mmau_audio_dir data/mmau/test-audios" \
        in command and command.rstrip().endswith("--limit 5")
    assert "submission.json" in done.stderr and "MMAU evaluation Space" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--stage", "mmau", "--split", "tset"],
                     "--split takes one of: test-mini test", id="typo"),
        pytest.param(["--stage", "mmau", "--split", "test", "--with_no_audio", "true"],
                     "not scored here", id="no-audio-comparison"),
        pytest.param(["--stage", "mmsu", "--split", "test"],
                     "--split test chooses the mmau stage's question set", id="not-mmau"),
        pytest.param(["--stage", "prepare", "--sources", "mmar mmua"],
                     "--sources takes any of: avqa mmsu mmau mmau_test mmar model; not 'mmua'",
                     id="sources-typo"),
    ],
)
def test_run_sh_refuses_a_bad_split(args: list[str], message: str) -> None:
    done = run_sh(*args, "--dry_run", "true")
    assert done.returncode != 0 and message in done.stderr


# ------------------------------------------------------------------ prepare --sources mmau_test

def test_prepare_fetches_the_test_archive_alone_from_the_hub_cache(tmp_path: Path) -> None:
    """The hub repo's `test-audios.tar.gz` is extracted into data/mmau/test-audios; any other
    file of the repo (here a broken parquet) is never fetched; test-mini's marker untouched."""
    source = tmp_path / "src"
    questions = save_test_set(source, n=6, no_audio=())
    repo = tmp_path / "repo"
    repo.mkdir()
    with tarfile.open(repo / "test-audios.tar.gz", "w:gz") as tar:
        tar.add(source / "test-audios", arcname="test-audios")
    (repo / "test.parquet").write_bytes(b"not a parquet file")
    cache = tmp_path / "hf" / "hub"
    cache_repo(cache, "dataset", "gamma-lab-umd/MMAU-test", repo)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "PYTHONPATH": str(REPO)}
    data = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "local.prepare", "--data_dir", str(data),
                           "--sources", "mmau_test", "--mmau_test_json", str(questions),
                           "--no_validate"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    mmau = data / "mmau"
    assert sorted(p.name for p in (mmau / "test-audios").iterdir()) == \
        sorted(p.name for p in (source / "test-audios").iterdir())
    assert (mmau / "mmau-test.json").read_bytes() == questions.read_bytes()
    assert (mmau / ".done-test").is_file() and not (mmau / ".done").exists()
    assert "4 of 4 questions have their audio file" in done.stderr  # distinct ids with a clip


def test_prepare_mmau_test_offline_names_each_missing_part(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "local.prepare", "--data_dir",
                           str(tmp_path / "data"), "--sources", "mmau_test", "--no_validate"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert done.returncode != 0 and len(errors) == 2, done.stderr  # one line a part
    assert "mmau_test questions" in errors[0] and "--mmau_test_json PATH" in errors[0]
    assert "gamma-lab-umd/MMAU-test" in errors[1] and "--mmau_test_audio PATH" in errors[1]


def test_a_run_resumes_whether_its_paths_were_typed_relative_or_absolute(
        tmp_path: Path, backend: Answers, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `python evaluate_mmau.py ...` (relative paths) then run.sh's stage (absolute
    paths) on the same folder: the same settings, so the second resumes instead of refusing."""
    save_test_set(tmp_path / "data" / "mmau", n=6, no_audio=())
    monkeypatch.chdir(tmp_path)
    relative = ["--split", "test", "--model", "m", "--mmau_json", "data/mmau/mmau-test.json",
                "--out_dir", "eval/0"]
    evaluate_mmau.main(relative)
    asked = len(backend.asked)
    evaluate_mmau.main(["--split", "test", "--model", "m", "--mmau_json",
                        str(tmp_path / "data" / "mmau" / "mmau-test.json"), "--out_dir",
                        str(tmp_path / "eval" / "0")])
    assert len(backend.asked) == asked  # resumed: nothing asked again


def test_the_run_report_names_the_submission_file(tmp_path: Path) -> None:
    run = full_run(tmp_path / "run")
    folder = run / "eval" / "mmau_test" / "30"
    folder.mkdir(parents=True)
    (folder / "submission.json").write_text(json.dumps([withheld_item(0)]))
    report = run_report_main(["--run_dir", str(run)]).read_text()
    assert "Submission file `eval/mmau_test/30/submission.json`" in report
    assert "answers withheld, not scored here" in report and "Nothing: every file read" in report


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(json.dumps([{"id": "m0", "answer_prediction": "Violin"}]),
                     "an MMAR predictions file.*evaluate_mmar.py", id="mmar-predictions"),
        pytest.param(json.dumps([mmau_item(0)]), "no item has model_output.*question file",
                     id="the-question-file-itself"),
        pytest.param('{"id": "m0", "answer_prediction": "x"}\n{"id": "m1"}\n',
                     "JSON lines.*evaluate_mmar.py.*evaluate_mmsu.py", id="json-lines"),
    ],
)
def test_the_mmau_scorer_names_another_benchmarks_file(tmp_path: Path, content: str,
                                                       message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    questions = write_mmau_json(tmp_path / "q.json", [mmau_item(0)])
    with pytest.raises(SystemExit, match=message):
        evaluate_mmau.main(["--score_only", str(path), "--mmau_json", str(questions)])


def test_a_run_folder_holding_only_a_submission_gets_a_report(tmp_path: Path) -> None:
    """A base model's full-test run: no training, no scored evaluation, one submission."""
    folder = tmp_path / "run" / "eval" / "mmau_test" / "0"
    folder.mkdir(parents=True)
    (folder / "submission.json").write_text(json.dumps([withheld_item(0)]))
    report = run_report_main(["--run_dir", str(tmp_path / "run")]).read_text()
    assert "Submission file `eval/mmau_test/0/submission.json`" in report
