"""A clone of the repository is all `make test` and `make bench` need.

A fresh clone has nothing beside it, so no test, benchmark, module or Makefile line may read a path
outside the repository (the recorded Polygon responses once lived in a folder beside it, and 39
parser tests failed on every clone). The guard reads the sources rather than running them: a path that
climbs out of the repository from `__file__`, a `..` path component, or a `shared` one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath

import pytest

from assets_pipeline_tests.conftest import REPO, RESPONSES, parse_source

# This module is left out: its examples below are the lines the guard must catch.
SOURCES = sorted(
    path
    for path in [
        *(REPO / "assets_pipeline_tests").rglob("*.py"),
        *(REPO / "bench").glob("*.py"),
        *(REPO / "assets_pipeline").rglob("*.py"),
    ]
    if path != Path(__file__).resolve()
)


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _levels_up(node: ast.AST, known: dict[str, int]) -> int | None:
    """How many levels above the source file `node` points (0: the file itself, 1: its folder),
    or None when it is not a path derived from `__file__`."""
    if isinstance(node, ast.Name):
        return 0 if node.id == "__file__" else known.get(node.id)
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in {"Path", "PurePath", "abspath", "realpath"} and node.args:
            return _levels_up(node.args[0], known)
        if name == "dirname" and node.args:
            up = _levels_up(node.args[0], known)
            return None if up is None else up + 1
        if name in {"resolve", "absolute"} and isinstance(func, ast.Attribute):
            return _levels_up(func.value, known)
        return None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        up = _levels_up(node.value, known)
        return None if up is None else up + 1
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "parents"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, int)
    ):
        up = _levels_up(node.value.value, known)
        return None if up is None else up + node.slice.value + 1
    return None


def paths_leaving_the_repository(relative: PurePosixPath, source: str) -> list[str]:
    """What in `source` (the file at `relative` inside the repository) points outside it."""
    tree = parse_source(source)
    docstrings = _docstrings(tree)
    # the repository's root is this many levels above the file
    root = len(relative.parts)
    known: dict[str, int] = {}
    for statement in tree.body:  # module-level names such as REPO = Path(__file__).parents[1]
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            up = _levels_up(statement.value, known)
            if up is not None:
                known[statement.targets[0].id] = up
    found = []
    for node in ast.walk(tree):
        where = f"{relative}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            parts = PurePosixPath(node.value.replace("\\", "/")).parts
            if ".." in parts or "shared" in parts:
                found.append(f"{where}: path component in {node.value!r}")
        else:
            up = _levels_up(node, known)
            if up is not None and up > root:
                found.append(f"{where}: {ast.unparse(node)} is {up - root} level(s) above the repo")
    return sorted(set(found))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_source_reads_a_path_outside_the_repository(path: Path):
    relative = PurePosixPath(path.relative_to(REPO).as_posix())
    assert paths_leaving_the_repository(relative, path.read_text()) == []


def test_the_makefile_reads_nothing_outside_the_repository():
    makefile = (REPO / "Makefile").read_text()
    assert re.findall(r"\.\./|\bshared/", makefile) == []


def test_the_recorded_responses_are_inside_the_repository():
    assert RESPONSES.is_relative_to(REPO)
    assert sorted(RESPONSES.glob("*.json")), f"no recorded responses in {RESPONSES}"


# The guard must be able to fail: each case is a line this repository once had, or could grow.
@pytest.mark.parametrize(
    ("relative", "source"),
    [
        # the recorded responses, read from a folder beside the clone
        (
            "assets_pipeline_tests/test_simulator.py",
            # (spelled in pieces, so this file does not itself read like the line it tests)
            "R = Path(__file__).resolve().parents[2] / " + '"sha' + 'red" / "polygon"',
        ),
        # the same, through the repository's root
        (
            "assets_pipeline_tests/conftest.py",
            'REPO = Path(__file__).resolve().parents[1]\nR = REPO.parent / "data"',
        ),
        ("bench/bench_refresh.py", "ROOT = Path(__file__).parent.parent.parent"),
        ("bench/bench_refresh.py", 'p = os.path.join(os.path.dirname(__file__), "..", "x")'),
        ("assets_pipeline/polygon/parsing.py", 'NOTES = "..' + "/sha" + 'red/polygon/README.md"'),
    ],
)
def test_the_guard_catches_a_path_outside_the_repository(relative, source):
    assert paths_leaving_the_repository(PurePosixPath(relative), source) != []


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        # the repository's own files, from a test, a benchmark and a module
        ("assets_pipeline_tests/test_daemon.py", 'Path(__file__).resolve().parents[1] / "x"'),
        ("bench/bench_refresh.py", 'ROOT = Path(__file__).resolve().parents[1]\nROOT / ".venv"'),
        ("assets_pipeline/simulator/server.py", "Path(__file__).parent.parent.parent"),
        # prose about the shared budget is not a path
        ("assets_pipeline/budget.py", 'TEXT = "the budget is shared by every run"'),
    ],
)
def test_the_guard_lets_paths_inside_the_repository_through(relative, source):
    assert paths_leaving_the_repository(PurePosixPath(relative), source) == []
