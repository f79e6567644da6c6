"""Market hours at their edges, the staleness rule per tier, and the soft quality rules."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from assets_pipeline.market_hours import MarketHours, parse_market_hours
from assets_pipeline.quality import QualityPolicy, assess_freshness, assess_quality
from assets_pipeline.quotes import Quote
from assets_pipeline.registry import RegistryError, parse_registry
from assets_pipeline.taxonomy import AssetType, Tier

from .conftest import symbol_entry

HOURS = MarketHours()
FOREX, CRYPTO, INDEX = AssetType.FOREX, AssetType.CRYPTO, AssetType.INDEX


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# 2026-11-20 is a Friday, 2026-11-21 a Saturday, 2026-11-22 a Sunday
@pytest.mark.parametrize(
    ("asset_type", "at", "is_open"),
    [
        (FOREX, utc(2026, 11, 20, 21, 59), True),  # Friday 21:59: still trading
        (FOREX, utc(2026, 11, 20, 22, 0), False),  # Friday 22:00: closed
        (FOREX, utc(2026, 11, 21, 12, 0), False),  # Saturday
        (FOREX, utc(2026, 11, 22, 21, 59), False),  # Sunday 21:59: not yet
        (FOREX, utc(2026, 11, 22, 22, 0), True),  # Sunday 22:00: open
        (FOREX, utc(2026, 11, 24, 3, 0), True),  # Tuesday night
        (CRYPTO, utc(2026, 11, 21, 12, 0), True),  # crypto on Saturday
        (CRYPTO, utc(2026, 11, 22, 21, 59), True),
        (INDEX, utc(2026, 11, 20, 14, 29), False),  # New York 09:29 (EST, UTC-5)
        (INDEX, utc(2026, 11, 20, 14, 30), True),  # New York 09:30
        (INDEX, utc(2026, 11, 20, 20, 59), True),
        (INDEX, utc(2026, 11, 20, 21, 0), False),  # New York 16:00
        (INDEX, utc(2026, 7, 17, 13, 30), True),  # summer (EDT, UTC-4): 09:30 is 13:30 UTC
        (INDEX, utc(2026, 11, 21, 15, 0), False),  # Saturday
    ],
)
def test_market_hours_at_the_edges(asset_type, at, is_open):
    assert HOURS.is_open(asset_type, at) is is_open


def test_open_time_skips_the_weekend_and_the_open_is_seen():
    friday, sunday = utc(2026, 11, 20, 21, 50), utc(2026, 11, 22, 22, 5)
    assert HOURS.open_seconds(FOREX, friday, sunday) == 15 * 60  # 10 min Friday + 5 min Sunday
    assert HOURS.open_seconds(CRYPTO, friday, sunday) == (sunday - friday).total_seconds()
    assert HOURS.opened_between(FOREX, utc(2026, 11, 22, 21, 59, 30), utc(2026, 11, 22, 22, 0))
    assert not HOURS.opened_between(FOREX, utc(2026, 11, 22, 22, 0), utc(2026, 11, 22, 22, 1))
    assert not HOURS.opened_between(CRYPTO, friday, sunday)


def test_market_hours_are_configurable_and_checked():
    hours = parse_market_hours({"forex": {"opens": "Sun 21:00", "closes": "Fri 21:00"}}, "f")
    assert hours.is_open(FOREX, utc(2026, 11, 22, 21, 0))
    assert not hours.is_open(FOREX, utc(2026, 11, 20, 21, 0))
    with pytest.raises(
        ValueError, match=r"market_hours\.index\.timezone: unknown time zone 'Mars/Base'"
    ):
        parse_market_hours({"index": {"timezone": "Mars/Base"}}, "f")
    with pytest.raises(
        ValueError, match=r"market_hours\.forex: 'night' is not a time such as 22:00"
    ):
        parse_market_hours({"forex": {"opens": "Sunday night"}}, "f")


# --- staleness -----------------------------------------------------------------------------------

TUESDAY = utc(2026, 11, 24, 12, 0)


def freshness(asset_type, last_sync, now, stale_after=900.0, quote_time=None, max_quote_age=1200.0):
    return assess_freshness(
        asset_type, last_sync, quote_time or last_sync, now, HOURS, stale_after, max_quote_age
    )


@pytest.mark.parametrize(
    ("tier_limit", "minutes_since_sync", "stale"),
    [(900, 14, False), (900, 16, True), (300, 6, True), (3600, 59, False)],
)
def test_stale_when_the_last_sync_is_older_than_the_tiers_limit(
    tier_limit, minutes_since_sync, stale
):
    last = TUESDAY - dt.timedelta(minutes=minutes_since_sync)
    assert freshness(FOREX, last, TUESDAY, stale_after=tier_limit).stale is stale


def test_no_stale_alarm_while_the_market_is_closed_nor_right_after_it_opens():
    friday_last = utc(2026, 11, 20, 21, 58)
    assert not freshness(FOREX, friday_last, utc(2026, 11, 21, 12, 0)).stale  # Saturday
    assert not freshness(FOREX, friday_last, utc(2026, 11, 22, 22, 5)).stale  # 7 open minutes
    assert freshness(FOREX, friday_last, utc(2026, 11, 22, 22, 14)).stale  # 16 open minutes
    # crypto never closes: the same Friday update is stale on Saturday
    assert freshness(CRYPTO, friday_last, utc(2026, 11, 21, 12, 0)).stale


def test_a_symbol_never_refreshed_is_stale_only_while_its_market_trades():
    assert freshness(FOREX, None, TUESDAY).stale
    assert not freshness(FOREX, None, utc(2026, 11, 21, 12, 0)).stale


def test_the_two_clocks_sync_age_for_staleness_quote_age_for_its_own_warning():
    # fetched a minute ago, but the quote itself is 16 minutes old (a delayed plan)
    result = freshness(
        FOREX,
        TUESDAY - dt.timedelta(minutes=1),
        TUESDAY,
        quote_time=TUESDAY - dt.timedelta(minutes=16),
        max_quote_age=600,
    )
    assert not result.stale and result.quote_lagging
    meta = result.metadata()
    assert meta["sync_age_seconds"] == 60 and meta["quote_age_seconds"] == 960
    assert meta["market_open"] is True


def test_stale_after_is_set_per_tier_in_the_symbols_file():
    document = {
        "symbols": [symbol_entry(name="x")],
        "tiers": {"critical": {"stale_after": "5m"}},
    }
    registry = parse_registry(document, "s.yaml")
    assert registry.stale_after(Tier.CRITICAL) == 300
    document["quality"] = {"max_spread_bps": -1}
    with pytest.raises(
        RegistryError, match=r"quality\.max_spread_bps: -1 is not a positive number"
    ):
        parse_registry(document, "s.yaml")


# --- quality ---------------------------------------------------------------------------------------

Q = Quote(
    ticker="C:EURUSD",
    symbol="EURUSD",
    quote_time=TUESDAY,
    source="t",
    bid=1.0800,
    ask=1.0801,
    last_price=1.08005,
)


def test_a_normal_quote_passes_with_its_numbers():
    previous = dataclasses.replace(
        Q, quote_time=TUESDAY - dt.timedelta(minutes=5), last_price=1.0790
    )
    verdict = assess_quality(Q, previous, QualityPolicy())
    assert verdict.passed and verdict.problems == []
    assert verdict.metadata["spread_bps"] == pytest.approx(0.926, abs=0.001)
    assert verdict.metadata["jump_pct"] == pytest.approx(0.0973, abs=0.001)


@pytest.mark.parametrize(
    ("quote", "previous_price", "previous_delta", "problem"),
    [
        (dataclasses.replace(Q, bid=1.07, ask=1.09), 1.08, -60, "spread 185.2 bp > 50 bp"),
        (
            dataclasses.replace(Q, last_price=1.2),
            1.08,
            -60,
            "jump 11.11% from the previous quote > 5%",
        ),
        (Q, 1.08, +60, "is not newer than the stored"),
    ],
)
def test_soft_violations_warn_with_their_numbers(quote, previous_price, previous_delta, problem):
    previous = dataclasses.replace(
        Q, last_price=previous_price, quote_time=TUESDAY + dt.timedelta(seconds=previous_delta)
    )
    verdict = assess_quality(quote, previous, QualityPolicy())
    assert not verdict.passed
    assert any(problem in p for p in verdict.problems), verdict.problems
