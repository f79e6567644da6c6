"""A refresh that breaks off mid-fetch still settles every symbol it planned, on PostgreSQL."""

from __future__ import annotations

import pytest

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.refresh import Refresh, plan_refresh
from assets_pipeline.rules.run_kinds import MANUAL
from assets_pipeline_tests.conftest import get_engine

SYMBOLS = ["XAUUSD", "EURUSD", "BTCUSD", "GBPUSD", "USDJPY"]


@pytest.mark.parametrize(
    "crash",
    [
        RecursionError("maximum recursion depth exceeded"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        RuntimeError("nul \x00, a lone \udfff and an escape \x1b[31m"),
    ],
    ids=type,
)
@pytest.mark.parametrize("answered", [0, 2])
def test_a_fetch_that_breaks_off_leaves_no_symbol_in_progress(
    pg_url, registry, simulator, monkeypatch, crash, answered
):
    engine = get_engine(pg_url)
    store, queue = QuoteStore(engine), RefreshQueue(engine, registry.queue)
    budget = PolygonBudget(SqlBudgetStore(engine), limit=1000, window_seconds=60)
    client = PolygonClient(simulator.url, "test-key", budget, max_retries=0)
    fetch = client.iter_fetch

    def breaking(specs, mode, result, now_fn=None):
        answers = fetch(specs, mode, result, now_fn)
        for _ in range(answered):
            yield next(answers)
        raise crash

    monkeypatch.setattr(client, "iter_fetch", breaking)
    plan = plan_refresh(registry, SYMBOLS, MANUAL, "b-crash")
    refresh = Refresh(plan, client, store, queue, "per_ticker")
    for spec, quote, _ in refresh.quotes():
        refresh.store(spec, quote)
    batch = refresh.settle()

    statuses = store.sync_statuses(SYMBOLS)
    planned = [spec.symbol for spec in plan.symbols]
    stored, broken = planned[:answered], planned[answered:]
    assert {s: statuses[s]["sync_status"] for s in planned} == {
        **{s: "success" for s in stored},
        **{s: "failed" for s in broken},
    }
    for symbol in broken:
        reason = statuses[symbol]["error_message"]
        assert f"the fetch broke off before {symbol} was answered" in reason
        assert type(crash).__name__ in reason
        reason.encode("utf-8")
        assert "\x00" not in reason and "\x1b" not in reason
    assert sorted(batch.failed) == sorted(broken) and sorted(batch.updated) == sorted(stored)
    assert {i.symbol for i in queue.items()} >= set(broken)  # retryable: queued to try again


def test_only_the_refresh_service_writes_a_symbols_state():
    """One owner: outside persistence (which holds the statements), only `refresh.py` calls the
    writers of a symbol's quote, sync status and events; checks and the IO manager call none."""
    import ast
    from pathlib import Path

    import assets_pipeline

    writers = {
        "write_quote",
        "record_failure",
        "start_refresh",
        "restore_status",
        "mark_stale",
        "register_symbols",
        "relay_pending",
    }
    root = Path(assets_pipeline.__file__).parent
    callers: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        if "persistence" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            # the store's methods (`store.write_quote(...)`), and the relay, a function
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in writers and (isinstance(func, ast.Attribute) or name == "relay_pending"):
                callers.setdefault(name, set()).add(path.relative_to(root).as_posix())
    # the relay also runs on its own (the sensor's op and the CLI's `relay` command)
    assert callers.pop("relay_pending") == {"refresh.py", "defs/sensors.py", "cli.py"}
    assert set().union(*callers.values()) == {"refresh.py"}
    assert set(callers) == writers - {"relay_pending"}
