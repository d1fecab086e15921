"""Stage prepare against the sources' real layouts (tests/sources.py says what each is built from).

* MMAU test-mini audio as the hub holds it: one `test_mini.parquet`, clips in `context`, ids in
  the `other_attributes` JSON string, rows shuffled, WAV at 16-48 kHz with 1-6 channels and
  some MP3 payloads. Every question must resolve to its own clip, byte for byte.
* Hub refusals (401/404, gated) are told apart from "unreachable".
* A failure in one source does not stop the validation of the others.
* Later stages find the model prepare fetched (`models/<name>`), whatever cache it used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from local.data.mmau import read_mmau
from local.prepare import cli as prepare
from local.prepare import hub
from local.prepare.hub import Source, SourceError
from tests.helpers import REPO
from tests.sources import (
    MMAU_HUB_FILE,
    cache_repo,
    mmau_item,
    mmsu_row,
    real_mmau_json,
    save_mmsu,
    write_mmau_hub,
    write_mmau_json,
)

MMAU_REPO = "gamma-lab-umd/MMAU-test-mini"


def args_for(root: Path, cache: Path, *extra: str) -> list[str]:
    return ["--data_dir", str(root / "data"), "--model_dir", str(root / "models"),
            "--cache_dir", str(cache), "--num_workers", "1", *extra]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "_offline", lambda: True)


def errors_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ERROR")]


def assert_each_item_has_its_clip(json_path: Path, audio_dir: Path,
                                  payloads: dict[str, bytes]) -> None:
    records = list(read_mmau(json_path, audio_dir))
    assert len(records) == len(payloads)
    for record in records:
        assert Path(record.audio).read_bytes() == payloads[record.id], record.id


# ------------------------------------------------------------------------ MMAU hub layout

def test_hub_parquet_layout_gives_every_question_its_own_clip(
        tmp_path: Path, offline: None) -> None:
    items = [mmau_item(i) for i in range(60)]
    questions = write_mmau_json(tmp_path / "mmau-test-mini.json", items)
    payloads = write_mmau_hub(tmp_path / "hub-files", items)
    assert sum(p[:4] != b"RIFF" for p in payloads.values()) >= 2  # MP3 payloads among them
    cache = tmp_path / "hub"
    cache_repo(cache, "dataset", MMAU_REPO, tmp_path / "hub-files")

    argv = args_for(tmp_path, cache, "--sources", "mmau", "--mmau_json", str(questions))
    assert prepare.main(argv) == 0
    mmau = tmp_path / "data" / "mmau"
    assert_each_item_has_its_clip(mmau / "mmau-test-mini.json", mmau / "test-mini-audios",
                                  payloads)
    join = json.loads((mmau / "manifest.json").read_text())["join"]
    assert join["questions_without_audio"] == [] and join["audio_without_question"] == []
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert report["usable"] is True


def test_join_reports_questions_without_audio_and_audio_without_question(
        tmp_path: Path, offline: None, caplog: pytest.LogCaptureFixture) -> None:
    items = [mmau_item(i) for i in range(12)]
    write_mmau_hub(tmp_path / "hub-files", [*items[2:], mmau_item(99)])  # m0, m1 absent
    questions = write_mmau_json(tmp_path / "q.json", items)
    cache_repo(tmp_path / "hub", "dataset", MMAU_REPO, tmp_path / "hub-files")
    argv = args_for(tmp_path, tmp_path / "hub", "--sources", "mmau", "--mmau_json",
                    str(questions), "--no_validate")
    assert prepare.main(argv) == 0
    join = json.loads((tmp_path / "data" / "mmau" / "manifest.json").read_text())["join"]
    assert join["questions_without_audio"] == ["m0", "m1"]
    assert join["audio_without_question"] == ["m99.wav"]
    text = caplog.text
    assert "2 of 12 questions have no audio file" in text
    assert "1 audio files are named by no question" in text


def test_hub_rows_without_bytes_are_skipped_and_reported(tmp_path: Path) -> None:
    from local.prepare.unpack import build_audio_dir

    items = [mmau_item(i) for i in range(5)]
    payloads = {item["id"]: b"" if item["id"] == "m3" else bytes([i]) * 10
                for i, item in enumerate(items)}
    write_mmau_hub(tmp_path / "src", items, payloads=payloads)
    how = build_audio_dir(tmp_path / "src", tmp_path / "out")
    assert "converted 4 clips" in how and "1 row(s) without audio bytes skipped (id m3)" in how
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "m0.wav", "m1.wav", "m2.wav", "m4.wav"]


def test_hub_row_with_bad_attributes_names_the_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from local.prepare.unpack import UnpackError, build_audio_dir

    (tmp_path / "src").mkdir()
    pq.write_table(pa.Table.from_pylist([{"context": {"bytes": b"x", "path": None},
                                          "other_attributes": "not json"}]),
                   tmp_path / "src" / MMAU_HUB_FILE)
    with pytest.raises(UnpackError, match="row 0: other_attributes 'not json' holds no JSON"):
        build_audio_dir(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_question_file_on_a_hub_shaped_cache_through_run_sh(tmp_path: Path) -> None:
    """The issue's acceptance run: 1000 shuffled rows, MP3 and multi-channel payloads, the real
    question file, `HF_HUB_OFFLINE=1 bash run.sh --stage prepare --sources mmau`."""
    real = real_mmau_json()
    items = json.loads(real.read_text())
    payloads = write_mmau_hub(tmp_path / "hub-files", items, seed=1)
    cache_repo(tmp_path / "hf" / "hub", "dataset", MMAU_REPO, tmp_path / "hub-files")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "VIRTUAL_ENV": str(Path(sys.executable).parent.parent), "CONDA_PREFIX": ""}
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run(
        ["bash", "run.sh", "--stage", "prepare", "--sources", "mmau",
         "--data_dir", str(tmp_path / "data"), "--model_dir", str(tmp_path / "models"),
         "--", "--mmau_json", str(real), "--num_workers", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    mmau = tmp_path / "data" / "mmau"
    assert (mmau / "mmau-test-mini.json").read_bytes() == real.read_bytes()
    assert_each_item_has_its_clip(mmau / "mmau-test-mini.json", mmau / "test-mini-audios",
                                  payloads)
    assert "1000 of 1000 questions have their audio file" in result.stderr


# -------------------------------------------------------------- failures stay independent

def test_a_failed_source_does_not_stop_validation_of_the_others(
        tmp_path: Path, offline: None, caplog: pytest.LogCaptureFixture) -> None:
    mmsu = save_mmsu(tmp_path / "src-mmsu", [mmsu_row(i) for i in range(4)])
    argv = args_for(tmp_path, tmp_path / "empty-cache", "--sources", "mmsu", "mmau",
                    "--mmsu", str(mmsu), "--mmau_json", str(tmp_path / "nope.json"))
    assert prepare.main(argv) == 1
    assert len(errors_of(caplog)) == 2  # both mmau halves, each in one line
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert [d["name"].split("/")[0].split("-")[0] for d in report["datasets"]] == ["mmsu"]


# ------------------------------------------------------------------------ hub refusals

def _http_error(cls: type, status: int) -> Exception:
    request = httpx.Request("GET", "https://huggingface.co/api/datasets/x")
    return cls(f"{status} Client Error", response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    ("cause", "message"),
    [
        pytest.param("not_found", r"no repository 'org/typo' visible to you \(HTTP 404\): check "
                     "the id for a typo; if it is private, set HF_TOKEN", id="404-typo"),
        pytest.param("unauthorized", r"no repository 'org/typo' visible to you \(HTTP 401\)",
                     id="401-private"),
        pytest.param("gated", r"gated and your token has no access: accept its licence on "
                     r"https://huggingface.co/datasets/org/typo", id="gated"),
        pytest.param("server", r"the hub answered with an error \(HTTP 503", id="5xx"),
        pytest.param("unreachable", "not in the Hugging Face cache .* the hub is unreachable",
                     id="connection-error"),
    ],
)
def test_hub_refusals_are_told_apart_from_unreachable(
        cause: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    errors = {"not_found": lambda: _http_error(RepositoryNotFoundError, 404),
              "unauthorized": lambda: _http_error(RepositoryNotFoundError, 401),
              "gated": lambda: _http_error(GatedRepoError, 403),
              "server": lambda: _http_error(HfHubHTTPError, 503),
              "unreachable": lambda: httpx.ConnectError("no route to host")}

    def refuse(*args: object, **kwargs: object) -> None:
        raise errors[cause]()

    monkeypatch.setattr(hub, "_offline", lambda: False)
    monkeypatch.setattr(HfApi, "repo_info", refuse)
    src = Source("mmsu", "org/typo", "dataset", "--mmsu", 2.0)
    with pytest.raises(SourceError, match=message) as caught:
        hub.hub_snapshot(src, tmp_path / "cache")
    assert "\n" not in str(caught.value) and "--mmsu PATH" in str(caught.value)


def test_a_refused_listing_still_uses_a_cached_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    def refuse(*args: object, **kwargs: object) -> None:
        raise _http_error(GatedRepoError, 403)

    mmsu = save_mmsu(tmp_path / "src", [mmsu_row(0)])
    snap = cache_repo(tmp_path / "cache", "dataset", "org/gated", mmsu)
    monkeypatch.setattr(hub, "_offline", lambda: False)
    monkeypatch.setattr(HfApi, "repo_info", refuse)
    src = Source("mmsu", "org/gated", "dataset", "--mmsu", 2.0)
    assert hub.hub_snapshot(src, tmp_path / "cache") == snap


# ------------------------------------------------------------ later stages find the model

@pytest.mark.parametrize("stage", ["train", "mmau", "mmsu"])
def test_later_stages_load_the_model_prepare_made(stage: str, tmp_path: Path) -> None:
    env = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}

    def dry_run() -> str:
        result = subprocess.run(
            ["bash", "run.sh", "--stage", stage, "--dry_run", "true", "--model",
             "Qwen/Qwen2.5-Omni-3B", "--model_dir", str(tmp_path / "models"), "--nproc", "1"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return next(line for line in result.stderr.splitlines() if "+ " in line
                    and ("train.py" in line or "local.eval.steps" in line))

    flag = "--model_name_or_path" if stage == "train" else "--model"
    assert f"{flag} Qwen/Qwen2.5-Omni-3B" in dry_run()  # not prepared: the hub id
    prepared = tmp_path / "models" / "Qwen2.5-Omni-3B"
    prepared.mkdir(parents=True)
    (prepared / ".done").write_text("{}")
    assert f"{flag} {prepared}" in dry_run()
