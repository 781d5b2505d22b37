"""The package layering: imports between edgevpr's packages form no cycle, the deploy core
never imports the research code, and every import counts, a lazy one inside a function too."""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "edgevpr"


def _unit(module: str) -> str:
    """The layer a module belongs to: its package below edgevpr, or the top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path, module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found |= {f"{name}.{alias.name}" if name == "edgevpr" else name for alias in node.names}
    return {name for name in found if name.startswith("edgevpr.")}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def package_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the modules that import it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for module, path in _modules().items():
        source = _unit(module)
        for imported in _imports(path, module):
            target = _unit(imported)
            if target != source and target != "edgevpr":
                graph.setdefault(source, {}).setdefault(target, set()).add(module)
    return graph


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return components


def test_packages_form_no_cycle():
    graph = package_graph()
    cycles = _cycles(graph)
    detail = [
        " <-> ".join(c)
        + ": "
        + "; ".join(f"{a}->{b} in {sorted(graph[a][b])[:3]}" for a in c for b in c if b in graph.get(a, {}))
        for c in cycles
    ]
    assert not cycles, "\n".join(detail)


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}, "d": {"a": set()}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": set()}, "b": {}}) == []


def test_the_deploy_core_never_imports_research_code():
    graph = package_graph()
    assert "research" not in graph.get("quantize", {}), sorted(graph["quantize"]["research"])
    assert "research" not in graph.get("runtime", {})


def test_every_import_points_down_the_layer_table():
    """The table in edgevpr.layers is the architecture: every package has a row, and an import
    may reach only its own layer or one below (the root package and lazy imports included)."""
    from edgevpr.layers import LAYERS, level

    graph = package_graph()
    units = {unit for _, row in LAYERS for unit in row}
    found = set(graph) | {target for targets in graph.values() for target in targets}
    modules = {_unit(m) for m in _modules()}
    assert modules <= units, f"packages without a layer: {sorted(modules - units)}"
    assert found <= units
    upward = [
        f"{source} (layer {level(source)}) imports {target} (layer {level(target)}): {sorted(graph[source][target])[0]}"
        for source in graph
        for target in graph[source]
        if level(target) > level(source)
    ]
    assert not upward, "\n".join(upward)


def test_the_layer_check_sees_an_upward_import():
    from edgevpr.layers import level

    assert level("models") < level("quantize") < level("maps") < level("explore") < level("cli")
