"""The Dagster layer is configured once, when the definitions load: no `global` statement, no
module-level mutable cache and no read of the environment (`Settings.from_env`, `os.environ`)
in `assets_pipeline/defs`. What the rest of the package still holds is listed, so it can only
shrink."""

import ast
from pathlib import Path

from assets_pipeline_tests.conftest import REPO, parse_source

PACKAGE = REPO / "assets_pipeline"
#: Calls and names that read the environment.
ENV_READS = {"from_env", "environ", "getenv", "environment"}
#: Module-level state still outside the Dagster layer (persistence's engines, ids and breaker,
#: and the test clock's source).
REMAINING = [
    "persistence/database.py: module-level cache _engines",
    "persistence/database.py: module-level cache _ready",
    "persistence/outbox.py: module-level cache _breaker_open_until",
    "persistence/quote_store.py: module-level cache _provider_ids",
    "persistence/quote_store.py: module-level cache _symbol_ids",
    "rules/clock.py: global _source",
]


def _is_empty_container(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Dict | ast.List | ast.Set):
        return not getattr(node, "elts", None) and not getattr(node, "keys", None)
    if isinstance(node, ast.Call) and not node.args and not node.keywords:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func
        name = name.id if isinstance(name, ast.Name) else name
        return name in {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter"}
    return False


def _module_caches(tree: ast.Module) -> list[str]:
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if _is_empty_container(value):
            found += [f"module-level cache {t.id}" for t in targets if isinstance(t, ast.Name)]
    return found


def _env_read(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and node.attr in ENV_READS:
        owner = node.value.id if isinstance(node.value, ast.Name) else "..."
        return f"{owner}.{node.attr}"
    if isinstance(node, ast.Name) and node.id in ENV_READS and isinstance(node.ctx, ast.Load):
        return node.id
    return None


def module_state(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """`file: what` for each `global` statement, module-level empty container (a cache filled
    at run time) and environment read under `root`, files in `skip` aside."""
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()
        if where.startswith(skip):
            continue
        tree = parse_source(path.read_text(encoding="utf-8"), str(path))
        items = [*_module_caches(tree)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                items += [f"global {name}" for name in node.names]
            elif (read := _env_read(node)) is not None:
                items.append(read)
        found += [f"{where}: {item}" for item in items]
    return sorted(found)


def test_the_dagster_layer_holds_no_module_state_and_reads_no_environment():
    found = module_state(PACKAGE / "defs")
    assert found == [], "the Dagster layer is configured once, at load:\n" + "\n".join(found)


def test_what_the_rest_of_the_package_still_holds_only_shrinks():
    # config/ is where the environment is read (the symbols file's path among it); the
    # simulator stands alone; the CLI, the doctor and the code location read the settings once,
    # when they start
    skip = ("config/", "simulator/", "cli.py", "doctor.py", "location.py")
    assert module_state(PACKAGE, skip) == REMAINING


def test_the_rule_sees_each_kind_of_module_state(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text(
        "import os\n"
        "_clients: dict[str, object] = {}\n"
        "_seen = set()\n"
        "CONSTANTS = {'a': 1}\n"
        "_source = None\n"
        "def use():\n"
        "    global _source\n"
        "    return Settings.from_env(), os.environ.get('X')\n"
    )
    assert module_state(package) == [
        "module.py: Settings.from_env",
        "module.py: global _source",
        "module.py: module-level cache _clients",
        "module.py: module-level cache _seen",
        "module.py: os.environ",
    ]
