"""Extraction, conversion and link trees are atomic: an interrupted run, re-run, equals a clean one.

Interruptions are real exceptions raised in the middle of the work (after a few files have been
moved, written or linked); the code under test is not replaced.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from local.prepare import hub
from local.prepare import unpack as hub_unpack
from local.prepare.unpack import UnpackError, build_audio_dir
from tests.sources import audio_dataset, mmau_audio_tar, mmau_item, wav, write_mmau_hub

NAMES = [f"{i:02d}-clip.wav" for i in range(6)]


def audio_files(root: Path) -> Path:
    root.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        (root / name).write_bytes(wav(0.05 + 0.01 * i))
    return root


def make_tar(tmp: Path) -> Path:
    return mmau_audio_tar(audio_files(tmp / "src" / "test-mini-audios"),
                          tmp / "test-mini-audios.tar.gz")


def make_zip(tmp: Path) -> Path:
    src = audio_files(tmp / "src" / "audios")
    archive = tmp / "test-mini-audios.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in NAMES:
            zf.write(src / name, f"nested/dir/{name}")
        zf.writestr("__MACOSX/nested/._00-clip.wav", b"resource fork, not audio")
    return archive


def make_parquet(tmp: Path) -> Path:
    """An audio parquet snapshot (data/test-*.parquet, an `audio` column), named by `id`."""
    rows = [{"audio": {"bytes": wav(0.05 + 0.01 * i), "path": name}, "id": name[:-4]}
            for i, name in enumerate(NAMES)]
    (tmp / "snap" / "data").mkdir(parents=True)
    audio_dataset(rows).to_parquet(str(tmp / "snap" / "data" / "test-00000-of-00001.parquet"))
    return tmp / "snap"


def make_hub_parquet(tmp: Path) -> Path:
    """The hub's MMAU layout (test_mini.parquet, ids in other_attributes), named by item id."""
    items = [mmau_item(i, id=name[:-4]) for i, name in enumerate(NAMES)]
    write_mmau_hub(tmp / "hub-snap", items,
                   payloads={n[:-4]: wav(0.05 + 0.01 * i) for i, n in enumerate(NAMES)})
    return tmp / "hub-snap"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


class Interrupt(BaseException):
    """Stands for Ctrl-C / a killed job: not an Exception, so nothing swallows it."""


def interrupt_after(monkeypatch: pytest.MonkeyPatch, module: object, name: str, calls: int) -> None:
    """Let `calls` calls of module.name through, then raise Interrupt."""
    real = getattr(module, name)
    count = {"n": 0}

    def wrapper(*args: object, **kwargs: object) -> object:
        count["n"] += 1
        if count["n"] > calls:
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize(
    ("make", "module", "step", "how"),
    [
        pytest.param(make_tar, hub_unpack.os, "replace", "extracted 6", id="tar-extraction"),
        pytest.param(make_zip, hub_unpack.os, "replace", "extracted 6", id="zip-extraction"),
        pytest.param(make_parquet, hub_unpack, "open", "converted 6", id="parquet-conversion"),
        pytest.param(make_hub_parquet, hub_unpack, "open", "converted 6",
                     id="hub-parquet-conversion"),
    ],
)
def test_interrupted_unpack_then_rerun_equals_a_clean_run(
        make: object, module: object, step: str, how: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = make(tmp_path)  # type: ignore[operator]
    clean = tmp_path / "clean" / "test-mini-audios"
    assert how in build_audio_dir(source, clean)
    assert sorted(snapshot(clean)) == NAMES  # flat, by file name; no macOS resource forks

    dest = tmp_path / "data" / "mmau" / "test-mini-audios"
    with monkeypatch.context() as patch:
        if module is hub_unpack:
            patch.setattr(hub_unpack, "open", open, raising=False)  # a module-level `open`
        interrupt_after(patch, module, step, 3)
        with pytest.raises(Interrupt):
            build_audio_dir(source, dest)
    assert not dest.exists()  # nothing half-done where readers look
    assert (dest.parent / ".test-mini-audios.partial").exists()
    build_audio_dir(source, dest)
    assert snapshot(dest) == snapshot(clean)
    assert not (dest.parent / ".test-mini-audios.partial").exists()


def test_loose_files_are_linked_not_copied(tmp_path: Path) -> None:
    src = audio_files(tmp_path / "loose")
    dest = tmp_path / "out"
    assert "linked 6" in build_audio_dir(src, dest)
    assert all((dest / n).is_symlink() for n in NAMES)
    assert snapshot(dest) == snapshot(src)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param({"readme.txt": b"no audio here"}, "no audio found", id="no-audio"),
        pytest.param({"broken.tar.gz": b"not a tar archive"}, "cannot extract", id="corrupt-tar"),
        pytest.param({"a/x.wav": b"1", "b/x.wav": b"2"}, "share the name", id="name-clash"),
    ],
)
def test_unusable_sources_say_what_to_do(content: dict[str, bytes], message: str,
                                         tmp_path: Path) -> None:
    for rel, data in content.items():
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(data)
    with pytest.raises(UnpackError, match=message):
        build_audio_dir(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_interrupted_link_tree_keeps_the_old_tree(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = audio_files(tmp_path / "snap" / "train")
    dest = tmp_path / "data" / "avqa"
    assert hub.link_tree(tmp_path / "snap", dest) == len(NAMES)
    before = sorted(os.readlink(p) for p in (dest / "train").iterdir())
    with monkeypatch.context() as patch:
        interrupt_after(patch, hub.os, "symlink", 2)
        with pytest.raises(Interrupt):
            hub.link_tree(tmp_path / "snap", dest)
    assert sorted(os.readlink(p) for p in (dest / "train").iterdir()) == before
    hub.link_tree(tmp_path / "snap", dest)
    assert sorted(os.readlink(p) for p in (dest / "train").iterdir()) == before
    assert all(Path(t).is_absolute() and Path(t).parent == src for t in before)
