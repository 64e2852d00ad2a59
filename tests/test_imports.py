"""The package's import structure: no import cycle among boundprop modules, and a light start
(``import boundprop`` and ``boundprop --help`` load none of the heavy dependencies)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from pathlib import Path

import boundprop

PACKAGE_DIR = Path(boundprop.__file__).parent
HEAVY = ("sympy", "onnxruntime", "onnx", "scipy")


def module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its __init__.py)."""
    names = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only: no edge at run
    time)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The boundprop modules that module ``name`` imports, at module level or inside functions
    (``from P import M`` with M a module counts as importing P.M; imports by a computed
    name, such as importlib.import_module(table[key]), are not seen)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (iterative)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module, a → b → … → a (BFS)."""
    start, members = component[0], set(component)
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if start in graph[node]:
            path = [node]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            return path[::-1] + [start]
        for child in sorted(graph[node] & members):
            if child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def test_import_graph_sees_the_package():
    graph = import_graph()
    assert "boundprop.cli" in graph and "boundprop.ops.base" in graph
    assert "boundprop.errors" in graph["boundprop.safe_io"]


def test_no_import_cycle():
    graph = import_graph()
    cycles = [" -> ".join(cycle_in(c, graph)) + f"   (modules in this cycle knot: {', '.join(c)})"
              for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_cycle_finder_reports_the_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    (component,) = [c for c in strongly_connected(graph) if len(c) > 1]
    assert component == ["a", "b", "c"]
    assert cycle_in(component, graph) == ["a", "b", "c", "a"]


def _modules_loaded_by(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_import_boundprop_is_light():
    loaded = _modules_loaded_by("import boundprop")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_cli_help_is_light():
    loaded = _modules_loaded_by(
        "import contextlib, io\nfrom boundprop.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_public_names_load_on_first_use():
    """Every name of ``__all__`` (and bp.gn) resolves; bp.audit, bp.certify and bp.constants
    stay the functions when their submodules are imported first."""
    subprocess.run([sys.executable, "-c", (
        "import boundprop.audit.command, boundprop.certify, boundprop.constants\n"
        "import boundprop as bp\n"
        "assert all(hasattr(bp, name) for name in bp.__all__)\n"
        "assert all(callable(f) for f in (bp.audit, bp.certify, bp.constants))\n"
        "assert callable(bp.gn.solve) and {'load', 'gn'} <= set(dir(bp))\n"
        "from boundprop import audit, certify\n"
        "assert callable(audit) and callable(certify)")], check=True)
