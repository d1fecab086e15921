"""local.prepare.cli through the real hub code, offline: a temporary HF cache in the real layout.

The cache is built as huggingface_hub 2.x lays it out (`<type>s--<org>--<name>/blobs/<hash>`,
`snapshots/<commit>/<file>` symlinked to the blob, `refs/main` holding the commit), and prepare
runs unmodified with HF_HUB_OFFLINE=1, so `snapshot_download` resolves the snapshot itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.data.avqa import read_avqa
from local.data.mmau import read_mmau
from local.data.mmsu import read_mmsu
from local.prepare import cli as prepare
from tests.helpers import REPO
from tests.sources import (
    MAIN,
    avqa_row,
    cache_repo,
    mmau_audio_tar,
    mmau_item,
    mmsu_row,
    save_avqa,
    save_mmau,
    save_mmsu,
    wav,
    write_mmau_hub,
    write_mmau_json,
)

PINNED = "b" * 40
MODEL = "Qwen/Qwen2.5-Omni-7B"


def mmau_sources(tmp: Path, n: int = 4) -> tuple[Path, Path]:
    """(folder holding test-mini-audios.tar.gz, question JSON) for n items."""
    questions = save_mmau(tmp / "mmau-src", [mmau_item(i) for i in range(n)],
                          clip=lambda i, item: wav(0.1))
    archive = mmau_audio_tar(tmp / "mmau-src" / "test-mini-audios",
                             tmp / "mmau-hub" / "test-mini-audios.tar.gz")
    return archive.parent, questions


@pytest.fixture
def hub_cache(tmp_path: Path, tiny_omni: Path) -> dict[str, Path]:
    """A populated cache in the hub's layouts: AVQA, MMSU, MMAU audio (test_mini.parquet), the
    model (a tiny Omni)."""
    cache = tmp_path / "hf" / "hub"
    avqa = save_avqa(tmp_path / "src-avqa", [avqa_row(i) for i in range(5)],
                     [avqa_row(i) for i in range(2)])
    mmsu = save_mmsu(tmp_path / "src-mmsu", [mmsu_row(i) for i in range(4)])
    items = [mmau_item(i) for i in range(4)]
    mmau_dir = tmp_path / "mmau-hub-parquet"
    write_mmau_hub(mmau_dir, items)
    questions = write_mmau_json(tmp_path / "mmau-test-mini.json", items)
    return {
        "cache": cache,
        "avqa": cache_repo(cache, "dataset", "gijs/avqa-processed", avqa),
        "mmsu": cache_repo(cache, "dataset", "yuantuo666/MMSU-full_5k_hf_format.v0", mmsu),
        "mmau": cache_repo(cache, "dataset", "gamma-lab-umd/MMAU-test-mini", mmau_dir),
        "model": cache_repo(cache, "model", MODEL, tiny_omni),
        "questions": questions,
    }


def run_prepare(tmp_path: Path, *args: str, cache: Path | None = None
                ) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process, offline, with the cache given by HF_HUB_CACHE."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    if cache is not None:
        env["HF_HUB_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "local.prepare.cli", "--data_dir",
                           str(tmp_path / "data"), "--model_dir", str(tmp_path / "models"),
                           "--num_workers", "1", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def markers(tmp_path: Path) -> dict[str, float]:
    found = [*tmp_path.glob("data/*/.done"), *tmp_path.glob("models/*/.done")]
    return {str(p.relative_to(tmp_path)): p.stat().st_mtime for p in found}


# ---------------------------------------------------------------------------------- offline

def test_offline_empty_cache_fails_fast_with_one_line_per_source(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run_prepare(tmp_path)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    expected = {"model (": "--model PATH", "avqa (": "--avqa PATH", "mmsu (": "--mmsu PATH",
                "mmau audio (": "--mmau_audio PATH", "mmau questions": "--mmau_json PATH"}
    assert len(errors) == len(expected), result.stderr
    for start_of_line, option in expected.items():
        (line,) = [e for e in errors if f"ERROR {start_of_line}" in e]
        assert option in line and ("internet" in line or "HF_HUB_OFFLINE" in line), line
    assert not (tmp_path / "data" / "avqa").exists()


def test_prepare_from_the_cache_then_rerun_skips(tmp_path: Path, hub_cache: dict) -> None:
    result = run_prepare(tmp_path, "--mmau_json", str(hub_cache["questions"]),
                         cache=hub_cache["cache"])
    assert result.returncode == 0, result.stderr
    data = tmp_path / "data"
    train = list(read_avqa(data / "avqa", "train"))
    assert [r.id for r in train] == [f"avqa-train-{i}" for i in range(5)]
    assert len(list(read_avqa(data / "avqa", "val"))) == 2
    assert (data / "avqa" / "train" / "state.json").is_symlink()  # linked into the cache
    assert str(hub_cache["cache"]) in os.path.realpath(data / "avqa" / "train" / "state.json")
    assert [r.id for r in read_mmsu(data / "mmsu")] == ["k0", "k1", "k2", "k3"]
    mmau = list(read_mmau(data / "mmau" / "mmau-test-mini.json",
                          data / "mmau" / "test-mini-audios"))
    assert len(mmau) == 4 and all(Path(r.audio).is_file() for r in mmau)
    manifest = json.loads((data / "mmau" / "manifest.json").read_text())
    digest = hashlib.sha256(hub_cache["questions"].read_bytes()).hexdigest()
    assert manifest["questions"]["sha256"] == digest
    assert "converted 4 clips" in manifest["audio"]["how"]
    assert manifest["join"]["questions_without_audio"] == []
    model = tmp_path / "models" / "Qwen2.5-Omni-7B"
    assert json.loads((model / ".done").read_text())["family"] == "qwen2_5_omni"
    assert (model / "config.json").is_file()
    report = json.loads((data / "validation.json").read_text())
    assert report["usable"] and report["model_family"] == "qwen2_5_omni"
    assert {d["name"] for d in report["datasets"]} == {"avqa/train", "avqa/val", "mmsu",
                                                       "mmau-test-mini"}
    done = markers(tmp_path)
    assert len(done) == 4

    again = run_prepare(tmp_path, "--mmau_json", str(hub_cache["questions"]),
                        cache=hub_cache["cache"])
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already prepared") == 4
    assert "validation: " in again.stderr and "skipping it" in again.stderr
    assert markers(tmp_path) == done


# ------------------------------------------------------------------------------- in-process

@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs are offline too, whatever the caller's environment says."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def args_for(tmp_path: Path, cache: Path, *extra: str) -> list[str]:
    return ["--data_dir", str(tmp_path / "data"), "--model_dir", str(tmp_path / "models"),
            "--cache_dir", str(cache), "--num_workers", "1", *extra]


def test_revision_pin_selects_that_snapshot_and_a_new_pin_redoes(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    old = save_mmsu(tmp_path / "old", [mmsu_row(i) for i in range(2)])
    new = save_mmsu(tmp_path / "new", [mmsu_row(i) for i in range(3)])
    repo = "yuantuo666/MMSU-full_5k_hf_format.v0"
    cache_repo(cache, "dataset", repo, old, MAIN)
    cache_repo(cache, "dataset", repo, new, PINNED, ref=None)  # reachable only by its commit
    assert prepare.main(args_for(tmp_path, cache, "--sources", "mmsu")) == 0
    assert len(list(read_mmsu(tmp_path / "data" / "mmsu"))) == 2
    pinned = args_for(tmp_path, cache, "--sources", "mmsu", "--revision", f"mmsu={PINNED}")
    assert prepare.main(pinned) == 0
    assert len(list(read_mmsu(tmp_path / "data" / "mmsu"))) == 3
    done = json.loads((tmp_path / "data" / "mmsu" / ".done").read_text())
    assert (done["revision"], done["commit"]) == (PINNED, PINNED)


def test_overwrite_redoes_a_finished_part(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    cache_repo(cache, "dataset", "yuantuo666/MMSU-full_5k_hf_format.v0",
               save_mmsu(tmp_path / "src", [mmsu_row(0), mmsu_row(1)]))
    argv = args_for(tmp_path, cache, "--sources", "mmsu", "--no_validate")
    assert prepare.main(argv) == 0
    marker = tmp_path / "data" / "mmsu" / ".done"
    first = marker.read_text()
    time.sleep(1.1)  # .done records the finishing second
    assert prepare.main(argv) == 0 and marker.read_text() == first
    assert prepare.main([*argv, "--overwrite"]) == 0 and marker.read_text() != first


def test_incomplete_cached_snapshot_is_one_clear_line(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    cache = tmp_path / "hub"
    snap = cache_repo(cache, "dataset", "gijs/avqa-processed",
                      save_avqa(tmp_path / "src", [avqa_row(0)]))
    listing = {str(p.relative_to(snap)): TreeCacheEntry(size=1, blob_id="0" * 40)
               for p in snap.rglob("*") if p.is_file()}
    listing["train/data-00001-of-00002.arrow"] = TreeCacheEntry(size=1, blob_id="1" * 40)
    write_tree_cache(str(cache / "datasets--gijs--avqa-processed"), MAIN, listing)
    assert prepare.main(args_for(tmp_path, cache, "--sources", "avqa")) == 1
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ERROR")]
    assert len(errors) == 1 and "incomplete" in errors[0] and "--avqa PATH" in errors[0]
    assert not (tmp_path / "data" / "avqa").exists()


def test_interrupted_mmau_finishes_on_rerun_like_a_clean_run(tmp_path: Path) -> None:
    """The audio half finishes, the question half fails: no .done; a re-run completes it."""
    cache = tmp_path / "hub"
    items = [mmau_item(i) for i in range(4)]
    write_mmau_hub(tmp_path / "mmau-hub", items)
    questions = write_mmau_json(tmp_path / "mmau-test-mini.json", items)
    cache_repo(cache, "dataset", "gamma-lab-umd/MMAU-test-mini", tmp_path / "mmau-hub")
    base = ["--sources", "mmau", "--no_validate", "--mmau_url", "file:///no/such/file.json"]
    assert prepare.main(args_for(tmp_path / "run", cache, *base)) == 1  # offline: no JSON
    mmau = tmp_path / "run" / "data" / "mmau"
    assert (mmau / "test-mini-audios").is_dir() and not (mmau / ".done").exists()
    assert prepare.main(args_for(tmp_path / "run", cache, *base, "--mmau_json",
                                 str(questions))) == 0
    assert prepare.main(args_for(tmp_path / "clean", cache, *base, "--mmau_json",
                                 str(questions))) == 0
    clean = tmp_path / "clean" / "data" / "mmau"
    for rel in ("mmau-test-mini.json", *(f"test-mini-audios/m{i}.wav" for i in range(4))):
        assert (mmau / rel).read_bytes() == (clean / rel).read_bytes()
    assert (json.loads((mmau / "manifest.json").read_text())["questions"]["sha256"]
            == json.loads((clean / "manifest.json").read_text())["questions"]["sha256"])


def test_local_paths_are_symlinked_not_copied(tmp_path: Path, tiny_omni: Path) -> None:
    avqa = save_avqa(tmp_path / "mine" / "avqa", [avqa_row(i) for i in range(3)])
    mmau_dir, questions = mmau_sources(tmp_path)
    argv = args_for(tmp_path, tmp_path / "empty-cache", "--model", str(tiny_omni),
                    "--avqa", str(avqa), "--mmau_audio", str(mmau_dir / "test-mini-audios.tar.gz"),
                    "--mmau_json", str(questions), "--sources", "avqa", "mmau", "model")
    assert prepare.main(argv) == 0
    linked = tmp_path / "data" / "avqa" / "train" / "state.json"
    assert linked.is_symlink() and Path(os.readlink(linked)) == (avqa / "train" / "state.json")
    assert (tmp_path / "models" / tiny_omni.name / "config.json").is_symlink()
    assert len(list((tmp_path / "data" / "mmau" / "test-mini-audios").glob("*.wav"))) == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--model", "org/unknown-model"], "neither a local folder", id="unknown-id"),
        pytest.param(["--model", "{empty}"], "not a usable checkpoint", id="folder-not-a-model"),
        pytest.param(["--avqa", "{empty}", "--sources", "avqa"], "has no train/",
                     id="avqa-folder-without-train"),
        pytest.param(["--mmsu", "/no/such/dir", "--sources", "mmsu"], "does not exist",
                     id="local-path-missing"),
    ],
)
def test_bad_sources_give_one_actionable_line(argv: list[str], message: str, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{empty}", str(tmp_path / "empty")) for a in argv]
    sources = [] if "--sources" in argv else ["--sources", "model"]
    assert prepare.main(args_for(tmp_path, tmp_path / "hub", *argv, *sources)) == 1
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], errors


def test_disk_check_says_how_much_is_needed(tmp_path: Path) -> None:
    from local.prepare.hub import SourceError, check_disk

    with pytest.raises(SourceError, match=r"avqa: needs \d+\.\d GB .* GB free.* --avqa PATH"):
        check_disk(tmp_path / "not" / "yet", 10**18, "avqa", "--avqa")
    check_disk(tmp_path, 1, "avqa", "--avqa")  # enough room: no error


def test_model_table_matches_the_supported_models() -> None:
    from local.core.models import SUPPORTED_MODELS

    assert set(prepare.MODEL_GB) == set(SUPPORTED_MODELS)


def test_run_sh_dry_run_prints_one_prepare_call() -> None:
    env = {**os.environ, "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    result = subprocess.run(["bash", "run.sh", "--stage", "prepare", "--dry_run", "--sources",
                             "mmsu mmau", "--revisions", "mmsu=abc", "--", "--mmau_json", "q.json"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Stage prepare: hub -> data, models" in result.stderr
    calls = [line for line in result.stderr.splitlines() if "-m local.prepare" in line]
    assert len(calls) == 1
    assert ("--sources mmsu mmau --revision mmsu=abc --mmau_json q.json" in calls[0]
            and "--model Qwen/Qwen2.5-Omni-7B" in calls[0])


def test_real_question_file_is_recognised(tmp_path: Path) -> None:
    real = REPO.parent / "shared" / "data" / "mmau" / "mmau-test-mini.json"
    if not real.is_file():
        pytest.skip("../shared/data/mmau/mmau-test-mini.json is absent")
    from local.prepare.mmau import fetch_questions

    info = fetch_questions(str(real), "unused://", tmp_path / "q.json")
    assert info["items"] == 1000 and info["known_version"].startswith("MMAU-v05.15.25")
    assert (tmp_path / "q.json").read_bytes() == real.read_bytes()


@pytest.mark.parametrize("hub_id", ["Qwen/Qwen3-Omni-30B-A3B-Instruct",
                                    "Qwen/Qwen3-Omni-30B-A3B-Thinking"])
def test_prepare_model_takes_qwen3_omni_by_hub_id(tmp_path: Path, tiny_qwen3_omni: Path,
                                                  hub_id: str) -> None:
    """`prepare --model Qwen/Qwen3-Omni-30B-A3B-*`: the snapshot (here the tiny MoE thinker
    cached under that id) is linked at models/<name> and its family recorded."""
    cache = tmp_path / "hub"
    cache_repo(cache, "model", hub_id, tiny_qwen3_omni)
    assert prepare.main(args_for(tmp_path, cache, "--model", hub_id, "--sources", "model")) == 0
    dest = tmp_path / "models" / hub_id.split("/")[-1]
    assert (dest / "config.json").is_symlink()
    done = json.loads((dest / ".done").read_text())
    assert done["family"] == "qwen3_omni_moe" and done["source"] == hub_id
    assert prepare.MODEL_GB[hub_id] > 60  # 35.3B parameters in bf16
