"""The declared layering (pyproject.toml [tool.importlinter]) holds, and the check can fail.

lint-imports (import-linter, on grimp) reads the import graph of engine/, labtui/ and lessons/
statically: a function-level import counts like a module-level one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (scripts/test does)")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("engine", "labtui", "lessons"):
        shutil.copytree(REPO / name, dst / name, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_tree_keeps_its_layers():
    p = _lint(REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "BROKEN" not in p.stdout


@pytest.mark.parametrize(("module", "bad_import", "contract"), [
    ("engine/errors.py", "from labtui.cli import main as _cli", "never imports the UI"),
    ("labtui/tui/messages.py", "from labtui.launcher import helper as _helper", "independent programs"),
    ("labtui/oci/main.py", "from labtui.cli import main as _cli", "independent programs"),
    ("engine/paths.py", "from engine import api as _api", "no import circles"),
])
def test_a_deliberate_bad_import_breaks_the_check(tmp_path, module, bad_import, contract):
    repo = _copy(tmp_path)
    target = repo / module
    target.write_text(target.read_text() + f"\n{bad_import}  # deliberately wrong\n")
    p = _lint(repo)
    assert p.returncode != 0, p.stdout
    broken = [ln for ln in p.stdout.splitlines() if ln.endswith("BROKEN") or " BROKEN (" in ln]
    assert any(contract in ln for ln in broken), p.stdout


def _circles(graph, package: str) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), among package's modules:
    stricter than acyclic_siblings, it also sees a package's __init__ and its own submodule."""
    mods = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.find_modules_directly_imported_by(v):
            if not (w == package or w.startswith(package + ".")):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in mods:
        if m not in index:
            visit(m)
    return out


@pytest.mark.parametrize("package", ["engine", "labtui", "lessons"])
def test_no_module_imports_itself_through_others(package):
    grimp = pytest.importorskip("grimp")
    sys.path.insert(0, str(REPO))
    try:
        graph = grimp.build_graph(package, cache_dir=None)
    finally:
        sys.path.remove(str(REPO))
    assert _circles(graph, package) == []
