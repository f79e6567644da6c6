"""Quote validation: a bad quote is rejected with its reason, before anything is written."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from assets_pipeline.rules.quotes import Quote, QuoteRejected, iso_utc, validate_quote

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
GOOD = Quote(
    ticker="C:EURUSD",
    data_time=NOW - dt.timedelta(seconds=5),
    source="polygon:test",
    bid=1.08,
    ask=1.0801,
    last_price=1.08005,
)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bid": float("nan")}, "bid is not a finite number"),
        ({"ask": float("inf")}, "ask is not a finite number"),
        ({"bid": 0.0}, "bid must be positive"),
        ({"last_price": -3.0}, "last_price must be positive"),
        ({"bid": 1.1, "ask": 1.0}, "crossed quote: bid 1.1 > ask 1.0"),
        ({"data_time": NOW + dt.timedelta(minutes=5)}, "is in the future"),
        ({"bid": None, "ask": None, "last_price": None}, "no price at all"),
        ({"ask": None, "last_price": None}, "only one side"),
        ({"day_volume": -1.0}, "day_volume must be"),
        ({"day_low": 2.0, "day_high": 1.0}, "day_low 2.0 > day_high 1.0"),
        # a one-sided quote is no price to trade on, even with a last price beside it
        ({"ask": None}, "only one side"),
        # a 1970 timestamp (a broken feed or clock) is not a live quote
        ({"data_time": dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}, "more than 30 days old"),
        # an ask of 9e18 is a broken value, not a market (a jump of a few % only warns)
        ({"ask": 9e18}, "ask 9e\\+18 is not a plausible price"),
        # and a trade at 1e-300 is no market either
        ({"last_price": 1e-300}, "last_price 1e-300 is not a plausible price"),
    ],
)
def test_bad_values_are_rejected_with_their_reason(change, reason):
    with pytest.raises(QuoteRejected, match=reason) as info:
        validate_quote(dataclasses.replace(GOOD, **change), now=NOW)
    assert info.value.ticker == "C:EURUSD"


def test_a_small_clock_skew_is_tolerated():
    ahead = dataclasses.replace(GOOD, data_time=NOW + dt.timedelta(seconds=30))
    assert validate_quote(ahead, now=NOW) is ahead


def test_crypto_quote_without_bid_and_ask_is_valid_and_has_no_spread():
    trade = dataclasses.replace(GOOD, ticker="X:BTCUSD", bid=None, ask=None, last_price=60000.0)
    assert validate_quote(trade, now=NOW).spread is None


def test_last_update_document_has_the_platform_fields_and_both_times():
    fetched = GOOD.fetched(NOW, "paid")
    assert fetched.last_update() == {
        "bid": 1.08,
        "ask": 1.0801,
        "spread": pytest.approx(0.0001),
        "last_price": 1.08005,
        "daily_open": None,
        "daily_high": None,
        "daily_low": None,
        "daily_close": None,
        # the market's time, under the platform's name and its own; when we fetched it beside
        "timestamp": "2026-11-24T11:59:55.000000Z",
        "data_time": "2026-11-24T11:59:55.000000Z",
        "fetched_at": "2026-11-24T12:00:00.000000Z",
        "source": "polygon:test",
        "provider": "polygon",
        "plan": "paid",
        "timeframe": "REAL-TIME",
    }
    assert iso_utc(NOW) == "2026-11-24T12:00:00.000000Z"


def test_the_same_data_time_and_price_is_the_same_price_whenever_it_was_fetched():
    again = GOOD.fetched(NOW + dt.timedelta(minutes=5), "paid")
    assert again.same_price(GOOD.fetched(NOW, "paid"))
    assert not dataclasses.replace(again, last_price=1.081).same_price(GOOD)
    assert not dataclasses.replace(again, data_time=NOW).same_price(GOOD)
    assert not GOOD.same_price(None)


def test_a_spread_is_rounded_to_the_symbols_precision():
    # 1.08037 - 1.08001 is 0.00035999999999991594 in binary floating point
    quote = dataclasses.replace(GOOD, bid=1.08001, ask=1.08037)
    assert quote.spread != 0.00036
    assert quote.for_symbol("EURUSD", 5).spread == 0.00036


def test_a_price_dated_ahead_of_its_fetch_is_dated_at_its_fetch():
    """A vendor's clock ahead of ours (within the accepted skew) must not make its price look
    newer than it was fetched, nor make the honest prices after it look older and be refused."""
    import datetime as dt

    from assets_pipeline.rules.quotes import Quote

    fetched = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    ahead = Quote(ticker="XBTUSD", data_time=fetched + dt.timedelta(seconds=55), source="kraken:x")
    assert ahead.fetched(fetched).data_time == fetched
    behind = Quote(ticker="XBTUSD", data_time=fetched - dt.timedelta(seconds=5), source="kraken:x")
    assert behind.fetched(fetched).data_time == fetched - dt.timedelta(seconds=5)
