"""The package's shape: its import graph has no cycle (function-level imports included), every
relative import names a module or package of biaskit, and no module is over 400 lines."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "biaskit"


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, modules) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" for a in node.names] + ([target] if node.module else [])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules and n != name}
    return found


def _cycle(graph):
    """One cycle of the directed graph as a list of nodes, or None (depth-first search)."""
    colour, stack = {}, []

    def visit(v):
        colour[v] = "grey"
        stack.append(v)
        for w in sorted(graph[v]):
            if colour.get(w) == "grey":
                return stack[stack.index(w):] + [w]
            if w not in colour and (found := visit(w)):
                return found
        colour[v] = "black"
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in colour and (found := visit(v)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle():
    modules = _modules()
    # the package's __init__ only re-exports (lazily); it is not part of any module's dependencies
    graph = {m: _imports(m, p, modules) - {"biaskit"} for m, p in modules.items() if m != "biaskit"}
    assert "biaskit.data" in graph and graph["biaskit.train"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


MAX_LINES = 400  # one home per idea: a longer module is two ideas, split it along its seam


def test_no_module_is_over_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_relative_imports_name_biaskit_modules():
    """``from .x import y`` in a package must name biaskit.<package>.x, not a sibling of the
    package (a module moved into a package keeps its old relative imports otherwise)."""
    modules, bad = _modules(), []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if target not in modules:
                    bad.append(f"{name}:{node.lineno} from {'.' * node.level}{node.module or ''}")
    assert not bad, bad
