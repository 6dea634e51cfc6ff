"""The import graph of the first-party packages: no cycles, nothing imported upward.

Layers, lowest first: odh_core → indexer → serving → cluster → benchmarks. A module may import
its own layer or a lower one, never a higher one; and the module graph (every ``import`` and
``from`` statement, at module level or inside a function) has no cycle. odh_core imports neither
Ray Serve nor FAISS.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
LAYERS = ["odh_core", "indexer", "serving", "cluster", "benchmarks"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py") if p.is_file()}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """First-party modules ``path`` imports (``from pkg import mod`` resolves to ``pkg.mod``)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_no_upward_imports() -> None:
    upward = [
        f"{src} -> {dst}"
        for src, targets in _graph().items()
        for dst in targets
        if _layer(dst) > _layer(src)
    ]
    assert not upward, upward


def test_no_import_cycles() -> None:
    graph = _graph()
    # a package __init__ that only re-exports lazily is not an edge for its own submodules
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, cycles


def test_odh_core_imports_no_serving_or_index_libraries() -> None:
    bad = []
    for path in (ROOT / "odh_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            bad += [f"{path.name}: {n}" for n in names if n == "faiss" or n.startswith("ray.serve")]
    assert not bad, bad


def test_the_graph_sees_known_edges() -> None:
    """The walker itself: a known import is found (so an empty result means something)."""
    graph = _graph()
    assert "odh_core.config" in graph["odh_core.train"]
    assert "indexer.build" in graph["cluster.index_job"]


def test_test_file_basenames_are_unique() -> None:
    """The test directories are not packages: two test files with one basename break collection."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for path in sorted(tests.rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a basename"
        seen[path.name] = path
