"""The code version of a checkout: its git commit, and whether it has uncommitted changes.

Example:
    >>> code_version(Path("/nonexistent"))
    'unknown'
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def code_version(repo: Path = REPO) -> str:
    """The checkout's commit (short), "+ uncommitted changes" when it differs; else "unknown"."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=repo,
                                  timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    sha = git("rev-parse", "--short", "HEAD")
    if not sha:
        return "unknown"
    return sha + (" + uncommitted changes" if git("status", "--porcelain", "-uno") else "")
