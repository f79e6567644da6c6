"""No function in the package is longer than `MAX_LINES`: long ones are split into named steps."""

import ast
from pathlib import Path

from assets_pipeline_tests.conftest import REPO, parse_source

MAX_LINES = 50
PACKAGE = REPO / "assets_pipeline"


def long_functions(root: Path) -> list[str]:
    """`file:function (N lines)` for each function (methods and nested ones included) longer
    than `MAX_LINES`, counted from the `def` line to the last line, decorators excluded."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(parse_source(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    where = path.relative_to(root.parent).as_posix()
                    found.append(f"{where}:{node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_fifty_lines():
    too_long = long_functions(PACKAGE)
    assert not too_long, f"functions longer than {MAX_LINES} lines:\n" + "\n".join(too_long)


def test_the_rule_sees_a_long_function(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    (package / "module.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}")
    assert long_functions(package) == [f"package/module.py:long ({MAX_LINES + 1} lines)"]
