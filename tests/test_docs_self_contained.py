"""The repository's docs stand on their own: they cite no file outside the repo (a clone has no
DESIGN.md and no ../shared), and they call the recipe this one reproduces "the reference recipe
(WeST's GRPO example)", never "the seed", which reads as the random seed (`seed: 42`).

Every text file of the repo is read: README, docs, code (docstrings and comments), configs,
run.sh. Tests may read ../shared (they skip where it is absent), so they are exempt from that
check only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".json", ".toml", ".txt", ".cfg", ""}
# Not the repo's own files: environments, caches, downloads and runs (see .gitignore).
SKIP_DIRS = {".git", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache", "data", "models",
             "exp"}

OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared|\bshared/")
# "the seed" as the name of a recipe: "the seed's values", "as the seed did", "# seed: ...",
# test ids "...-as-the-seed"; not the random seed ("the seed 42", "the seed value", "same seed").
SEED = re.compile(r"\bseed's\b|\bthe[ -]seed\b(?![ -]*(?:=|\d|value|of\b|number))|#\s*seed:"
                  r"|\bseed[ -](?:wording|recipe|parity)\b", re.IGNORECASE)
SELF = Path(__file__).resolve()

def text_files() -> list[Path]:
    """Every text file of the repo (environments, caches and outputs left out)."""
    found = []
    for folder, dirs, names in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS
                         and (not d.startswith(".") or d in (".ci", ".github")))
        for name in sorted(names):
            path = Path(folder) / name
            if path.suffix not in TEXT_SUFFIXES or path.resolve() == SELF or not path.is_file():
                continue
            try:
                path.read_text()
            except UnicodeDecodeError:
                continue  # not text
            found.append(path)
    return found


def hits(pattern: re.Pattern[str], *, tests: bool) -> list[tuple[str, str]]:
    """(file#section, "file:line: text") for each line matching `pattern`; tests/ included or
    not. A Markdown line's section is its nearest heading ("README.md#mmau, mmsu")."""
    found = []
    for path in text_files():
        rel = str(path.relative_to(REPO))
        if not tests and rel.startswith("tests/"):
            continue
        section = ""
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if path.suffix == ".md" and line.startswith("#"):
                section = line.lstrip("#").strip()
            if pattern.search(line):
                where = f"{rel}#{section}" if section else rel
                found.append((where, f"{rel}:{number}: {line.strip()[:100]}"))
    return found


def problems() -> list[tuple[str, str]]:
    return hits(OUTSIDE, tests=False) + hits(SEED, tests=True) + [
        hit for hit in hits(re.compile(r"DESIGN\.md"), tests=True)
        if hit[0].startswith("tests/")]


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("holds the seed's values", True),
        ("rendered as a Python list, as the seed did", True),
        ("if real:  # the seed: 1 prompt x G", True),
        ('assert x in y  # seed: padding kept', True),
        ('id="case-change-is-wrong-in-the-seed"', True),
        ('id="default-seed-wording-and-list-repr"', True),
        ("The Seed's rule", True),
        ("seed: 42", False),
        ("set the seed 42 for every run", False),
        ("the seed value is logged", False),
        ("runs with the same seed and rows", False),
        ("torch.manual_seed(seed)", False),
        ("deterministic per seed.", False),
    ],
)
def test_seed_pattern(text: str, flagged: bool) -> None:
    assert bool(SEED.search(text)) is flagged


@pytest.mark.parametrize(
    ("text", "flagged"),
    [("as DESIGN.md says", True), ("see ../shared/data/mmau", True),
     ("in /work/shared/data", True), ("HF_HOME on shared storage", False),
     ("shared by the rewards", False)],
)
def test_outside_pattern(text: str, flagged: bool) -> None:
    assert bool(OUTSIDE.search(text)) is flagged


def test_the_readme_and_the_code_are_read() -> None:
    files = {str(p.relative_to(REPO)) for p in text_files()}
    assert {"README.md", "run.sh", "train.py", "conf/grpo.yaml", "local/core/answers.py",
            "tests/sources.py"} <= files
    assert not any(f.startswith((".venv", ".cache/")) for f in files)


def test_docs_cite_nothing_outside_the_repo_and_name_the_reference_recipe() -> None:
    found = [line for _, line in problems()]
    assert found == [], "\n".join(found)
