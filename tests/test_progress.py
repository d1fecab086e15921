"""Every long loop a user waits on shows a progress bar with a rate and an ETA, i.e. a known
total: prepare's unpacking (archives, parquet clips) and validation (AVQA, MMSU, MMAU), and the
hub downloads keep huggingface_hub's own bars on. (Evaluation's bar: tests/test_eval_stages.py.)
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from local.prepare import validate
from local.prepare.unpack import build_audio_dir
from tests.sources import (
    avqa_row,
    mmau_audio_tar,
    mmau_item,
    mmsu_row,
    save_avqa,
    save_mmau,
    save_mmsu,
    wav,
    write_mmau_hub,
)

N = 6


def _finished_bar(stderr: str, desc: str) -> str:
    """The last state of the bar `desc`: '100%' of a known total, then [elapsed<ETA, rate]."""
    states = [s for s in re.split(r"[\r\n]", stderr) if s.startswith(f"{desc}:")]
    assert states, f"no progress bar {desc!r} in {stderr[-2000:]!r}"
    return states[-1]


def _audio_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(N):
        (root / f"c{i}.wav").write_bytes(wav(0.05))
    return root


def _tar(tmp: Path) -> tuple[Path, str]:
    archive = mmau_audio_tar(_audio_folder(tmp / "src" / "audios"), tmp / "a.tar.gz")
    return archive, "extract a.tar.gz"


def _zip(tmp: Path) -> tuple[Path, str]:
    src = _audio_folder(tmp / "src" / "audios")
    with zipfile.ZipFile(tmp / "a.zip", "w") as zf:
        for file in sorted(src.iterdir()):
            zf.write(file, f"audios/{file.name}")
    return tmp / "a.zip", "extract a.zip"


def _parquet(tmp: Path) -> tuple[Path, str]:
    write_mmau_hub(tmp / "hub", [mmau_item(i) for i in range(N)])
    return tmp / "hub", "convert test_mini.parquet"


@pytest.mark.parametrize("make", [pytest.param(_tar, id="tar.gz"), pytest.param(_zip, id="zip"),
                                  pytest.param(_parquet, id="hub-parquet")])
def test_unpacking_shows_rate_and_eta(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      make: Callable[[Path], tuple[Path, str]]) -> None:
    source, desc = make(tmp_path)
    build_audio_dir(source, tmp_path / "out")
    assert len(list((tmp_path / "out").iterdir())) == N
    bar = _finished_bar(capsys.readouterr().err, desc)
    assert re.search(r" 100%\|.*\[\d\d:\d\d<\d\d:\d\d, +[^\]]+/s\]$", bar), bar


def _validate_avqa(tmp: Path) -> str:
    validate.run(avqa=save_avqa(tmp / "avqa", [avqa_row(i) for i in range(N)]),
                 report=tmp / "r.md")
    return "avqa/train"


def _validate_mmsu(tmp: Path) -> str:
    validate.run(mmsu=save_mmsu(tmp / "mmsu", [mmsu_row(i) for i in range(N)]),
                 report=tmp / "r.md")
    return "mmsu"


def _validate_mmau(tmp: Path) -> str:
    path = save_mmau(tmp / "mmau", [mmau_item(i) for i in range(N)])
    validate.run(mmau_json=path, mmau_audio_dir=path.parent / "test-mini-audios",
                 report=tmp / "r.md")
    return "mmau-test-mini"


@pytest.mark.parametrize("check", [pytest.param(_validate_avqa, id="avqa"),
                                   pytest.param(_validate_mmsu, id="mmsu-streamed"),
                                   pytest.param(_validate_mmau, id="mmau")])
def test_validation_shows_rate_and_eta(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       check: Callable[[Path], str]) -> None:
    desc = check(tmp_path)
    bar = _finished_bar(capsys.readouterr().err, desc)
    assert re.search(rf" 100%\|.*\| {N}/{N} \[\d\d:\d\d<\d\d:\d\d, +[^\]]+/s\]$", bar), bar


def test_hub_download_bars_are_left_on() -> None:
    """prepare neither disables huggingface_hub's bars nor hides its logger (a NOTSET level
    turns them off: huggingface_hub/utils/tqdm.py `is_tqdm_disabled`)."""
    import logging

    from huggingface_hub.utils import are_progress_bars_disabled
    from huggingface_hub.utils.tqdm import is_tqdm_disabled

    import local.prepare.cli  # noqa: F401  (what prepare imports before downloading)
    import local.prepare.hub  # noqa: F401

    assert not are_progress_bars_disabled()
    assert is_tqdm_disabled(logging.getLogger("huggingface_hub").getEffectiveLevel()) is not True
