"""local.prepare.validate: each kind of defect is reported; only unusable datasets fail.

Datasets are built at test time in tmp_path in the real layouts (AVQA save_to_disk with an
Audio feature, MMSU parquet snapshot, MMAU JSON + audio folder) from tiny generated clips.
The builders are the shared source-layout writers of tests/sources.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.prepare import validate
from tests.sources import (
    avqa_row,
    mmar_item,
    mmau_item,
    mmsu_row,
    save_avqa,
    save_mmau,
    save_mmsu,
    wav,
    write_mmar_set,
)

GOOD = 30  # good rows around each defect: 1 bad in 31 is 3.2%, under the 5% threshold


def run_on(kind: str, tmp_path: Path, bad: list[dict], **kwargs: object) -> validate.DatasetCheck:
    """Build one dataset of `kind` (GOOD good rows + `bad`) and validate it; its check."""
    report = tmp_path / "report.md"
    if kind == "avqa":
        rows = [avqa_row(i) for i in range(GOOD)] + bad
        (check,) = validate.run(avqa=save_avqa(tmp_path / "avqa", rows), report=report, **kwargs)
    elif kind == "mmsu":
        rows = [mmsu_row(i) for i in range(GOOD)] + bad
        (check,) = validate.run(mmsu=save_mmsu(tmp_path / "mmsu", rows), report=report, **kwargs)
    else:
        items = [mmau_item(i) for i in range(GOOD)] + bad
        missing = tuple(i["id"] for i in bad if i.get("task") == "no-audio-file")
        path = save_mmau(tmp_path / "mmau", items, skip_audio=missing)
        (check,) = validate.run(mmau_json=path, mmau_audio_dir=path.parent / "test-mini-audios",
                                report=report, **kwargs)
    return check


# -------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("kind", ["avqa", "mmsu", "mmau"])
def test_clean_dataset_reports_no_defect(kind: str, tmp_path: Path) -> None:
    check = run_on(kind, tmp_path, [])
    assert check.usable and check.read == GOOD and check.audio_ok == GOOD
    assert check.broken == 0
    assert not {k for k in check.issues if not k.startswith("beyond_window")} - {"none_option"}


@pytest.mark.parametrize(
    ("kind", "bad", "issue", "ident"),
    [
        pytest.param("avqa", avqa_row(30, answer="E. five"), "answer_not_in_choices", "row 30",
                     id="avqa-answer-not-a-choice"),
        pytest.param("avqa", avqa_row(30, question="How many dogs?"), "malformed", "row 30",
                     id="avqa-question-without-choices"),
        pytest.param("avqa", avqa_row(30, audio=b"not audio at all"), "unreadable_audio",
                     "avqa-train-30", id="avqa-undecodable-audio"),
        pytest.param("avqa", avqa_row(30, audio=wav(31, sr=8_000)), "beyond_window_qwen2_audio",
                     "avqa-train-30", id="avqa-clip-longer-than-30s"),
        pytest.param("mmsu", mmsu_row(30, ["yes", "no", "None", "None"], 0), "none_option",
                     "k30", id="mmsu-none-padding-legal"),
        pytest.param("mmsu", mmsu_row(30, answer_index=7), "answer_not_in_choices", "k30",
                     id="mmsu-answer-index-out-of-range"),
        pytest.param("mmsu", mmsu_row(30, audio=None), "missing_audio", "k30",
                     id="mmsu-row-without-audio"),
        pytest.param("mmau", mmau_item(30, choices=["Piano", "Piano", "Violin"]),
                     "duplicate_choices", "m30", id="mmau-duplicate-choices-legal"),
        pytest.param("mmau", mmau_item(30, answer="Flute"), "answer_not_in_choices", "m30",
                     id="mmau-answer-not-a-choice"),
        pytest.param("mmau", mmau_item(30, question=""), "malformed", "m30",
                     id="mmau-empty-question"),
        pytest.param("mmau", mmau_item(30, task="no-audio-file"), "missing_audio", "m30",
                     id="mmau-audio-file-missing"),
        pytest.param("avqa", avqa_row(30, audio=wav(1.0)[:-10_000]), "truncated_audio",
                     "avqa-train-30", id="avqa-wav-shorter-than-its-header"),
        pytest.param("mmsu", mmsu_row(30, audio=wav(1.0)[:-10_000]), "truncated_audio", "k30",
                     id="mmsu-wav-shorter-than-its-header"),
    ],
)
def test_each_defect_is_reported(kind: str, bad: dict, issue: str, ident: str,
                                 tmp_path: Path) -> None:
    check = run_on(kind, tmp_path, [bad])
    assert check.issues.get(issue) == 1, check.issues
    assert any(ident in example for example in check.examples[issue])
    assert check.usable  # one bad row in 31 is under the threshold: reported, not fatal
    text = (tmp_path / "report.md").read_text()
    assert issue in text and ident in text
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["datasets"][0]["issues"][issue] == 1


def test_a_truncated_wav_file_is_broken_and_says_what_is_missing(tmp_path: Path) -> None:
    # libsndfile reads such a file without a word (local/core/audio.py, wav_shortfall).
    items = [mmau_item(i) for i in range(GOOD + 1)]
    path = save_mmau(tmp_path / "mmau", items)
    clip = path.parent / "test-mini-audios" / "m30.wav"
    clip.write_bytes(clip.read_bytes()[:-4_000])  # an interrupted copy
    (check,) = validate.run(mmau_json=path, mmau_audio_dir=clip.parent, report=tmp_path / "r.md")
    assert check.issues.get("truncated_audio") == 1 and check.broken == 1
    assert check.audio_ok == GOOD and check.usable  # 1 in 31: reported, under the threshold
    (example,) = check.examples["truncated_audio"]
    assert example.startswith("m30: truncated WAV") and "the file holds" in example
    assert "truncated_audio" in (tmp_path / "r.md").read_text()


def test_durations_rates_and_channels_are_reported(tmp_path: Path) -> None:
    bad = [avqa_row(30, audio=wav(0.5, sr=44_100, channels=2)),
           avqa_row(31, audio=wav(301, sr=1_000))]
    check = run_on("avqa", tmp_path, bad)
    assert check.rates == {16_000: GOOD, 44_100: 1, 1_000: 1}
    assert check.channels == {1: GOOD + 1, 2: 1}
    assert check.issues["beyond_window_qwen2_audio"] == 1  # the 301 s clip
    assert check.issues["beyond_window_qwen2_5_omni"] == 1
    assert max(check.durations) == pytest.approx(301)


@pytest.mark.parametrize(
    ("bad_rows", "max_bad_fraction", "usable"),
    [
        pytest.param(1, 0.05, True, id="1-of-31-under-5pct"),
        pytest.param(3, 0.05, False, id="3-of-33-over-5pct"),
        pytest.param(3, 0.2, True, id="3-of-33-under-a-raised-threshold"),
    ],
)
def test_threshold_decides_usable(bad_rows: int, max_bad_fraction: float, usable: bool,
                                  tmp_path: Path) -> None:
    bad = [avqa_row(30 + i, audio=b"junk") for i in range(bad_rows)]
    check = run_on("avqa", tmp_path, bad, max_bad_fraction=max_bad_fraction)
    assert check.usable is usable
    if not usable:
        assert "avqa-train-30" in check.verdict  # names the first offending records


def test_nothing_decodes_is_unusable_and_cli_exits_nonzero(tmp_path: Path) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row(i, audio=b"junk") for i in range(4)])
    report = tmp_path / "out" / "validation.md"
    status = validate.main(["--avqa", str(path), "--report", str(report), "--num_workers", "1"])
    assert status == 1
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["usable"] is False
    assert "no audio could be decoded" in summary["datasets"][0]["verdict"]


def test_missing_dataset_is_unusable_without_a_traceback(tmp_path: Path) -> None:
    (check,) = validate.run(mmsu=tmp_path / "nowhere", report=tmp_path / "r.md")
    assert not check.usable and "not found" in check.verdict


def test_good_data_exits_zero(tmp_path: Path) -> None:
    path = save_avqa(tmp_path / "avqa", [avqa_row(i) for i in range(3)],
                     [avqa_row(i) for i in range(2)])
    report = tmp_path / "validation.md"
    assert validate.main(["--avqa", str(path), "--report", str(report),
                          "--model_family", "qwen2_audio", "--num_workers", "1"]) == 0
    text = report.read_text()
    assert "avqa/train" in text and "avqa/val" in text and "window 30 s" in text


def test_avqa_is_sampled_evenly_with_real_row_numbers(tmp_path: Path) -> None:
    rows = [avqa_row(i) for i in range(10)]
    rows[9] = avqa_row(9, answer="Z. none")  # the last row is always in the sample
    path = save_avqa(tmp_path / "avqa", rows)
    (check,) = validate.run(avqa=path, report=tmp_path / "r.md", avqa_max_items=4)
    assert check.sampled and (check.rows, check.checked) == (10, 4)
    assert check.read == 3 and check.audio_ok == 3
    assert check.examples["answer_not_in_choices"][0].startswith("row 9 ")


def test_parallel_decoding_gives_the_same_counts(tmp_path: Path) -> None:
    bad = [avqa_row(30, audio=b"junk"), avqa_row(31, audio=wav(0.3, sr=22_050))]
    one = run_on("avqa", tmp_path / "a", bad, num_workers=1)
    two = run_on("avqa", tmp_path / "b", bad, num_workers=2)
    assert (one.issues, one.rates, one.audio_ok) == (two.issues, two.rates, two.audio_ok)


@pytest.mark.parametrize("kind", ["mmsu", "mmau"])
def test_max_items_caps_the_decoded_clips(kind: str, tmp_path: Path) -> None:
    check = run_on(kind, tmp_path, [], max_items=5)
    assert check.sampled and check.checked == 5 and check.rows == GOOD
    assert check.audio_ok == 5 and check.read == GOOD  # every question checked, 5 clips decoded


def test_mmau_audio_is_found_by_audio_id_without_an_audio_folder(tmp_path: Path) -> None:
    """The README's `python -m local.validate ... --mmau_json data/mmau/mmau-test-mini.json`
    (no --mmau_audio_dir): each clip is the question's audio_id beside the JSON, as evaluation
    reads it (data/mmau/test-mini-audios/<id>.wav), not a file name directly beside the JSON."""
    path = save_mmau(tmp_path / "mmau", [mmau_item(i) for i in range(3)])
    (check,) = validate.run(mmau_json=path, report=tmp_path / "report.md")
    assert check.usable and check.audio_ok == 3, check.one_line()


def test_the_full_mmau_test_and_mmar_are_validated_from_the_cli(tmp_path: Path) -> None:
    """mmau-test.json (answers withheld: valid) and MMAR-meta.jsonl (audio by audio_path), each
    with one clip missing out of 31: reported, usable (3.2% < 5%)."""
    items = [mmau_item(i, audio_id=f"./test-audios/m{i}.wav", answer=None)
             for i in range(GOOD + 1)]
    (tmp_path / "mmau" / "test-audios").mkdir(parents=True)
    for item in items[1:]:
        (tmp_path / "mmau" / "test-audios" / f"{item['id']}.wav").write_bytes(wav())
    mmau_test = tmp_path / "mmau" / "mmau-test.json"
    mmau_test.write_text(json.dumps(items))
    mmar = write_mmar_set(tmp_path / "mmar", [mmar_item(i) for i in range(GOOD + 1)],
                          skip_audio=("mmar-0",))
    report = tmp_path / "validation.md"
    assert validate.main(["--mmau_test_json", str(mmau_test), "--mmar_json", str(mmar),
                          "--report", str(report), "--num_workers", "1"]) == 0
    checks = {d["name"]: d for d in json.loads(report.with_suffix(".json").read_text())
              ["datasets"]}
    assert set(checks) == {"mmau_test", "mmar"}
    for check in checks.values():
        assert check["read"] == GOOD + 1 and check["audio_ok"] == GOOD, check
