"""Dagster through its public API only: no module of the package or of its tests imports a
private Dagster module (`dagster._...`), and the package passes Dagster no hidden parameter."""

from __future__ import annotations

import ast

from assets_pipeline_tests.conftest import REPO

TREES = ("assets_pipeline", "assets_pipeline_tests")


def modules(*trees: str) -> list:
    return sorted(path for tree in trees for path in (REPO / tree).rglob("*.py"))


def imported(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def is_private_dagster(name: str) -> bool:
    top, *rest = name.split(".")
    return top.startswith("dagster") and any(part.startswith("_") for part in rest)


def test_a_private_dagster_module_is_told_from_a_public_one():
    assert is_private_dagster("dagster._core.storage.dagster_run")
    assert is_private_dagster("dagster_shared._check")
    assert not is_private_dagster("dagster") and not is_private_dagster("dagster_postgres")


def test_no_module_imports_a_private_dagster_module():
    private = {
        (path.relative_to(REPO).as_posix(), name)
        for path in modules(*TREES)
        for name in imported(path)
        if is_private_dagster(name)
    }
    assert not private


def test_the_package_passes_dagster_no_hidden_parameter():
    hidden = {
        path.relative_to(REPO).as_posix()
        for path in modules("assets_pipeline")
        if "allow_arbitrary_check_specs" in path.read_text()
    }
    assert not hidden
