"""The packages stay in layers: no import cycle between modules, none between top-level packages, and the layer
order of pyproject.toml's `[tool.importlinter]` contracts holds (`lint-imports`).

Imports inside functions count: grimp, import-linter's graph library, reads every import statement of a module,
wherever it stands. The entry modules (the `tbrm` command line and a Python API facade) sit above every layer and
may import any of them, so their edges do not count between packages; a cycle through them between modules does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("evals", "tbrm", "baselines", "reports", "tbrm_verl")
ENTRY_MODULES = {"tbrm", "tbrm.cli", "tbrm.train_cli", "tbrm.api"}


def import_graph(*packages: str) -> dict[str, set[str]]:
    """module -> the modules of `packages` it imports (at module level or inside functions)."""
    graph = grimp.build_graph(*packages, include_external_packages=False, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted: every import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {d for ds in edges.values() for d in ds})

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (a few hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def package_edges(edges: dict[str, set[str]], entry: set[str] = frozenset()) -> dict[str, set[str]]:
    """Top-level package -> the top-level packages it imports, leaving out imports made by `entry` modules."""
    out: dict[str, set[str]] = defaultdict(set)
    for module, imported in edges.items():
        if module in entry:
            continue
        for other in imported:
            if other.split(".")[0] != module.split(".")[0]:
                out[module.split(".")[0]].add(other.split(".")[0])
    return dict(out)


def test_no_import_cycle_between_modules():
    assert cycles(import_graph(*PACKAGES)) == []


def test_no_import_cycle_between_packages():
    edges = package_edges(import_graph(*PACKAGES), ENTRY_MODULES)
    assert cycles(edges) == [], edges
    assert not edges.get("evals"), "evals is the bottom layer: it imports no other package of the suite"


def test_cycle_finder_sees_cycles_through_function_local_imports(tmp_path, monkeypatch):
    """The checks above can fail: a synthetic pair of packages whose only cycles go through imports inside
    functions is caught at both levels, and an entry module's upward import is not a package cycle."""
    files = {
        "lowpkg/__init__.py": "",
        "lowpkg/a.py": "from lowpkg import b\n",
        "lowpkg/b.py": "def f():\n    from lowpkg import a\n    from highpkg import user\n",
        "lowpkg/cli.py": "def main():\n    from highpkg import user\n",
        "highpkg/__init__.py": "",
        "highpkg/user.py": "from lowpkg import a\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    edges = import_graph("lowpkg", "highpkg")
    assert cycles(edges) == [["highpkg.user", "lowpkg.a", "lowpkg.b"]]
    assert cycles(package_edges(edges)) == [["highpkg", "lowpkg"]]
    (tmp_path / "lowpkg/b.py").write_text("def f():\n    from lowpkg import a\n")
    edges = import_graph("lowpkg", "highpkg")
    assert cycles(edges) == [["lowpkg.a", "lowpkg.b"]]
    assert cycles(package_edges(edges, {"lowpkg.cli"})) == []  # only the entry module reaches up
    assert cycles(package_edges(edges)) == [["highpkg", "lowpkg"]]


def test_import_linter_contracts_hold():
    """`lint-imports` with the contracts in pyproject.toml (the layer order), on this checkout's code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                           "--no-cache", "--config", str(REPO / "pyproject.toml")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "0 broken" in proc.stdout
