"""One rule, one home: a rule the package applies in several places is written once, and a
second copy creeping back fails here."""

from __future__ import annotations

import ast
import re

import pytest

from assets_pipeline.config import settings as settings_module
from assets_pipeline.config.settings import Settings, SettingsError
from assets_pipeline.defs.resources import PolygonBudgetResource, TradingDatabase
from assets_pipeline.rules.cadence import (
    DEFAULT_RATE_LIMIT_CALLS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    BudgetShape,
    Refresh,
    TierPolicy,
)
from assets_pipeline.rules.plans import Plan, PlanError, SnapshotMode
from assets_pipeline.rules.retention import DEFAULT_RETENTION_DAYS
from assets_pipeline.rules.taxonomy import AssetType, Tier
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


# --- plans and snapshot modes: read by Plan.parse / SnapshotMode.parse, compared as members ---

#: The words a plan or a snapshot mode is spelt with (`auto`, `free`, `paid`, `batch`, ...).
PLAN_WORDS = frozenset(str(member) for member in (*Plan, *SnapshotMode))
PLAN_ENUMS = {"Plan", "SnapshotMode"}


def _operands(node: ast.AST) -> list[ast.AST]:
    """The expressions `node` compares, chooses between or gives as a default."""
    if isinstance(node, ast.Compare):
        return [node.left, *node.comparators]
    if isinstance(node, ast.IfExp):
        return [node.body, node.orelse]
    if isinstance(node, ast.arguments):
        return [*node.defaults, *(d for d in node.kw_defaults if d is not None)]
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return [node.value]
    if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Literal":
        return [node.slice]
    return []


def plan_literals(tree: ast.AST) -> list[int]:
    """Lines where a plan or mode word is written out where a value is compared (`== "free"`,
    `in ("free", "paid")`), chosen (`"batch" if ... else ...`), given as a parameter's or a
    field's default, or listed in `Literal[...]`. Dictionary keys, call arguments, texts and
    other enums' members (`BudgetStore.AUTO = "auto"`) are none of these."""
    found = []
    for node in ast.walk(tree):
        for operand in _operands(node):
            elements = getattr(operand, "elts", [operand])
            found += [
                e.lineno for e in elements if isinstance(e, ast.Constant) and e.value in PLAN_WORDS
            ]
    return found


def plan_parsers(tree: ast.AST) -> list[int]:
    """Lines that read a plan or mode around `parse`: `Plan(text)`, or the members gathered
    into a set to check a value against (`tuple(Plan)`, `{m.value for m in SnapshotMode}`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in PLAN_ENUMS:
            found.append(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in COLLECTIONS:
            found += [a.lineno for a in node.args if getattr(a, "id", "") in PLAN_ENUMS]
        elif isinstance(node, ast.comprehension) and getattr(node.iter, "id", "") in PLAN_ENUMS:
            found.append(node.iter.lineno)
    return found


COLLECTIONS = {"tuple", "list", "set", "frozenset", "sorted"}


def homes(scan) -> set[str]:
    """The package's modules (the standalone simulator aside) where `scan` finds something."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "simulator" not in path.parts and scan(ast.parse(path.read_text(), str(path)))
    }


def test_plans_and_snapshot_modes_are_read_and_compared_in_one_place_only():
    assert homes(plan_literals) <= {"rules/plans.py"}
    assert homes(plan_parsers) <= {"rules/plans.py"}


def test_the_scanners_see_a_second_home_of_the_plans(tmp_path):
    # a module that compares, checks, chooses and defaults plan words itself, and parses a plan
    # its own way: each line is found...
    planted = ast.parse(
        "def f(plan='auto', mode: str = 'batch'):\n"  # 1: two defaults
        "    if plan == 'free': pass\n"  # 2: a comparison
        "    if mode in ('batch', 'per_ticker'): pass\n"  # 3: a validation set
        "    x = 'paid' if plan else 'auto'\n"  # 4: a choice
        "    Mode = Literal['batch', 'per_ticker']\n"  # 5: a type of its own
        "    return Plan(plan), tuple(SnapshotMode), {m.value for m in Plan}\n"  # 6: parsers
    )
    assert sorted(plan_literals(planted)) == [1, 1, 2, 3, 3, 4, 4, 5, 5]
    assert plan_parsers(planted) == [6, 6, 6]
    # ...and what only spells the same word for something else is not
    unrelated = ast.parse(
        "class BudgetStore(enum.StrEnum):\n    AUTO = 'auto'\n"
        "meta = {'batch': 1}\nmeta.get('batch')\nprint('free')\nx = Plan.parse(text, 'X')\n"
    )
    assert plan_literals(unrelated) == [] and plan_parsers(unrelated) == []


# each case: a plan or mode as written, where it was read, and what it is read as
PARSE_CASES = [
    (Plan, "free", Plan.FREE),
    (Plan, Plan.PAID, Plan.PAID),
    (SnapshotMode, "per_ticker", SnapshotMode.PER_TICKER),
    # a wrong case, a typo, an empty text: refused, naming where and the values there are
    (Plan, "FREE", "POLYGON_PLAN='FREE': not a plan (expected one of auto, free, paid)"),
    (SnapshotMode, "bulk", "POLYGON_PLAN='bulk': not a snapshot mode (expected one of batch"),
    (Plan, "", "POLYGON_PLAN='': not a plan"),
]


@pytest.mark.parametrize(("kind", "text", "expected"), PARSE_CASES)
def test_a_plan_or_mode_is_read_by_its_parse(kind, text, expected):
    if isinstance(expected, kind):
        assert kind.parse(text, "POLYGON_PLAN") is expected
    else:
        with pytest.raises(PlanError, match=re.escape(expected)):
            kind.parse(text, "POLYGON_PLAN")


def test_settings_and_run_config_read_plans_through_parse():
    # the variable's error is `parse`'s own, named by the variable
    with pytest.raises(SettingsError, match=r"POLYGON_PLAN='gold': not a plan \(expected"):
        Settings.from_env({"POLYGON_PLAN": "gold"})
    assert Settings.from_env({"POLYGON_SNAPSHOT_MODE": "per_ticker"}).snapshot_mode is (
        SnapshotMode.PER_TICKER
    )


# --- budget defaults and the retention: one constant each, which the others import ---


def _numbers(node: ast.AST | None) -> list[ast.Constant]:
    """The number a value is, or defaults to: `5`, `Field(default=5)`, `Field(5)`; a field's
    bounds (`gt=0`) and arithmetic (`x / 60`) are no default."""
    if isinstance(node, ast.Call):
        given = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "default")]
        return [n for value in given for n in _numbers(value)]
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return [node]
    return []


def _named_values(tree: ast.AST) -> list[tuple[str, ast.AST | None]]:
    """(name, value) for every name given a value: assignments (`X = 5`, `x: int = 5`,
    `self.x = 5`), parameters' defaults and keyword arguments."""
    pairs: list[tuple[str, ast.AST | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = getattr(target, "id", None) or getattr(target, "attr", None)
                pairs += [(name, node.value)] if name else []
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            pairs += [
                (a.arg, d) for a, d in zip(positional[::-1], node.defaults[::-1], strict=False)
            ]
            pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)]
        elif isinstance(node, ast.keyword) and node.arg:
            pairs.append((node.arg, node.value))
    return pairs


def defaults_given(tree: ast.AST, name: re.Pattern[str], values: set[float] | None) -> list[int]:
    """Lines where a name matching `name` is given a number literal (one of `values`, or any)."""
    return [
        n.lineno
        for key, value in _named_values(tree)
        if name.search(key)
        for n in _numbers(value)
        if values is None or n.value in values
    ]


#: The names a budget's calls and window go by (`calls`, `window_seconds`, `rate_limit_calls`,
#: `DEFAULT_RATE_LIMIT_WINDOW_SECONDS`, ...).
BUDGET_NAME = re.compile(r"(?i)^(default_)?(rate_limit_)?(calls|limit|window|window_seconds)$")
BUDGET_NUMBERS = {DEFAULT_RATE_LIMIT_CALLS, DEFAULT_RATE_LIMIT_WINDOW_SECONDS}
RETENTION_NAME = re.compile(r"(?i)retention")


def test_the_budget_defaults_are_written_once():
    found = homes(lambda tree: defaults_given(tree, BUDGET_NAME, BUDGET_NUMBERS))
    assert found == {"rules/cadence.py"}
    # the others take the constants themselves
    assert BudgetShape().window_seconds is DEFAULT_RATE_LIMIT_WINDOW_SECONDS
    assert Settings().rate_limit_window_seconds is DEFAULT_RATE_LIMIT_WINDOW_SECONDS
    assert settings_module.DEFAULT_RATE_LIMIT_CALLS is DEFAULT_RATE_LIMIT_CALLS
    fields = PolygonBudgetResource.model_fields
    assert fields["window_seconds"].default is DEFAULT_RATE_LIMIT_WINDOW_SECONDS
    assert (BudgetShape().calls, fields["calls"].default) == (DEFAULT_RATE_LIMIT_CALLS,) * 2


def test_the_retention_is_written_once_and_read_by_parse_age():
    assert homes(lambda tree: defaults_given(tree, RETENTION_NAME, None)) == {"rules/retention.py"}
    assert Settings().retention_days is DEFAULT_RETENTION_DAYS
    assert TradingDatabase.model_fields["retention_days"].default is DEFAULT_RETENTION_DAYS
    # an age given as text (`prune --older-than`, the prune job's `older_than`) is read by
    # `parse_age`, defined once
    assert homes(lambda tree: _defines(tree, "parse_age")) == {"rules/retention.py"}
    assert homes(lambda tree: _calls(tree, "parse_age")) == {"cli.py", "defs/retention.py"}


def _defines(tree: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


def _calls(tree: ast.AST, name: str) -> bool:
    return any(
        isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == name
        for n in ast.walk(tree)
    )


def test_the_scanner_sees_a_second_budget_or_retention_default():
    planted = ast.parse(
        "MAX_FAILURES = 5\n"  # 1: not a budget's name
        "DEFAULT_RATE_LIMIT_CALLS = 5\n"  # 2
        "class Shape:\n    window_seconds: float = 60.0\n"  # 4
        "def f(calls=5, *, limit=6): pass\n"  # 5: 6 is no default of ours
        "budget = Budget(calls=5, window_seconds=60)\n"  # 6, 6
        "class R:\n    calls: int = Field(default=5, gt=0, le=60)\n"  # 8: not its bound
        "limit = f'{seconds / 60} minutes'\n"  # 9: no default
        "retention_days: float = 30.0\n"  # 10
        "def prune(max_retention_days=90): pass\n"  # 11
    )
    assert sorted(defaults_given(planted, BUDGET_NAME, BUDGET_NUMBERS)) == [2, 4, 5, 6, 6, 8]
    assert sorted(defaults_given(planted, RETENTION_NAME, None)) == [10, 11]


# --- one run per kind: `may_start` decides for every cadence (and Dagster's queue agrees) ---


def run_deciders(tree: ast.AST) -> list[int]:
    """Lines that weigh runs in flight by a rule of their own: a call of `max_runtime_seconds`
    (is a run dead?), or of `in_flight` (the runs in flight) in a module that never asks
    `may_start`."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    names = [getattr(c.func, "id", getattr(c.func, "attr", "")) for c in calls]
    asks = "may_start" in names
    return [
        call.lineno
        for call, name in zip(calls, names, strict=True)
        if name == "max_runtime_seconds" or (name == "in_flight" and not asks)
    ]


def test_one_rule_decides_whether_another_run_of_a_kind_may_start():
    # the rule itself; the cadences that launch runs read the runs in flight and ask it
    assert homes(run_deciders) == {"rules/run_kinds.py"}
    assert homes(lambda tree: _calls(tree, "in_flight")) == {"defs/schedules.py", "defs/sensors.py"}


def test_the_scanner_sees_a_cadence_with_a_rule_of_its_own():
    planted = ast.parse(
        "def tick(instance):\n"
        "    busy = [r for r in in_flight(instance, 'job') if r.seconds < 300]\n"  # 2
        "    return max_runtime_seconds(busy[0].tags) if busy else None\n"  # 3
    )
    assert sorted(run_deciders(planted)) == [2, 3]
    asking = ast.parse("def tick(i):\n    return may_start('queue', in_flight(i, 'job'))\n")
    assert run_deciders(asking) == []


#: The words a tier's refresh is spelt with.
REFRESH_WORDS = frozenset(str(member) for member in Refresh)


def refresh_literals(tree: ast.AST) -> list[int]:
    """Lines where `direct` or `queued` is compared, chosen or given as a default (as
    `plan_literals` reads a plan word)."""
    found = []
    for node in ast.walk(tree):
        for operand in _operands(node):
            elements = getattr(operand, "elts", [operand])
            found += [
                e.lineno
                for e in elements
                if isinstance(e, ast.Constant) and e.value in REFRESH_WORDS
            ]
    return found


def test_a_tiers_refresh_is_compared_as_its_enum_only(tmp_path):
    assert homes(refresh_literals) == set()
    planted = tmp_path / "planted.py"
    planted.write_text("def direct(policy):\n    return policy.refresh == 'direct'\n")
    assert refresh_literals(ast.parse(planted.read_text())) == [2]
    assert TierPolicy(Tier.HIGH, Refresh("queued"), 60.0).refresh is Refresh.QUEUED


# --- provider names: `ProviderName` in rules/providers.py -----------------------------------------

from assets_pipeline.rules.providers import ProviderName  # noqa: E402

PROVIDER_WORDS = frozenset(ProviderName)


def _provider_named(target: ast.AST) -> bool:
    name = getattr(target, "id", None) or getattr(target, "attr", None) or ""
    return "provider" in name.lower() or name == "NAME"


def provider_literals(tree: ast.AST) -> list[int]:
    """Lines where a provider's name is written as a literal: compared with, or given to, a name
    that says provider (`PROVIDER = "polygon"`, `provider="kraken"`), or under a `provider` key.
    A Dagster kind, a resource key or a budget's name that happens to read `polygon` is not."""
    found = []
    for node in ast.walk(tree):
        values: list[ast.AST] = []
        if isinstance(node, ast.Compare) and any(
            map(_provider_named, [node.left, *node.comparators])
        ):
            values = [node.left, *node.comparators]
        elif isinstance(node, ast.Assign) and any(map(_provider_named, node.targets)):
            values = [node.value]
        elif isinstance(node, ast.AnnAssign) and _provider_named(node.target) and node.value:
            values = [node.value]
        elif isinstance(node, ast.keyword) and "provider" in (node.arg or ""):
            values = [node.value]
        elif isinstance(node, ast.Dict):
            values = [
                v for k, v in zip(node.keys, node.values, strict=True) if _is_word(k, {"provider"})
            ]
        found += [v.lineno for v in values if _is_word(v, PROVIDER_WORDS)]
    return sorted(found)


def _is_word(node: ast.AST | None, words: frozenset[str] | set[str]) -> bool:
    return isinstance(node, ast.Constant) and node.value in words


def test_provider_names_are_written_in_one_place_only():
    # a revision keeps the words it was written with; the simulator stands alone
    found = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "simulator" not in path.parts
        and "migrations" not in path.parts
        and provider_literals(ast.parse(path.read_text()))
    }
    assert found == set()


def test_the_scanner_sees_a_provider_name_written_again():
    planted = ast.parse(
        'PROVIDER = "polygon"\n'
        'if quote.provider == "kraken": pass\n'
        'Quote(source="x", provider="oanda")\n'
        'event = {"provider": "polygon"}\n'
        'kinds = {"polygon", "forex"}\n'  # a Dagster kind: not a provider name in use
    )
    assert provider_literals(planted) == [1, 2, 3, 4]
