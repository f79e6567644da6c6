"""Dagster through its public API only: no module of the package or of its tests imports a
private Dagster module (`dagster._...`), the package reads no attribute known to be non-public,
and it passes Dagster no hidden parameter."""

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


#: Attributes of Dagster objects that are not `@public` in Dagster 1.13, each once read by this
#: package: the instance's event log storage and its check executions, an event's untyped payload
#: and step failure data, the asset keys a run planned (what the alerts use instead:
#: defs/alerts.py).
PRIVATE_ATTRIBUTES = {
    "event_log_storage",
    "event_specific_data",
    "get_asset_keys_for_run",
    "step_failure_data",
    "get_latest_asset_check_execution_by_key",
}


def private_attributes(path) -> set[str]:
    """The known non-public Dagster attributes `path` reads (`x.name`, or `getattr(x, "name")`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            found.add(node.attr)
        elif isinstance(node, ast.Constant) and node.value in PRIVATE_ATTRIBUTES:
            found.add(node.value)
    return found


def test_a_private_attribute_is_found_read_directly_or_by_name(tmp_path):
    module = tmp_path / "sensor.py"
    module.write_text(
        "def tick(context, event):\n"
        "    context.instance.event_log_storage.get_latest_asset_check_execution_by_key([])\n"
        "    return getattr(event, 'step_failure_data'), event.message\n"
    )
    assert private_attributes(module) == {
        "event_log_storage",
        "get_latest_asset_check_execution_by_key",
        "step_failure_data",
    }


#: Reads outside the alerts, left for their owners; the set only shrinks (an entry no longer
#: read fails the test until it is taken out). The CLI reads a failed step's error and metadata
#: from its in-process run's events.
NOT_YET = {("assets_pipeline/cli.py", "step_failure_data")}


def test_the_package_reads_no_known_private_dagster_attribute():
    private = {
        (path.relative_to(REPO).as_posix(), name)
        for path in modules("assets_pipeline")
        for name in private_attributes(path)
    }
    assert private - NOT_YET == set(), "a non-public Dagster attribute is read"
    assert NOT_YET - private == set(), "no longer read: take it out of NOT_YET"


def test_the_alerts_read_no_known_private_dagster_attribute():
    alerts = [REPO / "assets_pipeline" / area / "alerts.py" for area in ("defs", "rules")]
    assert {name for path in alerts for name in private_attributes(path)} == set()


def test_the_package_passes_dagster_no_hidden_parameter():
    hidden = {
        path.relative_to(REPO).as_posix()
        for path in modules("assets_pipeline")
        if "allow_arbitrary_check_specs" in path.read_text()
    }
    assert not hidden
