"""Dependencies flow one way: no import cycle among the project's modules (diffucode, its language
server and its evals), lazy imports inside functions included, TYPE_CHECKING imports too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"diffucode": ROOT / "diffucode", "diffucode_lsp": ROOT / "lsp", "diffucode_evals": ROOT / "evals"}


def modules() -> dict[str, Path]:
    found = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = [pkg, *f.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module `name` imports anywhere in its file (a `from X import y` counts X and X.y)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_finder_sees_lazy_imports_and_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = modules()
    # a lazy import in _train
    assert "diffucode.training.cli" in imports("diffucode.cli", known["diffucode.cli"], known)


def test_no_import_cycles():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert not cycles(graph), "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles(graph))


def test_the_core_never_imports_the_front_ends():
    known = modules()
    core = {n: imports(n, p, known) for n, p in known.items() if n.startswith("diffucode.") or n == "diffucode"}
    leaks = {n: sorted(t for t in ts if not t.startswith("diffucode.") and t != "diffucode") for n, ts in core.items()}
    assert not {n: t for n, t in leaks.items() if t}


def test_no_module_imports_another_modules_private_names():
    import_private = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                import_private += [f"{name} <- {node.module}.{a.name}" for a in node.names
                                   if a.name.startswith("_") and not a.name.startswith("__")]
    assert not import_private, import_private
