"""local.util.fsio: atomic files, folders built aside with one `.done` format, used by every stage.

- A file appears whole or not at all; a failed writer leaves the old file and no temporary.
- A folder is built under `.NAME.partial`, marked done last and swapped in; an interruption
  leaves the old folder (or none) where readers look, and the next build starts afresh.
- Every builder of the recipe writes the one marker format, and no other module hand-writes
  markers or renames into place (a second copy would drift).
- util imports nothing of the recipe and nothing heavy.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.util.fsio import (
    DONE,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    building,
    is_done,
    mark_done,
    partial_dir,
    read_done,
)
from tests.helpers import REPO


class Interrupt(BaseException):
    """Stands for Ctrl-C / a killed job: not an Exception, so nothing swallows it."""


# ------------------------------------------------------------------------------------- files

def test_atomic_text_gets_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    assert written.stat().st_mode == plain.stat().st_mode  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "plain.txt"]


def test_atomic_path_renames_on_success_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "plot.png"
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.name == ".plot.png.partial.png" and tmp.parent == target.parent
        tmp.write_bytes(b"first")
    with pytest.raises(Interrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise Interrupt
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["plot.png"]


# ----------------------------------------------------------------------------------- folders

V1 = {"v": 1}


def _build(dest: Path, content: str, done: dict | None = V1, fail: bool = False) -> None:
    with building(dest, done) as tmp:
        (tmp / "a.txt").write_text(content)
        if fail:
            raise Interrupt
        (tmp / "b.txt").write_text(content)


def test_a_built_folder_is_swapped_in_whole_with_its_marker(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    _build(dest, "one")
    assert sorted(p.name for p in dest.iterdir()) == [DONE, "a.txt", "b.txt"]
    marker = read_done(dest)
    assert marker is not None and marker["v"] == 1 and "finished" in marker
    assert not partial_dir(dest).exists()


def test_an_interrupted_build_leaves_the_old_folder_and_the_next_one_starts_afresh(
        tmp_path: Path) -> None:
    dest = tmp_path / "out"
    _build(dest, "one")
    with pytest.raises(Interrupt):
        _build(dest, "two", {"v": 2}, fail=True)
    assert (dest / "b.txt").read_text() == "one" and is_done(dest, {"v": 1})
    assert (partial_dir(dest) / "a.txt").read_text() == "two"  # hidden, where no reader looks
    (partial_dir(dest) / "stale.txt").write_text("left by the interrupted run")
    _build(dest, "three", {"v": 3})
    assert sorted(p.name for p in dest.iterdir()) == [DONE, "a.txt", "b.txt"]
    assert (dest / "b.txt").read_text() == "three" and is_done(dest, {"v": 3})
    assert not partial_dir(dest).exists()


def test_a_first_build_interrupted_leaves_nothing_where_readers_look(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(Interrupt):
        _build(dest, "one", fail=True)
    assert not dest.exists() and not is_done(dest)


@pytest.mark.parametrize("old", ["folder", "file", "symlink"])
def test_a_build_replaces_whatever_was_there(tmp_path: Path, old: str) -> None:
    dest = tmp_path / "out"
    if old == "folder":
        dest.mkdir()
        (dest / "old.txt").write_text("old")
    elif old == "file":
        dest.write_text("old")
    else:
        (tmp_path / "elsewhere").mkdir()
        dest.symlink_to(tmp_path / "elsewhere")
    _build(dest, "new", done=None)
    assert not dest.is_symlink() and sorted(p.name for p in dest.iterdir()) == ["a.txt", "b.txt"]
    if old == "symlink":
        assert (tmp_path / "elsewhere").is_dir()  # the link goes, not what it pointed at


@pytest.mark.parametrize(
    ("marker", "wanted", "done"),
    [
        pytest.param(None, None, False, id="no-marker"),
        pytest.param("", None, False, id="empty-file-is-no-marker"),
        pytest.param("[1, 2]", None, False, id="not-an-object"),
        pytest.param('{"seed": 0', None, False, id="torn-json"),
        pytest.param('{"seed": 0}', None, True, id="any-marker"),
        pytest.param('{"seed": 0, "steps": 5}', {"seed": 0}, True, id="wanted-keys-agree"),
        pytest.param('{"seed": 0}', {"seed": 1}, False, id="a-setting-changed"),
        pytest.param('{"seed": 0}', {"steps": 5}, False, id="a-setting-not-recorded"),
    ],
)
def test_is_done(tmp_path: Path, marker: str | None, wanted: dict | None, done: bool) -> None:
    if marker is not None:
        (tmp_path / DONE).write_text(marker)
    assert is_done(tmp_path, wanted) is done


def test_mark_done_records_the_info_and_when(tmp_path: Path) -> None:
    mark_done(tmp_path, {"source": "hub", "revision": None})
    marker = json.loads((tmp_path / DONE).read_text())
    assert marker["source"] == "hub" and marker["revision"] is None
    assert len(marker["finished"]) == len("2025-01-01T00:00:00")
    atomic_write_json(tmp_path / "x.json", {"a": "é"})
    assert "é" in (tmp_path / "x.json").read_text(encoding="utf-8")


# ------------------------------------------------------- every builder writes the one format

def test_demo_data_and_tiny_model_markers_record_their_settings(tmp_path: Path) -> None:
    from local.demo import run
    from local.demo.data import write_demo_data

    data = write_demo_data(tmp_path / "data", n_train=4, n_eval=4, seed=3)
    assert is_done(data, {"n_train": 4, "n_eval": 4, "seed": 3})
    assert not is_done(data, {"n_train": 4, "n_eval": 4, "seed": 4})
    for part in ("avqa", "mmau"):  # built aside, no marker among the data files
        assert (data / part).is_dir() and not (data / part / DONE).exists()
    paths = {"random": tmp_path / "models" / "random"}
    run._tiny(paths, seed=3)
    assert is_done(paths["random"], run.tiny_settings(3))
    assert not is_done(paths["random"], run.tiny_settings(4))  # another seed is rebuilt


def test_policy_source_reduces_once_and_records_its_source(tmp_path: Path,
                                                           monkeypatch) -> None:
    from local.train import checkpoints
    from tests.helpers import tiny_checkpoint

    full = str(tiny_checkpoint("qwen2_5_omni", full_omni=True))
    cache = tmp_path / "run" / "init_thinker"
    assert checkpoints.policy_source(full, cache) == str(cache)
    assert is_done(cache, {"source": full, "revision": None})
    assert json.loads((cache / "config.json").read_text())["model_type"] == \
        "qwen2_5_omni_thinker"

    def no_load(*_: object, **__: object) -> None:
        raise AssertionError("a finished thinker folder was rebuilt")

    monkeypatch.setattr("local.core.models.load_model_and_processor", no_load)
    assert checkpoints.policy_source(full, cache) == str(cache)


def test_tests_tiny_checkpoint_cache_uses_the_one_format() -> None:
    from tests.helpers import tiny_checkpoint

    folder = tiny_checkpoint("qwen2_audio")
    assert is_done(folder, {"family": "qwen2_audio", "vocab": "tiny", "full_omni": False})


# ------------------------------------------------------------------- no second copy anywhere

# Renames that are not the build-aside pattern.
RENAME_ALLOWED = {
    "local/prepare/unpack.py": "moves each extracted file into the folder being built",
}


def _calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls of `<path>.rename`, `os.replace` and `tempfile.mkstemp` (`Path.replace` looks like
    `str.replace`, so it is not told apart here)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, name = node.func.value, node.func.attr
            is_os = isinstance(owner, ast.Name) and owner.id == "os"
            if name in ("rename", "mkstemp") or (is_os and name == "replace"):
                found.append((node.lineno, name))
    return found


def test_no_module_hand_writes_markers_or_renames_into_place() -> None:
    problems = []
    for path in sorted([*(REPO / "local").rglob("*.py"), REPO / "tests" / "helpers.py"]):
        rel = str(path.relative_to(REPO))
        if rel.startswith("local/util/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        problems += [f"{rel}:{n.lineno}: the marker name {n.value!r} (use fsio.DONE)"
                     for n in ast.walk(tree)
                     if isinstance(n, ast.Constant) and n.value == DONE]
        if rel not in RENAME_ALLOWED:
            problems += [f"{rel}:{line}: {name}() (use fsio.building / atomic_path)"
                         for line, name in _calls(tree)]
    assert problems == [], "\n".join(problems)


def test_util_imports_nothing_of_the_recipe_and_nothing_heavy() -> None:
    code = ("import sys, local.util.fsio, local.util.dist, local.util.envcheck; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'transformers', 'datasets') or "
            "(m.startswith('local.') and not m.startswith('local.util'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.strip() == "[]"
