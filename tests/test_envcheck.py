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


def test_this_environment_satisfies_the_project_requirements() -> None:
    assert unmet_requirements(Path(__file__).resolve().parents[1] / "requirements.txt") == []
