"""`prepare --sources mmar`: the hub dataset BoJack/MMAR's two files (question list and audio
archive) from a temporary HF cache in the real layout, offline, or a local --mmar_dir; the
archive extracted safely; audio found by `audio_path` (not `<id>.wav`); one line when MMAR
cannot be supplied. The hub layout is tests/sources.py's `mmar_hub` (its evidence there)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from local.data.mmar import read_mmar
from local.prepare import cli as prepare
from tests.sources import MMAR_RENAMED, cache_repo, mmar_hub, mmar_item, wav, write_mmar_set

ITEMS = [mmar_item(0, id=MMAR_RENAMED[0], audio_path=MMAR_RENAMED[1]),
         *(mmar_item(i) for i in range(1, 4))]
CLIPS = {Path(item["audio_path"]).name: wav(0.05, freq=300 + 50 * i)
         for i, item in enumerate(ITEMS)}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs are offline, whatever the caller's environment says."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def run(tmp_path: Path, *extra: str) -> int:
    return prepare.main(["--data_dir", str(tmp_path / "data"), "--model_dir",
                         str(tmp_path / "models"), "--sources", "mmar", "--cache_dir",
                         str(tmp_path / "hub"), *extra])


def test_from_the_hub_cache_every_item_finds_its_audio(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    files = mmar_hub(tmp_path / "src", ITEMS, CLIPS)
    (files / "README.md").write_text("not needed")  # allow_patterns: only the two files
    cache_repo(tmp_path / "hub", "dataset", "BoJack/MMAR", files)
    with caplog.at_level("INFO", logger="prepare"):
        assert run(tmp_path) == 0
    data = tmp_path / "data" / "mmar"
    questions = data / "MMAR-meta.jsonl"
    lines = questions.read_text().splitlines()
    assert [json.loads(line) for line in lines] == ITEMS  # the JSON list, one item per line
    records = list(read_mmar(questions))
    assert [r.id for r in records] == [i["id"] for i in ITEMS]
    assert Path(records[0].audio).name == Path(MMAR_RENAMED[1]).name  # audio_path, not the id
    assert all(Path(r.audio).read_bytes() == CLIPS[Path(r.audio).name] for r in records)
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["licence"] == "CC BY-NC 4.0"
    assert manifest["join"]["questions_without_audio"] == []
    assert "extracted 4 audio files" in manifest["audio"]["how"]
    assert "CC BY-NC 4.0" in caplog.text  # said before anything is fetched
    with caplog.at_level("INFO", logger="prepare"):
        assert run(tmp_path) == 0 and "already prepared" in caplog.text  # a re-run skips


def test_from_a_local_folder_with_a_missing_clip(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "MMAR"
    write_mmar_set(source, ITEMS, skip_audio=(ITEMS[2]["id"],))
    (source / "audio" / "stray.wav").write_bytes(wav())
    with caplog.at_level("INFO", logger="prepare"):
        assert run(tmp_path, "--mmar_dir", str(source)) == 1  # 1 of 4 clips: over 5% broken
    assert "UNUSABLE mmar: 1 of 4 checked rows are broken" in caplog.text  # validation, decoded
    data = tmp_path / "data" / "mmar"
    assert (data / "MMAR-meta.jsonl").read_bytes() == (source / "MMAR-meta.jsonl").read_bytes()
    assert (data / "audio" / Path(MMAR_RENAMED[1]).name).is_symlink()  # linked, not copied
    join = json.loads((data / "manifest.json").read_text())["join"]
    assert join["questions_without_audio"] == [ITEMS[2]["id"]]
    assert join["audio_without_question"] == ["stray.wav"]
    assert "3 of 4 questions have their audio file" in caplog.text


def test_an_archive_member_leaving_the_folder_is_refused(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    source = mmar_hub(tmp_path / "src", ITEMS, CLIPS, members={"../escape.wav": wav()})
    assert run(tmp_path, "--mmar_dir", str(source)) == 1
    assert not list(tmp_path.rglob("escape.wav"))
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ERROR ")]
    assert len(errors) == 1 and "MMAR audio" in errors[0] and "cannot extract" in errors[0]
    assert not (tmp_path / "data" / "mmar" / ".done").exists()


@pytest.mark.parametrize("case", ["offline", "no-audio", "not-mmar"])
def test_mmar_that_cannot_be_supplied_is_one_line(case: str, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    extra: list[str] = []
    if case != "offline":
        source = mmar_hub(tmp_path / "src", ITEMS, CLIPS)
        if case == "no-audio":
            os.remove(source / "mmar-audio.tar.gz")
        else:
            (source / "MMAR-meta.json").write_text(json.dumps([{"id": "m1", "audio_id": "x"}]))
        extra = ["--mmar_dir", str(source)]
    assert run(tmp_path, *extra) == 1
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ERROR ")]
    assert len(errors) == 1 and "MMAR" in errors[0] and "\n" not in errors[0], errors
    assert "--mmar_dir" in errors[0]
    if case == "offline":
        assert "HF_HUB_OFFLINE" in errors[0] and "internet" in errors[0]
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
