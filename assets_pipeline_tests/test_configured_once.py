"""The Dagster layer is configured once, when the definitions load: no `global` statement, no
module-level mutable cache (an empty container filled later, or a module function under
`functools.cache`/`lru_cache`) and no read of the environment (`Settings.from_env`,
`os.environ`) in `assets_pipeline/defs`. The rest of the package holds no such state either:
what it keeps belongs to an object (a resource, a store, a registry's market hours)."""

import ast
from pathlib import Path

from assets_pipeline_tests.conftest import REPO, parse_source

PACKAGE = REPO / "assets_pipeline"
#: Calls and names that read the environment.
ENV_READS = {"from_env", "environ", "getenv", "environment"}
#: Decorators that make a function a cache (on a module-level function: a module-level cache).
CACHES = {"cache", "lru_cache"}
#: Module-level state still outside the Dagster layer: none, and it stays so.
REMAINING: list[str] = []


def _is_empty_container(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Dict | ast.List | ast.Set):
        return not getattr(node, "elts", None) and not getattr(node, "keys", None)
    if isinstance(node, ast.Call) and not node.args and not node.keywords:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func
        name = name.id if isinstance(name, ast.Name) else name
        return name in {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter"}
    return False


def _cache_decorator(node: ast.expr) -> str | None:
    """`cache` or `lru_cache` (bare, called, or as `functools.`'s) when `node` is one."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return name if name in CACHES else None


def _module_caches(tree: ast.Module) -> list[str]:
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kinds = [k for k in map(_cache_decorator, node.decorator_list) if k]
            found += [f"module-level {kind} {node.name}" for kind in kinds]
            continue
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


def module_state(root: Path, env_readers: tuple[str, ...] = ()) -> list[str]:
    """`file: what` for each `global` statement, module-level empty container (a cache filled
    at run time), module-level function cached by `functools` and environment read under
    `root`; the files in `env_readers` may read the environment (their state is still listed)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()
        tree = parse_source(path.read_text(encoding="utf-8"), str(path))
        items = [*_module_caches(tree)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                items += [f"global {name}" for name in node.names]
            elif (read := _env_read(node)) is not None and not where.startswith(env_readers):
                items.append(read)
        found += [f"{where}: {item}" for item in items]
    return sorted(found)


def test_the_dagster_layer_holds_no_module_state_and_reads_no_environment():
    found = module_state(PACKAGE / "defs")
    assert found == [], "the Dagster layer is configured once, at load:\n" + "\n".join(found)


def test_the_rest_of_the_package_holds_no_module_state():
    # Nothing is skipped for state, the simulator included. Only the environment may be read
    # outside the Dagster layer, and only where the settings are made: config/ (the symbols
    # file's path among them), and the CLI, the doctor and the code location, once as they start.
    env_readers = ("config/", "cli.py", "doctor.py", "location.py")
    assert module_state(PACKAGE, env_readers) == REMAINING


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
        "@functools.cache\n"
        "def key(symbol): return symbol\n"
        "@functools.lru_cache(maxsize=32)\n"
        "def calendar(name, year): return name\n"
        "@lru_cache\n"
        "def bare(): return 1\n"
        "class Registry:\n"
        "    @functools.cached_property\n"
        "    def hours(self): return 1\n"  # per object: not module state
    )
    assert module_state(package) == [
        "module.py: Settings.from_env",
        "module.py: global _source",
        "module.py: module-level cache _clients",
        "module.py: module-level cache _seen",
        "module.py: module-level cache key",
        "module.py: module-level lru_cache bare",
        "module.py: module-level lru_cache calendar",
        "module.py: os.environ",
    ]
    # a file that may read the environment still has its state listed
    assert module_state(package, ("module.py",)) == [
        "module.py: global _source",
        "module.py: module-level cache _clients",
        "module.py: module-level cache _seen",
        "module.py: module-level cache key",
        "module.py: module-level lru_cache bare",
        "module.py: module-level lru_cache calendar",
    ]
