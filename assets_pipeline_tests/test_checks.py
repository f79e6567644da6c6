"""Staleness, quote age and quality, through Dagster, on the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from assets_pipeline import clock
from assets_pipeline.database import get_engine
from assets_pipeline.definitions import build_definitions
from assets_pipeline.quote_store import QuoteStore
from assets_pipeline.quotes import Quote
from assets_pipeline.registry import load_registry, parse_registry
from assets_pipeline.schema import api_providers, data_sync_status, symbols
from assets_pipeline.simulator import PolygonSimulator

NOW = dt.datetime.now(dt.UTC)
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
        quote_time=at,
        source="test",
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


@pytest.fixture
def checked(pg_url, monkeypatch):
    monkeypatch.setenv("TRADING_DATABASE_URL", pg_url)

    def run(registry, at=None):
        if at is not None:
            monkeypatch.setattr(clock, "utcnow", lambda: at)
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
    pg_url, registry, checked
):
    store = QuoteStore(get_engine(pg_url))
    store.register_symbols(registry)
    store.write_quote(registry.get("EURUSD"), quote("EURUSD", "C:EURUSD", NOW, 1.08), NOW.date())
    store.write_quote(registry.get("GBPUSD"), quote("GBPUSD", "C:GBPUSD", NOW, 1.27), NOW.date())
    set_last_sync(store, "GBPUSD", NOW - dt.timedelta(minutes=20))  # high tier: 15 min

    results = checked(registry)

    eur, gbp, aud = (results[(s, "fresh")] for s in ("EURUSD", "GBPUSD", "AUDUSD"))
    assert eur.passed and not gbp.passed and not aud.passed  # AUDUSD never refreshed
    assert gbp.severity == dg.AssetCheckSeverity.ERROR
    meta = gbp.metadata
    assert 1195 < meta["sync_age_seconds"].value < 1300
    assert meta["stale_after_seconds"].value == 900 and meta["market_open"].value is True
    assert meta["quote_age_seconds"].value < 60  # the second clock, recorded beside the first
    assert len([k for k in results if k[1] == "fresh"]) == 9

    # the platform sees it without Dagster
    assert store.sync_status("GBPUSD")["sync_status"] == "stale"
    assert store.sync_status("AUDUSD")["sync_status"] == "stale"
    assert store.sync_status("EURUSD")["sync_status"] == "success"
    # and the next update brings it back
    later = NOW + dt.timedelta(seconds=1)
    store.write_quote(registry.get("GBPUSD"), quote("GBPUSD", "C:GBPUSD", later, 1.27), NOW.date())
    assert store.sync_status("GBPUSD")["sync_status"] == "success"
    assert checked(registry)[("GBPUSD", "fresh")].passed


def test_a_lagging_quote_warns_on_its_own_while_the_sync_is_fresh(pg_url, registry, checked):
    store = QuoteStore(get_engine(pg_url))
    old = NOW - dt.timedelta(minutes=30)  # a delayed feed: fetched now, 30 minutes behind
    store.write_quote(registry.get("XAUUSD"), quote("XAUUSD", "C:XAUUSD", old, 2400.0), NOW.date())
    results = checked(registry)
    assert results[("XAUUSD", "fresh")].passed
    lag = results[("XAUUSD", "quote_age")]
    assert not lag.passed and lag.severity == dg.AssetCheckSeverity.WARN
    assert 1790 < lag.metadata["quote_age_seconds"].value < 1900
    assert lag.metadata["max_quote_age_seconds"].value == 1200


def test_no_alarm_for_forex_over_the_weekend_but_crypto_goes_stale(pg_url, checked):
    registry = real_hours_registry()
    store = QuoteStore(get_engine(pg_url))
    friday = dt.datetime(2026, 11, 20, 21, 58, tzinfo=dt.UTC)
    for symbol, ticker, price in (("EURUSD", "C:EURUSD", 1.08), ("BTCUSD", "X:BTCUSD", 60000.0)):
        store.write_quote(registry.get(symbol), quote(symbol, ticker, friday, price), friday.date())
        set_last_sync(store, symbol, friday)
    results = checked(registry, at=SATURDAY)
    eur, btc = results[("EURUSD", "fresh")], results[("BTCUSD", "fresh")]
    assert eur.passed and eur.metadata["market_open"].value is False
    assert "market closed, no alarm" in eur.description
    assert not btc.passed
    assert results[("EURUSD", "quote_age")].passed  # no lag warning while closed either
    assert store.sync_status("EURUSD")["sync_status"] == "success"
    assert store.sync_status("BTCUSD")["sync_status"] == "stale"


def test_every_materialization_checks_quality_and_warns_with_the_numbers(
    pg_url, registry, monkeypatch, redis_namespace
):
    store = QuoteStore(get_engine(pg_url))
    earlier = NOW - dt.timedelta(minutes=5)
    store.write_quote(registry.get("EURUSD"), quote("EURUSD", "C:EURUSD", earlier, 2.0), NOW.date())
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as sim:
        for name, value in {
            "POLYGON_API_KEY": KEY,
            "POLYGON_BASE_URL": sim.url,
            "TRADING_DATABASE_URL": pg_url,
            "REDIS_NAMESPACE": redis_namespace,
            "POLYGON_RATE_LIMIT_CALLS": "100",
        }.items():
            monkeypatch.setenv(name, value)
        result = (
            build_definitions(registry)
            .resolve_job_def("refresh_critical")
            .execute_in_process(
                partition_key=NOW.date().isoformat(), instance=dg.DagsterInstance.ephemeral()
            )
        )
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
