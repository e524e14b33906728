"""Package layering, checked on the source: runtime code does not reach up into evaluation or training,
stages do not import the API or the CLI, and ``maskops.detect`` has no import cycle.

Imports are read with ``ast`` (every ``import``, including those inside functions and ``TYPE_CHECKING``
blocks), so a violation is caught whether or not a test happens to execute it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "maskops"

# runtime layers (what serves a request or runs a detector) and what they may not import
RUNTIME = ("detect", "inference", "serve")
FORBIDDEN_FOR_RUNTIME = ("maskops.evaluate", "maskops.train")
# the API and the CLI sit on top: no stage imports them
TOP = ("maskops.serve", "maskops.cli", "maskops.commands")
TOP_OWNERS = ("serve", "commands", "cli.py")
# (file, imported module) pairs that still break a rule, each with the reason; the test fails when an
# entry is no longer true, so the list only shrinks
KNOWN: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _violations(owners: tuple[str, ...], forbidden: tuple[str, ...]) -> set[tuple[str, str]]:
    found = set()
    for owner in owners:
        root = PACKAGE / owner
        files = [root] if root.suffix == ".py" else sorted(root.rglob("*.py"))
        for path in files:
            for name in _imports(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    found.add((str(path.relative_to(PACKAGE)), name))
    return found


def _collapse(found: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """``from maskops.train import registry`` reads as both ``maskops.train`` and ``maskops.train.registry``:
    keep the most specific name per file."""
    return {(f, n) for f, n in found if not any(g == f and m.startswith(n + ".") for g, m in found)}


def test_runtime_layers_do_not_import_evaluate_or_train() -> None:
    found = _collapse(_violations(RUNTIME, FORBIDDEN_FOR_RUNTIME))
    assert found - set(KNOWN) == set(), "runtime code imports evaluate/ or train/"
    assert set(KNOWN) <= found, f"fixed, remove from KNOWN: {sorted(set(KNOWN) - found)}"


def test_stages_do_not_import_the_api_or_the_cli() -> None:
    stages = tuple(
        p.name for p in sorted(PACKAGE.iterdir()) if p.name not in TOP_OWNERS and not p.name.startswith("__")
    )
    stages = tuple(s for s in stages if (PACKAGE / s).is_dir() or s.endswith(".py"))
    assert _collapse(_violations(stages, TOP)) == set()


def _detect_graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in sorted((PACKAGE / "detect").glob("*.py"))}
    graph = {}
    for name, path in mods.items():
        graph[name] = {m for m in _imports(path) if m in mods and m != name}
    return graph


def test_detect_has_no_import_cycle() -> None:
    graph = _detect_graph()
    # the lazy package __init__ names its submodules only as strings; it must not import them
    assert graph["maskops.detect"] == set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import cycle in maskops.detect: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("module", sorted(_detect_graph()))
def test_each_detect_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """A cycle shows as an ImportError only for some import orders: import each module first."""
    code = f"import {module}; from maskops.detect.registry import list_detectors; print(list_detectors())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "yunet_cal" in proc.stdout


def test_detect_base_loads_no_detector() -> None:
    code = (
        "import sys, maskops.detect.base; "
        "print(sorted(m for m in sys.modules if m.startswith('maskops.detect')), 'cv2' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['maskops.detect', 'maskops.detect.base'] False"


def test_ray_is_imported_only_by_the_ray_engine() -> None:
    """Ray is an optional extra: the CLI and the scale package load without it."""
    code = (
        "import sys, maskops.cli, maskops.scale.inputs, maskops.scale.ray_engine; print('ray' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
