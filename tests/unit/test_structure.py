"""The package's shape: study packages over one floor of shared machinery, no import
circle, small modules and functions, nothing that points outside the repository."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

PACKAGE = REPO / "rl"
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 65


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every rl module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in MODULES}
    return found - {"rl"}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_no_import_circle():
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                raise AssertionError(" -> ".join([*trail, node, dep]))
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])


def test_core_is_the_floor():
    for name, deps in GRAPH.items():
        if name.startswith("rl.core"):
            outside = sorted(d for d in deps if not d.startswith("rl.core"))
            assert not outside, f"{name} (shared machinery) imports {outside}"


def test_the_studies_do_not_import_each_other():
    for name, deps in GRAPH.items():
        for a, b in (("rl.ppo", "rl.pendulum"), ("rl.pendulum", "rl.ppo")):
            if name.startswith(a):
                assert not [d for d in deps if d.startswith(b)], f"{name} imports {b}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_are_small(name):
    path = MODULES[name]
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{path}: split it"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path}:{node.lineno} {node.name}: {length} lines"


def test_cli_is_only_the_command_line():
    assert len((PACKAGE / "cli.py").read_text().splitlines()) <= 200


def test_nothing_points_outside_the_repository():
    proc = subprocess.run(
        ["git", "grep", "-n", "-F", "-e", "../shared", "--", "README.md", "docs", "rl", "workflow"]
        + ["benchmarks", "configs", "Makefile"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, f"references to a folder beside the repository:\n{proc.stdout}"


def test_every_rule_runs_the_stage_of_its_name():
    """A stage is named once: the rule `train_ppo` runs the verb `train-ppo`, whose Stage
    (name `train_ppo`) is the MLflow stage and the provenance record's."""
    import re

    from rl.cli import STAGES

    rules = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            rules[name] = re.findall(r"-m rl ([a-z-]+)", block)
    assert len(rules) >= 10
    for name, verbs in rules.items():
        assert verbs == [name.replace("_", "-")], f"rule {name} runs {verbs}"
        assert name in STAGES and STAGES[name].kind != "tool", f"rule {name}: no such stage"


def test_the_command_line_imports_no_heavy_library():
    """`python -m rl --help` stays fast, and a verb sets MUJOCO_GL before mujoco loads."""
    heavy = ("torch", "torchrl", "mujoco", "gymnasium", "mlflow", "pandas", "matplotlib")
    code = f"import sys, rl.cli; print([m for m in {heavy!r} if m in sys.modules])"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]"
