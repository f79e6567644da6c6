"""Staleness, quote age and quality, through Dagster, on the real PostgreSQL.

The clock is frozen (`frozen_clock`): the writer stamps each update and the checks measure ages on
the same clock, so every age asserted here is exact. Thresholds come from the registry.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from assets_pipeline.config.registry import Tier, load_registry, parse_registry
from assets_pipeline.definitions import build_definitions
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.schema import api_providers, data_sync_status, symbols
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import Quote
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline_tests.conftest import get_engine

SATURDAY = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
KEY = "checks-key"


def real_hours_registry():
    document = yaml.safe_load(Path(load_registry().source).read_text())
    # the production rule (not the test default, always open): Sun 17:00 to Fri 17:00 New York
    document["market_hours"] = {
        "forex": {"timezone": "America/New_York", "opens": "Sun 17:00", "closes": "Fri 17:00"}
    }
    return parse_registry(document, "symbols.yaml")


def quote(symbol, ticker, at, price):
    return Quote(
        ticker=ticker,
        symbol=symbol,
        data_time=at,
        source="polygon:test",
        bid=price,
        ask=price * 1.0001,
        last_price=price * 1.00005,
    )


def set_last_sync(store, symbol, at):
    with store.engine.begin() as conn:
        symbol_id = conn.execute(
            sa.select(symbols.c.id).where(symbols.c.symbol == symbol)
        ).scalar_one()
        provider = conn.execute(sa.select(api_providers.c.id)).scalar_one()
        conn.execute(
            sa.update(data_sync_status)
            .where(
                data_sync_status.c.ticker_id == symbol_id,
                data_sync_status.c.provider_id == provider,
            )
            .values(last_sync_timestamp=at)
        )


def point_at(monkeypatch, sim, pg_url, redis_namespace):
    """The environment of a deployment on this simulator, database and Redis namespace."""
    for name, value in {
        "POLYGON_API_KEY": KEY,
        "POLYGON_BASE_URL": sim.url,
        "TRADING_DATABASE_URL": pg_url,
        "REDIS_NAMESPACE": redis_namespace,
        "POLYGON_RATE_LIMIT_CALLS": "100",
    }.items():
        monkeypatch.setenv(name, value)


def ago(seconds):
    return dt.timedelta(seconds=seconds)


@pytest.fixture
def checked(pg_url, monkeypatch, frozen_clock):
    """Run the freshness checks as their job does, at the frozen clock's time."""
    monkeypatch.setenv("TRADING_DATABASE_URL", pg_url)

    def run(registry):
        result = (
            build_definitions(registry)
            .resolve_job_def("check_freshness")
            .execute_in_process(instance=dg.DagsterInstance.ephemeral())
        )
        assert result.success
        return {
            (e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()
        }

    return run


def test_fresh_stale_and_never_refreshed_symbols_and_the_sync_status_that_follows(
    pg_url, registry, checked, frozen_clock
):
    now = frozen_clock.now
    store = QuoteStore(get_engine(pg_url))
    # AUDUSD was never refreshed and has no row yet: the check registers it, and marks it
    store.write_quote(registry.get("EURUSD"), quote("EURUSD", "C:EURUSD", now, 1.08))
    stale_after = registry.tiers[registry.get("GBPUSD").tier].stale_after_seconds
    # GBPUSD fetched just now, but its price's own time is 5 minutes older than its tier allows
    old = now - ago(stale_after + 300)
    store.write_quote(registry.get("GBPUSD"), quote("GBPUSD", "C:GBPUSD", old, 1.27))

    results = checked(registry)

    eur, gbp, aud = (results[(s, "fresh")] for s in ("EURUSD", "GBPUSD", "AUDUSD"))
    assert eur.passed and not gbp.passed and not aud.passed
    assert aud.description == "AUDUSD: no price yet while its market trades"
    assert gbp.severity == dg.AssetCheckSeverity.ERROR
    meta = gbp.metadata
    # judged on the market's time, not on the fetch
    assert meta["sync_age_seconds"].value == 0
    assert meta["data_age_seconds"].value == stale_after + 300
    assert meta["open_market_data_age_seconds"].value == stale_after + 300  # always open here
    assert meta["stale_after_seconds"].value == stale_after and meta["market_open"].value is True
    assert gbp.description == (
        f"GBPUSD: the price is {(stale_after + 300) / 60:.1f} open-market minutes old"
    )
    assert eur.metadata["sync_age_seconds"].value == 0
    assert len([k for k in results if k[1] == "fresh"]) == 9

    # the platform sees it without Dagster
    assert store.sync_status("GBPUSD")["sync_status"] == "stale"
    assert store.sync_status("AUDUSD")["sync_status"] == "stale"
    assert store.sync_status("EURUSD")["sync_status"] == "success"
    # and the next update brings it back
    later = frozen_clock.advance(1)
    store.write_quote(registry.get("GBPUSD"), quote("GBPUSD", "C:GBPUSD", later, 1.27))
    assert store.sync_status("GBPUSD")["sync_status"] == "success"
    back = checked(registry)[("GBPUSD", "fresh")]
    assert back.passed and back.metadata["data_age_seconds"].value == 0


def test_a_symbol_turns_stale_once_its_last_update_is_older_than_its_tier_allows(
    pg_url, registry, checked, frozen_clock
):
    spec = registry.get("EURUSD")
    stale_after = registry.tiers[spec.tier].stale_after_seconds
    store = QuoteStore(get_engine(pg_url))
    now = frozen_clock.now
    store.write_quote(spec, quote("EURUSD", "C:EURUSD", now, 1.08))

    frozen_clock.advance(stale_after)
    at_the_limit = checked(registry)[("EURUSD", "fresh")]
    assert at_the_limit.passed
    assert at_the_limit.metadata["sync_age_seconds"].value == stale_after

    frozen_clock.advance(1)
    over = checked(registry)[("EURUSD", "fresh")]
    assert not over.passed
    assert over.metadata["sync_age_seconds"].value == stale_after + 1
    assert store.sync_status("EURUSD")["sync_status"] == "stale"


def test_a_lagging_quote_warns_before_its_tier_calls_it_stale(
    pg_url, registry, checked, frozen_clock
):
    store = QuoteStore(get_engine(pg_url))
    now = frozen_clock.now
    spec = registry.get("GBPUSD")  # a queued tier: stale after more than the 20 minutes' warning
    max_age, stale_after = registry.quality.max_data_age_seconds, registry.stale_after(spec.tier)
    lag = max_age + 300  # a delayed feed: fetched now, 5 minutes further behind than allowed
    assert lag < stale_after
    store.write_quote(spec, quote("GBPUSD", "C:GBPUSD", now - ago(lag), 1.27))
    results = checked(registry)
    fresh = results[("GBPUSD", "fresh")]
    assert fresh.passed and fresh.metadata["sync_age_seconds"].value == 0
    lagging = results[("GBPUSD", "quote_age")]
    assert not lagging.passed and lagging.severity == dg.AssetCheckSeverity.WARN
    assert lagging.metadata["data_age_seconds"].value == lag
    assert lagging.metadata["max_data_age_seconds"].value == max_age


def test_no_alarm_for_forex_over_the_weekend_but_crypto_goes_stale(pg_url, checked, frozen_clock):
    registry = real_hours_registry()
    store = QuoteStore(get_engine(pg_url))
    friday = frozen_clock.move_to(dt.datetime(2026, 11, 20, 21, 58, tzinfo=dt.UTC))
    for symbol, ticker, price in (("EURUSD", "C:EURUSD", 1.08), ("BTCUSD", "X:BTCUSD", 60000.0)):
        # refreshed two minutes before forex closes (Fri 22:00)
        store.write_quote(registry.get(symbol), quote(symbol, ticker, friday, price))
    frozen_clock.move_to(SATURDAY)
    results = checked(registry)
    eur, btc = results[("EURUSD", "fresh")], results[("BTCUSD", "fresh")]
    since_friday = (SATURDAY - friday).total_seconds()
    assert eur.passed and eur.metadata["market_open"].value is False
    assert "market closed, no alarm" in eur.description
    # only the two minutes forex traded count against it
    assert eur.metadata["sync_age_seconds"].value == since_friday
    assert eur.metadata["open_market_sync_age_seconds"].value == 120
    assert not btc.passed  # crypto trades all weekend
    assert btc.metadata["open_market_sync_age_seconds"].value == since_friday
    assert results[("EURUSD", "quote_age")].passed  # no lag warning while closed either
    assert store.sync_status("EURUSD")["sync_status"] == "success"
    assert store.sync_status("BTCUSD")["sync_status"] == "stale"


def test_every_materialization_checks_quality_and_warns_with_the_numbers(
    pg_url, registry, monkeypatch, redis_namespace
):
    store = QuoteStore(get_engine(pg_url))
    # older than what the simulator quotes (on the real clock), so the refresh is written
    earlier = clock.utcnow() - ago(300)
    store.write_quote(registry.get("EURUSD"), quote("EURUSD", "C:EURUSD", earlier, 2.0))
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as sim:
        point_at(monkeypatch, sim, pg_url, redis_namespace)
        job = build_definitions(registry).resolve_job_def("refresh_critical")
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    checks = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    # only the quality checks run with a refresh; freshness has its own job
    assert {e.check_name for e in result.get_asset_check_evaluations()} == {"quote_quality"}
    assert sorted(checks) == ["BTCUSD", "EURUSD", "XAUUSD"]
    jump = checks["EURUSD"]
    assert not jump.passed and jump.severity == dg.AssetCheckSeverity.WARN
    assert jump.metadata["jump_pct"].value > 40  # 2.0 -> ~1.08
    assert jump.metadata["max_jump_pct"].value == 5.0
    assert "jump" in jump.metadata["problems"].value
    assert checks["XAUUSD"].passed and checks["XAUUSD"].metadata["spread_bps"].value < 50
    assert checks["BTCUSD"].passed  # a trade: no spread to judge
    assert store.latest_quote("EURUSD").last_price < 2  # a soft warning does not block the write


def test_selecting_a_tier_with_its_checks_is_one_step_that_judges_freshness_after_the_write(
    pg_url, registry, monkeypatch, redis_namespace
):
    """What `dagster asset materialize --select group:critical` and the UI's Materialize run:
    the group's assets and all their checks, in one step of one process. A stale symbol is
    refreshed and judged fresh in the same run, on the sync it just wrote."""
    store = QuoteStore(get_engine(pg_url))
    store.register_symbols(registry.in_tier(Tier.CRITICAL))
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as sim:
        point_at(monkeypatch, sim, pg_url, redis_namespace)
        defs = build_definitions(registry)
        result = dg.materialize(
            [defs.resolve_assets_def(dg.AssetKey(["quotes", "XAUUSD"]))],
            selection="group:critical",
            instance=dg.DagsterInstance.ephemeral(),
        )
    assert result.success
    steps = {e.step_key for e in result.all_events if e.step_key}
    assert steps == {"quotes"}
    evaluations = {
        (e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()
    }
    for symbol in ("XAUUSD", "EURUSD", "BTCUSD"):
        assert evaluations[(symbol, "fresh")].passed, evaluations[(symbol, "fresh")].description
        assert (symbol, "quote_quality") in evaluations and (symbol, "quote_age") in evaluations
    assert {s for s, _ in evaluations} == {"XAUUSD", "EURUSD", "BTCUSD"}
    assert store.sync_status("XAUUSD")["sync_status"] == "success"


def snapshot(engine):
    """Every row of every table the package owns, in a stable order."""
    from assets_pipeline.persistence.schema import metadata

    with engine.connect() as conn:
        return {
            table.fullname: sorted(repr(tuple(row)) for row in conn.execute(sa.select(table)))
            for table in metadata.sorted_tables
            if sa.inspect(conn).has_table(table.name, schema=table.schema)
        }


def test_evaluating_the_freshness_checks_writes_nothing_to_the_trading_database(
    pg_url, registry, frozen_clock
):
    """Checks only read: the verdicts are returned, and the stale marking is left to its one
    writer (the refresh service's `mark_stale`, which the step calls afterwards)."""
    from assets_pipeline.defs.checks import FRESHNESS_CHECKS, judge_freshness
    from assets_pipeline.defs.keys import quote_asset_key
    from assets_pipeline.defs.resources import TradingDatabase

    now = frozen_clock.now
    store = QuoteStore(get_engine(pg_url))
    store.write_quote(registry.get("EURUSD"), quote("EURUSD", "C:EURUSD", now, 1.08))
    old = now - ago(registry.stale_after(registry.get("GBPUSD").tier) + 300)
    store.write_quote(registry.get("GBPUSD"), quote("GBPUSD", "C:GBPUSD", old, 1.27))
    selected = {
        dg.AssetCheckKey(quote_asset_key(spec.symbol), name)
        for spec in registry
        for name in FRESHNESS_CHECKS
    }
    before = snapshot(store.engine)

    verdicts = judge_freshness(registry, TradingDatabase(url=pg_url), selected)

    assert snapshot(store.engine) == before  # not a row added, changed or marked
    assert len(verdicts.results) == 18 and len(verdicts.judged) == 9
    stale = {spec.symbol for spec in verdicts.stale}
    assert {"GBPUSD", "AUDUSD"} <= stale and "EURUSD" not in stale  # AUDUSD: never refreshed
    assert store.sync_status("GBPUSD")["sync_status"] == "success"  # judged, not yet marked
    assert store.sync_status("AUDUSD") is None
