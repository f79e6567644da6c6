"""One rule, one home: a rule the package applies in several places is written once, and a
second copy creeping back fails here."""

from __future__ import annotations

import ast
import re

from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline_tests.conftest import REPO

PACKAGE = REPO / "assets_pipeline"


def string_constants(path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def test_a_ticker_prefix_names_its_market_in_one_place_only():
    # the simulator stands alone (it imports nothing of the package), so it keeps its own
    prefix = re.compile(r"^[CXI]:$")
    homes = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "simulator" not in path.parts and any(map(prefix.match, string_constants(path)))
    }
    assert homes == {"rules/taxonomy.py"}


# each case: a ticker of a market, and one whose prefix names none
CASES = [
    ("C:EURUSD", AssetType.FOREX),
    ("X:BTCUSD", AssetType.CRYPTO),
    ("I:SPX", AssetType.INDEX),
    ("EURUSD", None),
    ("c:EURUSD", None),
]


def test_the_market_of_a_ticker_is_read_from_its_prefix():
    assert [AssetType.of_ticker(ticker) for ticker, _ in CASES] == [kind for _, kind in CASES]
