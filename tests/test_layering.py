"""The layers of local/ hold: each imports only what is below it, and imports between recipe
modules sit at the top of the file unless a comment says why one is deferred.

The layers (README, "Architecture"):

    core        records, prompts, answers, rewards, collate, models   imports core, util
    util        file and process helpers                              imports util only
    runs        a run folder: its layout, which checkpoints count     imports core, util, runs
                (evaluable, resumable), the results.json of its steps
    data        dataset readers                                       imports core, util, data
    train       config, dataset, trainer, weights reload, ...         imports core, util, data,
                                                                      runs, train
    eval        generation, runner, judge, results, benchmarks        imports core, util, data,
                                                                      runs, eval
    prepare     hub, unpack, validate, validation report              imports core, util, data,
                                                                      prepare
    run_report  a run folder's report (curves, accuracy, samples)     imports core, util, runs,
                                                                      run_report
    demo        data, tiny models, warm-up, demo report               imports anything

What a run folder holds is read through `runs`, never from the stage that wrote it: eval and
the run report import nothing of train, and the run report nothing of eval.

Every module is read with `ast` (nothing is imported), so a module that fails to import is still
checked.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO

# What each layer may import from local/ (a name covers its submodules).
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": ("local.core", "local.util"),
    "util": ("local.util",),
    "runs": ("local.core", "local.util", "local.runs"),
    "data": ("local.core", "local.util", "local.data"),
    "train": ("local.core", "local.util", "local.data", "local.runs", "local.train"),
    "eval": ("local.core", "local.util", "local.data", "local.runs", "local.eval"),
    "prepare": ("local.core", "local.util", "local.data", "local.prepare"),
    "run_report": ("local.core", "local.util", "local.runs", "local.run_report"),
}
# Top-level names of the recipe besides local/: an import of one of these inside a function is
# an import between recipe modules too.
RECIPE_ROOTS = ("local", "train", "evaluate_mmau", "evaluate_mmsu", "evaluate_mmar", "bench")
ENTRY_POINTS = ("train.py", "evaluate_mmau.py", "evaluate_mmsu.py", "evaluate_mmar.py")

@dataclass(frozen=True)
class Import:
    target: str  # the module imported, e.g. "local.runs.checkpoints"
    line: int
    end_line: int
    function: str | None  # the enclosing function, None at module (or class) level


def module_name(path: Path) -> str:
    """local/eval/runner.py -> local.eval.runner; local/eval/__init__.py -> local.eval."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, source: str, is_package: bool = False) -> list[Import]:
    """Every import of `source` (module `module`), with the function it sits in."""
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, child.end_lineno or child.lineno,
                                    function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, is_package, child)
                for alias in child.names:  # `from local.train import checkpoints`: a module
                    sub = f"{base}.{alias.name}"
                    found.append(Import(sub if _is_module(sub) else base, child.lineno,
                                        child.end_lineno or child.lineno, function))
            inner = (child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                     else function)
            visit(child, inner)

    visit(ast.parse(source), None)
    return list(dict.fromkeys(found))  # `from m import a, b`: one import of m


def _within(target: str, names: tuple[str, ...]) -> bool:
    return any(target == name or target.startswith(name + ".") for name in names)


def layer_problems(module: str, source: str, is_package: bool = False) -> list[str]:
    """Imports of `module` that reach above its layer."""
    parts = module.split(".")
    layer = parts[1] if len(parts) > 1 and parts[0] == "local" else None
    if layer not in ALLOWED:
        return []  # demo, the one-line alias modules, entry points: anything goes
    return [f"line {imp.line}: local.{layer} imports {imp.target}"
            for imp in imports(module, source, is_package)
            if imp.target.startswith("local.") and not _within(imp.target, ALLOWED[layer])]


def _comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def deferred_problems(module: str, source: str, is_package: bool = False) -> list[str]:
    """Imports of recipe modules inside a function body with no comment on the import (or on
    the line above it) saying why."""
    comments = _comment_lines(source)
    return [f"line {imp.line}: imports {imp.target} inside {imp.function}() without a comment "
            "saying why" for imp in imports(module, source, is_package)
            if imp.function is not None and imp.target.split(".")[0] in RECIPE_ROOTS
            and not comments & set(range(imp.line - 1, imp.end_line + 1))]


def recipe_files() -> list[Path]:
    files = [*sorted((REPO / "local").rglob("*.py")), *sorted((REPO / "bench").rglob("*.py"))]
    return files + [REPO / name for name in ENTRY_POINTS]


def offenders() -> list[tuple[str, str]]:
    """(file, problem) for every module of the recipe."""
    found = []
    for path in recipe_files():
        module, source = module_name(path), path.read_text()
        package = path.name == "__init__.py"
        rel = str(path.relative_to(REPO))
        found += [(rel, p) for p in layer_problems(module, source, package)]
        found += [(rel, p) for p in deferred_problems(module, source, package)]
    return found


# ---------------------------------------------------------------------------- the checker

@pytest.mark.parametrize(
    ("module", "source", "problems"),
    [
        pytest.param("local.core.collate", "from local.core.audio import load\n", [],
                     id="core-imports-core"),
        pytest.param("local.core.collate", "from local.train.trainer import T\n",
                     ["line 1: local.core imports local.train.trainer"], id="core-imports-train"),
        pytest.param("local.core.collate", "from local.train import trainer\n",
                     ["line 1: local.core imports local.train.trainer"],
                     id="core-imports-a-train-module-by-name"),
        pytest.param("local.core.collate", "from ..demo import tiny\n",
                     ["line 1: local.core imports local.demo.tiny"], id="relative-import"),
        pytest.param("local.util.envcheck", "import local.core.audio\n",
                     ["line 1: local.util imports local.core.audio"], id="util-imports-core"),
        pytest.param("local.eval.steps", "from local.runs.checkpoints import x\n", [],
                     id="eval-finds-checkpoints-in-runs"),
        pytest.param("local.eval.steps", "from local.train.checkpoints import x\n",
                     ["line 1: local.eval imports local.train.checkpoints"],
                     id="eval-finds-checkpoints-in-train"),
        pytest.param("local.eval.steps", "from local.train.trainer import x\n",
                     ["line 1: local.eval imports local.train.trainer"], id="eval-imports-trainer"),
        pytest.param("local.train.trainer", "def f():\n    from local.demo.tiny import x\n",
                     ["line 2: local.train imports local.demo.tiny"], id="deferred-counts-too"),
        pytest.param("local.demo.run", "from local.eval import steps\n", [],
                     id="demo-imports-anything"),
        pytest.param("local.run_report.build", "from local.runs.eval_results import x\n", [],
                     id="report-reads-evaluations"),
        pytest.param("local.run_report.build", "from local.eval.summary import x\n",
                     ["line 1: local.run_report imports local.eval.summary"],
                     id="report-imports-no-eval"),
        pytest.param("local.run_report.build", "from local.train.rewards import x\n",
                     ["line 1: local.run_report imports local.train.rewards"],
                     id="report-imports-no-train"),
        pytest.param("local.runs.checkpoints", "from local.train.checkpoints import x\n",
                     ["line 1: local.runs imports local.train.checkpoints"],
                     id="runs-imports-no-train"),
        pytest.param("local.run_report.build", "from local.demo.demo_report import x\n",
                     ["line 1: local.run_report imports local.demo.demo_report"],
                     id="report-imports-no-demo"),
    ],
)
def test_layer_check(module: str, source: str, problems: list[str]) -> None:
    assert layer_problems(module, source) == problems


@pytest.mark.parametrize(
    ("source", "problems"),
    [
        pytest.param("from local.core import audio\n", [], id="at-the-top"),
        pytest.param("def f():\n    from local.core import audio\n",
                     ["line 2: imports local.core.audio inside f() without a comment saying why"],
                     id="deferred"),
        pytest.param("class A:\n    def f(self):\n        import train\n",
                     ["line 3: imports train inside f() without a comment saying why"],
                     id="deferred-in-a-method"),
        pytest.param("def f():\n    from local.core import audio  # heavy: loads torch\n", [],
                     id="comment-on-the-line"),
        pytest.param("def f():\n    # a cycle: audio imports this module\n"
                     "    from local.core import audio\n", [], id="comment-above"),
        pytest.param("def f():\n    from local.core.audio import (\n        load,  # why\n"
                     "    )\n", [], id="comment-inside-a-long-import"),
        pytest.param("def f():\n    import json\n    from torch import nn\n", [],
                     id="other-libraries"),
        pytest.param("def f():\n    s = '# not a comment'\n    from local.core import audio\n",
                     ["line 3: imports local.core.audio inside f() without a comment saying why"],
                     id="hash-in-a-string"),
    ],
)
def test_deferred_import_check(source: str, problems: list[str]) -> None:
    assert deferred_problems("local.train.trainer", source) == problems


def test_every_layer_and_file_is_seen() -> None:
    layers = {module_name(p).split(".")[1] for p in recipe_files()
              if module_name(p).startswith("local.")}
    assert set(ALLOWED) | {"demo"} <= layers
    assert all(p.is_file() for p in recipe_files())


# ---------------------------------------------------------------------------- the recipe

def test_layers_import_only_what_is_below_them_and_deferred_imports_say_why() -> None:
    found = [f"{rel}: {problem}" for rel, problem in offenders()]
    assert found == [], "\n".join(found)


def test_no_test_imports_another_test_file() -> None:
    """Shared fixtures and writers live in tests/sources.py, helpers.py, helpers_train.py and
    conftest.py, never in a test file another test imports."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        module = module_name(path)
        found += [f"{path.relative_to(REPO)}:{imp.line} imports {imp.target}"
                  for imp in imports(module, path.read_text(), path.name == "__init__.py")
                  if imp.target.startswith("tests.test_")]
    assert found == [], "\n".join(found)


MAX_LINES = 320  # "about 300"


def test_no_module_over_about_300_lines_without_a_reason() -> None:
    """A module longer than ~300 lines says why in its docstring (a paragraph starting 'Size:')."""
    long = []
    for path in recipe_files():
        source = path.read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        if len(source.splitlines()) > MAX_LINES and "\nSize: " not in f"\n{doc}":
            long.append(f"{path.relative_to(REPO)}: {len(source.splitlines())} lines")
    assert long == [], "\n".join(long)
