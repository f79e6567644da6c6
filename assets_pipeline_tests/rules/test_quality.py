"""The two-clock freshness rule per tier, and the soft quality rules (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.quality import QualityPolicy, assess_freshness, assess_quality
from assets_pipeline.rules.quotes import Quote
from assets_pipeline.rules.taxonomy import AssetType

HOURS = MarketHours()
FOREX, CRYPTO = AssetType.FOREX, AssetType.CRYPTO


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


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
