"""The layout rules a newcomer relies on: short functions, and imports that flow one way between packages."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnkit"
MAX_FUNCTION_LINES = 60


def _unit(module: str) -> str | None:
    """``cnnkit.train.stages`` -> ``train``: the top-level package or module an import lands in."""
    parts = module.split(".")
    return parts[1] if parts[0] == "cnnkit" and len(parts) > 1 else None


def _source_unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def import_graph() -> dict[str, set[str]]:
    """Every import statement of ``cnnkit/``, at any depth (inside functions too), as unit -> units."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _source_unit(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for target in filter(None, map(_unit, names)):
                is_unit = (PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").is_file()  # not a name in cnnkit
                if is_unit and target != source:
                    graph.setdefault(source, set()).add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between units, or None."""
    state: dict[str, int] = {}

    def visit(unit: str, trail: list[str]) -> list[str] | None:
        state[unit] = 1
        for target in sorted(graph.get(unit, ())):
            if state.get(target) == 1:
                return [*trail, unit, target]
            if target not in state and (cycle := visit(target, [*trail, unit])):
                return cycle
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state and (cycle := visit(unit, [])):
            return cycle
    return None


def test_no_import_cycle_between_packages() -> None:
    graph = import_graph()
    assert "train" in graph and "run" in graph["train"]  # the graph really is read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_run_folder_and_predictor_sit_below_their_users() -> None:
    graph = import_graph()
    for user in ("evaluate", "export", "explain", "inference"):
        assert "train" not in graph.get(user, set()), f"{user} imports train"
    assert "inference" not in graph.get("export", set())


def test_no_function_is_longer_than_sixty_lines() -> None:
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({length} lines)")
    assert not too_long
