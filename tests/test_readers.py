"""The readers on rows in the real schemas (AVQA, MMSU, MMAU).

AVQA- and MMSU-shaped datasets are built in tmp_path by the source-layout writers of
tests/sources.py (audio: tiny WAV bytes); MMAU also reads the real question file where the
workspace has it. Bad rows give a clear error (errors="raise") or a counted, reasoned skip
(errors="skip").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest

from local.core.records import ReadReport, RecordError
from local.data.avqa import parse_avqa_answer, parse_avqa_question, read_avqa
from local.data.mmau import read_mmau
from local.data.mmsu import read_mmsu
from tests.sources import (
    MMSU_WAV,
    WAV,
    audio_dataset,
    avqa_row,
    mmau_item,
    mmsu_row,
    real_mmau_json,
    save_avqa,
    save_mmsu,
    save_splits,
    write_mmau_json,
)

# ------------------------------------------------------------------------------------- AVQA

def test_parse_avqa_seed_semantics() -> None:
    q, choices = parse_avqa_question("Is the video loud? And the video's end?\nChoices:\n"
                                     "A. yes\nB.  no \n\nC. Video game\nmaybe")
    assert q == "Is the audio loud? And the audio's end?"  # every lower-case "video"
    assert choices == ["yes", "no", "Video game", "maybe"]  # choices untouched, letters cut
    assert parse_avqa_answer("C. Video game ") == "Video game"
    assert parse_avqa_answer("One") == "One"


def test_read_avqa_good_row_and_no_decoding(tmp_path: Path) -> None:
    not_audio = b"these bytes are not audio; a reader that decodes would fail"
    path = save_avqa(tmp_path / "avqa", [avqa_row(0), avqa_row(1, audio=not_audio,
                                                             file_name="z.wav")])
    report = ReadReport()
    first, second = list(read_avqa(path, "train", report=report))
    assert first.question == "How many dogs bark in the audio 0?"
    assert first.choices == ["one", "two"] and first.answer == "two"
    assert first.audio == WAV and first.sampling_rate is None
    assert first.id == "avqa-train-0"
    assert first.meta == {"dataset": "avqa", "split": "train", "row": 0, "file_name": "clip0.wav"}
    assert second.audio == not_audio  # bytes passed through untouched: nothing was decoded
    assert (report.read, report.skipped) == (2, 0)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        pytest.param(avqa_row(question="What is it?"), "no 'Choices:' block",
                     id="question-without-choices-block"),
        pytest.param(avqa_row(answer="E. five"), "not one of the choices",
                     id="answer-not-among-choices"),
        pytest.param(avqa_row(audio=None), "no audio",
                     id="row-without-audio"),
        pytest.param(avqa_row(question="Q?\nChoices:\nA. only"), "at least two",
                     id="single-choice"),
        pytest.param(avqa_row(question="\nChoices:\nA. x\nB. y"), "question is empty",
                     id="empty-question-text"),
    ],
)
def test_read_avqa_malformed_rows_skip_or_raise(tmp_path: Path, row: dict, reason: str) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row(0), row, avqa_row(2)])
    report = ReadReport()
    records = list(read_avqa(path, errors="skip", report=report))
    assert [r.id for r in records] == ["avqa-train-0", "avqa-train-2"]
    assert report.read == 2 and report.skipped == 1
    (row_id, why), = report.reasons
    assert "row 1" in row_id and reason in why
    with pytest.raises(RecordError, match=f"row 1 .*{reason}"):
        list(read_avqa(path, errors="raise"))


def test_read_avqa_skip_logs_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row(answer="Z. nope")])
    with caplog.at_level("WARNING", logger="local.core.records"):
        assert list(read_avqa(path)) == []
    assert "skipping row 0" in caplog.text and "nope" in caplog.text


@pytest.mark.parametrize("split", ["val", "validation"], ids=["val-folder", "validation-alias"])
def test_read_avqa_val_split_and_alias(tmp_path: Path, split: str) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row()], [avqa_row(answer="A. one")])
    (rec,) = read_avqa(path, split)
    assert rec.answer == "one"
    assert rec.id == "avqa-val-0" and rec.meta["split"] == "val"  # one id whatever the alias


def test_read_avqa_accepts_a_datasetdict_object(tmp_path: Path) -> None:
    loaded = datasets.load_from_disk(str(save_avqa(tmp_path / "avqa", [avqa_row()],
                                                   [avqa_row()])))
    assert [r.id for r in read_avqa(loaded, "validation")] == ["avqa-val-0"]
    with pytest.raises(KeyError, match="no split 'test'"):
        list(read_avqa(loaded, "test"))


def test_read_avqa_missing_split_says_what_to_do(tmp_path: Path) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row()])
    with pytest.raises(FileNotFoundError, match=r"no split folder 'test'.*prepare"):
        list(read_avqa(path, "test"))


def test_read_avqa_bare_arrow_shards(tmp_path: Path) -> None:
    """A snapshot holding only the .arrow files of a split (no state.json) still reads."""
    path = save_avqa(tmp_path / "avqa", [avqa_row(0), avqa_row(1, answer="A. one")])
    bare = tmp_path / "bare" / "train"
    bare.mkdir(parents=True)
    for shard in (path / "train").glob("*.arrow"):
        shutil.copy(shard, bare)
    assert [r.answer for r in read_avqa(bare.parent, "train")] == ["two", "one"]


def test_read_avqa_bad_errors_value() -> None:
    with pytest.raises(ValueError, match="skip"):
        list(read_avqa("nowhere", errors="ignore"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- MMSU

# Two more columns of the hf-format release: both go to meta.
EXTRA_COLUMNS = {"linguistics_sub_discipline": "Phonology", "prompt_for_tts": "a sentence"}


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda rows, root: audio_dataset(rows), id="in-memory-dataset"),
        pytest.param(lambda rows, root: save_mmsu(root / "mmsu", rows),
                     id="hub-parquet-snapshot-streamed"),
        pytest.param(lambda rows, root: save_splits(root / "mmsu_saved", {"train": rows}),
                     id="save-to-disk-folder"),
    ],
)
def test_read_mmsu_sources(tmp_path: Path, source: object) -> None:
    rows = [mmsu_row(1, **EXTRA_COLUMNS), mmsu_row(2, ["yes", "no", "None", "None"], 0)]
    first, second = read_mmsu(source(rows, tmp_path))  # type: ignore[operator]
    assert (first.id, first.answer, first.audio) == ("k1", "second", MMSU_WAV)
    assert first.meta["category"] == "Perception-Semantics-Syntax-Word order"
    assert first.meta["linguistics_sub_discipline"] == "Phonology"
    assert first.meta["answer_index"] == 1 and "audio" not in first.meta
    assert second.choices == ["yes", "no", "None", "None"]  # 'None' padding kept, by position


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        pytest.param(mmsu_row(1, answer_index=4), "not a valid index", id="index-out-of-range"),
        pytest.param(mmsu_row(1, answer_index=-1), "not a valid index", id="negative-index"),
        pytest.param(mmsu_row(1, answer_index=None), "not a valid index", id="index-missing"),
        pytest.param(mmsu_row(1, options=[]), "non-empty list", id="no-options"),
        pytest.param(mmsu_row(1, options=["only"], answer_index=0), "at least two",
                     id="single-option"),
    ],
)
def test_read_mmsu_malformed_rows(row: dict, reason: str) -> None:
    ds = audio_dataset([mmsu_row(0, key="ok"), row])
    report = ReadReport()
    assert [r.id for r in read_mmsu(ds, report=report)] == ["ok"]
    assert report.skipped == 1 and reason in report.reasons[0][1]
    assert "key 'k1'" in report.reasons[0][0]
    with pytest.raises(RecordError, match=f"row 1 \\(key 'k1'\\).*{reason}"):
        list(read_mmsu(ds, errors="raise"))


def test_read_mmsu_missing_audio_is_kept_and_listed() -> None:
    ds = audio_dataset([mmsu_row(1, audio=None), mmsu_row(2)])
    report = ReadReport()
    records = list(read_mmsu(ds, report=report))
    assert [r.audio is None for r in records] == [True, False]
    assert report.missing_audio == ["k1"] and report.skipped == 0


def test_read_mmsu_official_columns(tmp_path: Path) -> None:
    rows = [
        {"id": "o1", "audio_path": "a/o1.wav", "question": "Q1?", "choice_a": "cat",
         "choice_b": "dog", "choice_c": "cow", "choice_d": "hen", "answer_gt": "dog",
         "task_name": "animals"},
        {"id": "o2", "audio_path": "a/o2.wav", "question": "Q2?", "choice_a": "yes",
         "choice_b": "no", "choice_c": None, "choice_d": "", "answer_gt": "yes",
         "task_name": "binary"},
        {"id": "o3", "audio_path": "a/o3.wav", "question": "Q3?", "choice_a": "x",
         "choice_b": "y", "choice_c": None, "choice_d": None, "answer_gt": "z",
         "task_name": "bad"},
    ]
    report = ReadReport()
    records = list(read_mmsu(datasets.Dataset.from_list(rows), audio_dir=tmp_path,
                             report=report))
    assert [(r.id, r.choices, r.answer) for r in records] == [
        ("o1", ["cat", "dog", "cow", "hen"], "dog"), ("o2", ["yes", "no"], "yes")]
    assert records[0].audio == str(tmp_path / "a" / "o1.wav")
    assert records[0].meta["task_name"] == "animals"
    assert report.skipped == 1 and "'z' is not one of the choices" in report.reasons[0][1]


def test_read_mmsu_unknown_layout_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="neither hf-format"):
        list(read_mmsu(datasets.Dataset.from_list([{"question": "q"}]), errors="raise"))
    with pytest.raises(FileNotFoundError, match="prepare"):
        list(read_mmsu(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="parquet"):
        list(read_mmsu(tmp_path / "empty"))


# ------------------------------------------------------------------------------------- MMAU

def test_read_mmau_real_question_file(tmp_path: Path) -> None:
    mmau_json = real_mmau_json()
    items = json.loads(mmau_json.read_text())
    audio_dir = tmp_path / "audios"
    audio_dir.mkdir()
    present = Path(items[0]["audio_id"]).name
    (audio_dir / present).write_bytes(WAV)
    report = ReadReport()
    records = list(read_mmau(mmau_json, audio_dir, report=report))
    assert (report.read, report.skipped) == (1000, 0)
    assert len(report.missing_audio) == 999 and items[0]["id"] not in report.missing_audio
    assert [r.meta for r in records] == items  # every original field, for official output
    assert records[0].audio == str(audio_dir / present)
    assert sum(len(set(r.choices)) != len(r.choices) for r in records) == 27
    assert len({r.id for r in records}) == 1000


def test_read_mmau_meta_is_a_copy(tmp_path: Path) -> None:
    path = write_mmau_json(tmp_path / "q.json", [mmau_item(0)])
    (rec,) = read_mmau(path, tmp_path)
    rec.meta["choices"].append("changed")
    assert rec.choices == ["Piano", "Violin", "Drums"]


def test_read_mmau_default_audio_dir_is_relative_to_json(tmp_path: Path) -> None:
    path = write_mmau_json(tmp_path / "q.json", [mmau_item(0)])
    (rec,) = read_mmau(path)
    assert Path(rec.audio) == tmp_path / "test-mini-audios" / "m0.wav"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        pytest.param(mmau_item(1, answer="Flute"), "not one of the choices",
                     id="answer-not-among-choices"),
        pytest.param(mmau_item(1, audio_id=""), "audio_id is missing", id="no-audio-id"),
        pytest.param(mmau_item(1, choices="Piano, Violin", answer="Piano"), "at least two",
                     id="choices-not-a-list"),
        pytest.param(mmau_item(0), "duplicate id", id="duplicate-id"),
        pytest.param(["not", "an", "object"], "not an object", id="item-not-an-object"),
        pytest.param(mmau_item(1, question=None), "question is empty", id="no-question"),
    ],
)
def test_read_mmau_malformed_items(tmp_path: Path, bad: object, reason: str) -> None:
    path = write_mmau_json(tmp_path / "q.json", [mmau_item(0), bad, mmau_item(2)])
    report = ReadReport()
    assert [r.id for r in read_mmau(path, tmp_path, report=report)] == ["m0", "m2"]
    assert report.skipped == 1 and reason in report.reasons[0][1]
    assert report.reasons[0][0].startswith("item 1")
    with pytest.raises(RecordError, match=f"item 1 .*{reason}"):
        list(read_mmau(path, tmp_path, errors="raise"))


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        pytest.param(None, FileNotFoundError, "prepare", id="file-missing"),
        pytest.param("{not json", RecordError, "not valid JSON", id="broken-json"),
        pytest.param('{"id": 1}', RecordError, "JSON list", id="not-a-list"),
    ],
)
def test_read_mmau_bad_files(tmp_path: Path, content: str | None, error: type[Exception],
                             message: str) -> None:
    path = tmp_path / "q.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=message):
        list(read_mmau(path, tmp_path))
