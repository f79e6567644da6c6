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


def freshness(asset_type, last_sync, now, stale_after=900.0, data_time=None, max_quote_age=1200.0):
    return assess_freshness(
        asset_type, last_sync, data_time or last_sync, now, HOURS, stale_after, max_quote_age
    )


def end_of_day(asset_type, data_time, now, stale_after=600.0, delay_minutes=30):
    """Judged as a symbol served day bars, the newest published 30 minutes after its close."""
    return assess_freshness(
        asset_type,
        now,  # fetched just now: the fetch never makes data fresh
        data_time,
        now,
        HOURS,
        stale_after,
        1200.0,
        publication_delay=dt.timedelta(minutes=delay_minutes),
    )


@pytest.mark.parametrize(
    ("tier_limit", "minutes_old", "stale"),
    [(900, 14, False), (900, 16, True), (300, 6, True), (3600, 59, False)],
)
def test_stale_when_the_data_is_older_than_the_tiers_limit(tier_limit, minutes_old, stale):
    last = TUESDAY - dt.timedelta(minutes=minutes_old)
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


def test_fetched_a_minute_ago_is_not_fresh_when_the_price_itself_is_old():
    # fetched a minute ago, but the quote's own time is 16 minutes old (a delayed feed)
    result = freshness(
        FOREX,
        TUESDAY - dt.timedelta(minutes=1),
        TUESDAY,
        data_time=TUESDAY - dt.timedelta(minutes=16),
        max_quote_age=600,
    )
    assert result.stale and result.quote_lagging
    meta = result.metadata()
    assert meta["sync_age_seconds"] == 60 and meta["data_age_seconds"] == 960
    assert meta["market_open"] is True


# end-of-day plan: the newest close published 30 minutes after it, with a tier's 10 minutes to
# fetch it. Forex bars are UTC days: Monday's closes at Tuesday 00:00Z, Friday's at 17:00 New York.
MONDAY_CLOSE = utc(2026, 11, 24, 0, 0)
FRIDAY_CLOSE = utc(2026, 11, 20, 22, 0)  # 17:00 New York in winter


@pytest.mark.parametrize(
    ("asset_type", "data_time", "now", "stale"),
    [
        # Tuesday noon holding Monday's close: as new as the plan allows
        (FOREX, MONDAY_CLOSE, TUESDAY, False),
        # Tuesday noon holding Friday's close: Monday's was published hours ago
        (FOREX, FRIDAY_CLOSE, TUESDAY, True),
        # Saturday holding Friday's close: nothing newer exists
        (FOREX, FRIDAY_CLOSE, utc(2026, 11, 21, 12, 0), False),
        # Monday 00:35Z: Sunday's short bar was published 5 minutes ago; a tier still has time
        (FOREX, FRIDAY_CLOSE, utc(2026, 11, 23, 0, 35), False),
        # Monday 00:45Z: 15 minutes after publication and still Friday's: stale, though the
        # market is open and a fetch happened just now
        (FOREX, FRIDAY_CLOSE, utc(2026, 11, 23, 0, 45), True),
        # crypto's bar of Monday closes at midnight, every day of the week
        (CRYPTO, MONDAY_CLOSE, TUESDAY, False),
        (CRYPTO, MONDAY_CLOSE - dt.timedelta(days=1), TUESDAY, True),
        # nothing stored at all
        (FOREX, None, TUESDAY, True),
    ],
)
def test_on_an_end_of_day_plan_the_newest_published_close_is_fresh_and_older_is_stale(
    asset_type, data_time, now, stale
):
    result = end_of_day(asset_type, data_time, now)
    assert result.stale is stale
    assert result.quote_lagging is stale


def test_an_end_of_day_verdict_says_which_close_is_the_newest():
    meta = end_of_day(FOREX, MONDAY_CLOSE, TUESDAY).metadata()
    assert meta["freshness"].startswith(
        "end-of-day plan: newest data is the close of 2026-11-23;"
        " the next bar can be fetched after 2026-11-25T00:30Z"
    )
    assert meta["data_time"] == "2026-11-24T00:00:00.000000Z"
    assert meta["data_age_seconds"] == 12 * 3600


# --- quality ---------------------------------------------------------------------------------------

Q = Quote(
    ticker="C:EURUSD",
    symbol="EURUSD",
    data_time=TUESDAY,
    source="polygon:test",
    bid=1.0800,
    ask=1.0801,
    last_price=1.08005,
)


def test_a_normal_quote_passes_with_its_numbers():
    previous = dataclasses.replace(
        Q, data_time=TUESDAY - dt.timedelta(minutes=5), last_price=1.0790
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
        (Q, 1.08, +60, "is older than the stored"),
        # the same data time, another price: the vendor's correction, stored with a warning
        (Q, 1.08, 0, "with another price: stored as the vendor's correction"),
    ],
)
def test_soft_violations_warn_with_their_numbers(quote, previous_price, previous_delta, problem):
    previous = dataclasses.replace(
        Q, last_price=previous_price, data_time=TUESDAY + dt.timedelta(seconds=previous_delta)
    )
    verdict = assess_quality(quote, previous, QualityPolicy())
    assert not verdict.passed
    assert any(problem in p for p in verdict.problems), verdict.problems
