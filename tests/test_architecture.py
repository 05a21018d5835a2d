"""The layering rules of the code base: the pure logic in ``relabel/`` never imports Dagster (only the command
line, which starts Dagster runs, does), and the first-party import graph (module-level and function-level
imports) has no cycle."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

from relabel.sql_models import discover_sql_models

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("relabel", "relabel_assets", "resources", "sensors")
# the command line is the application's entry point: ``relabel run`` / ``relabel ui`` start Dagster
DAGSTER_ENTRY_POINTS = {"relabel.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_modules() -> dict[str, Path]:
    return {module_name(f): f for package in PACKAGES for f in (ROOT / package).rglob("*.py")}


def imported_names(path: Path) -> set[str]:
    """Every absolute module name an import statement anywhere in ``path`` reaches (``from a import b`` gives
    ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the first-party modules it imports (a submodule importing its own package does not count)."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in imported_names(path)}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


@pytest.mark.unit
def test_pure_logic_never_imports_dagster() -> None:
    offenders = {
        module: sorted(n for n in imported_names(path) if n.split(".")[0].startswith("dagster"))
        for module, path in first_party_modules().items()
        if module.split(".")[0] == "relabel" and module not in DAGSTER_ENTRY_POINTS
    }
    assert {m: names for m, names in offenders.items() if names} == {}


@pytest.mark.unit
def test_first_party_import_graph_has_no_cycle() -> None:
    graph = import_graph(first_party_modules())
    assert "relabel.student.base" in graph["relabel.student.bi_encoder"]
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


@pytest.mark.unit
def test_cycle_detection_catches_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    from b import g\n")
    (tmp_path / "b.py").write_text("import a\n")
    graph = import_graph({"a": tmp_path / "a.py", "b": tmp_path / "b.py"})
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


@pytest.mark.unit
def test_litellm_is_set_up_in_one_place() -> None:
    """The offline price-table switch lives in ``relabel/__init__.py`` only (tests may pass it to subprocesses)."""
    homes = sorted(
        str(path.relative_to(ROOT))
        for package in (*PACKAGES, "bench")
        for path in (ROOT / package).rglob("*.py")
        if "LITELLM_LOCAL_MODEL_COST_MAP" in path.read_text()
    )
    assert homes == ["relabel/__init__.py"]


def sql_strings_joining(tables: set[str]) -> list[str]:
    """``module: first line`` of every string constant in the first-party Python code that names all of
    ``tables`` (a SQL join of them written in Python)."""
    found = []
    for module, path in first_party_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if all(re.search(rf"\b{t}\b", node.value) for t in tables):
                    found.append(f"{module}: {node.value.strip().splitlines()[0]}")
    return found


@pytest.mark.unit
def test_the_pair_join_has_one_home() -> None:
    """Pools x queries x corpus is joined in ``dbt_like_sql/pairs_to_grade.sql`` only; the teacher, the student
    and ``training_set`` read that table."""
    assert sql_strings_joining({"candidate_pools", "synthetic_queries", "seed_corpus"}) == []
    models = {m.name: m for m in discover_sql_models(ROOT / "dbt_like_sql")}
    readers = sorted(name for name, model in models.items() if "candidate_pools" in model.upstream)
    assert readers == ["pairs_to_grade"]
    assert "pairs_to_grade" in models["training_set"].upstream
    assert "seed_corpus" not in models["training_set"].upstream
