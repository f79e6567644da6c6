"""The Polygon simulator speaks the recorded wire format, over real HTTP.

Every shape is checked against the recorded bodies in `data/polygon/responses/` beside these tests
(real or vendor-published), so a client that passes against the simulator has met the same
envelopes, field names, units and error bodies it will meet in production. The clock is frozen on
a Wednesday so prices, bars and budget windows are reproducible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline.simulator import Fault, PolygonSimulator, SimulatorRequest, market
from assets_pipeline_tests.conftest import REPO as REPO_ROOT
from assets_pipeline_tests.conftest import RESPONSES

#: Wednesday 2024-05-29 12:00:00 UTC: forex and crypto trade, mid-day bars exist.
WEDNESDAY_NOON = 1_716_984_000.0
KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

FOREX_ONE = "/v2/snapshot/locale/global/markets/forex/tickers/{}"
CRYPTO_ONE = "/v2/snapshot/locale/global/markets/crypto/tickers/{}"
FOREX_MANY = "/v2/snapshot/locale/global/markets/forex/tickers"
CRYPTO_MANY = "/v2/snapshot/locale/global/markets/crypto/tickers"


class FrozenClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = WEDNESDAY_NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recorded(name: str) -> Any:
    return json.loads((RESPONSES / name).read_text())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sim(clock: FrozenClock) -> Iterator[PolygonSimulator]:
    with PolygonSimulator(api_keys={KEY}, clock=clock) as simulator:
        yield simulator


def get(sim: PolygonSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(sim.url + path, params=params or None, headers=AUTH, timeout=5)


# --- market ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticker", "level"),
    [
        ("C:XAUUSD", 2400),
        ("C:XAGUSD", 30),
        ("C:EURUSD", 1.08),
        ("C:GBPUSD", 1.27),
        ("C:USDJPY", 150),
        ("C:AUDUSD", 0.66),
        ("C:USDCAD", 1.36),
        ("X:BTCUSD", 60000),
        ("X:ETHUSD", 3000),
        ("I:SPX", 5500),
    ],
)
def test_prices_sit_within_half_a_percent_of_plausible_levels(ticker: str, level: float) -> None:
    for offset in range(0, 7 * 86_400, 3_607):
        assert abs(market.price(ticker, WEDNESDAY_NOON + offset) / level - 1) < 0.005


def test_prices_are_deterministic_and_move_over_time() -> None:
    assert market.price("C:EURUSD", WEDNESDAY_NOON) == market.price("C:EURUSD", WEDNESDAY_NOON)
    assert market.price("C:EURUSD", WEDNESDAY_NOON) != market.price("C:EURUSD", WEDNESDAY_NOON + 60)


@pytest.mark.parametrize(
    ("ticker", "known"),
    [
        ("C:XAUUSD", True),
        ("C:XAGCAD", True),
        ("C:USDCHF", True),
        ("X:DOGEUSD", True),
        ("I:VIX", True),
        # Like the real API: no USDT-quoted pair is documented.
        ("X:ETHUSDT", False),
        ("C:USDUSD", False),
        ("C:USDXYZ", False),
        ("X:BTCEUR", False),
        ("I:FTSE", False),
        ("AAPL", False),
    ],
)
def test_catalogue_knows_only_documented_tickers(ticker: str, known: bool) -> None:
    assert market.is_known(ticker) is known


@pytest.mark.parametrize("ticker", ["C:EURUSD", "C:USDJPY", "C:XAUUSD", "C:NZDJPY", "X:DOGEUSD"])
def test_quotes_have_a_positive_spread_of_at_least_a_tick(ticker: str) -> None:
    tick = market.instrument(ticker).tick  # type: ignore[union-attr]
    for offset in range(0, 86_400, 997):
        quote = market.quote(ticker, WEDNESDAY_NOON + offset)
        assert quote.ask - quote.bid >= tick * 0.999
        assert quote.bid <= quote.mid <= quote.ask
        assert (quote.ask - quote.bid) / quote.mid < 3e-4


def test_day_bar_is_consistent_and_closes_at_the_current_price() -> None:
    for offset in (1, 3_600, 40_000):
        now = WEDNESDAY_NOON + offset
        day = market.day_bar("C:XAUUSD", now)
        assert day.low <= min(day.open, day.close) <= max(day.open, day.close) <= day.high
        assert day.close == market.price("C:XAUUSD", now)


def test_market_hours_freeze_forex_over_the_weekend() -> None:
    saturday = WEDNESDAY_NOON + 3 * 86_400
    # Friday 2024-05-31 17:00 New York (EDT, UTC-4) is 21:00 UTC
    friday_fx_close = WEDNESDAY_NOON + 2 * 86_400 + 9 * 3_600
    assert not market.is_open("C:EURUSD", saturday, market_hours=True)
    assert market.is_open("X:BTCUSD", saturday, market_hours=True)
    assert market.last_tick_time("C:EURUSD", saturday, market_hours=True) == friday_fx_close
    assert market.is_open("C:EURUSD", saturday, market_hours=False)
    # Indices: the last session is Friday's, closed at 20:00 UTC; the day before it with a session
    # is Thursday.
    friday_index_close = market.last_tick_time("I:SPX", saturday, market_hours=True)
    assert friday_index_close == WEDNESDAY_NOON + 2 * 86_400 + 8 * 3_600
    thursday = market.previous_day_bar("I:SPX", friday_index_close, market_hours=True)
    assert thursday.start == WEDNESDAY_NOON + 43_200


def epoch(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


# Simulated forex trades Sunday 17:00 to Friday 17:00 New York; in 2026 US summer time starts
# Sunday 03-08 and ends Sunday 11-01. While closed, the price is frozen at the Friday close.
@pytest.mark.parametrize(
    ("at", "last_tick"),
    [
        # summer time starts
        (epoch(2026, 3, 6, 21, 59), epoch(2026, 3, 6, 21, 59)),  # Friday 16:59 EST: trading
        (epoch(2026, 3, 7, 12, 0), epoch(2026, 3, 6, 22, 0)),  # Saturday: Friday 17:00 EST
        (epoch(2026, 3, 8, 20, 30), epoch(2026, 3, 6, 22, 0)),  # Sunday 16:30 EDT: not yet
        (epoch(2026, 3, 8, 21, 0), epoch(2026, 3, 8, 21, 0)),  # Sunday 17:00 EDT: open
        (epoch(2026, 3, 13, 21, 30), epoch(2026, 3, 13, 21, 0)),  # Friday 17:30 EDT: closed
        # summer time ends
        (epoch(2026, 10, 30, 20, 59), epoch(2026, 10, 30, 20, 59)),  # Friday 16:59 EDT: trading
        (epoch(2026, 10, 31, 12, 0), epoch(2026, 10, 30, 21, 0)),  # Saturday: Friday 17:00 EDT
        (epoch(2026, 11, 1, 21, 30), epoch(2026, 10, 30, 21, 0)),  # Sunday 16:30 EST: not yet
        (epoch(2026, 11, 1, 22, 0), epoch(2026, 11, 1, 22, 0)),  # Sunday 17:00 EST: open
    ],
)
def test_simulated_forex_follows_new_york_time(at: float, last_tick: float) -> None:
    assert market.is_open("C:XAUUSD", at, market_hours=True) is (last_tick == at)
    assert market.last_tick_time("C:XAUUSD", at, market_hours=True) == last_tick


def test_simulated_forex_hours_agree_with_the_pipelines() -> None:
    """Every quarter hour of the two weeks around each 2026 clock change, the simulator and the
    pipeline's default market hours agree on whether forex trades."""
    hours = MarketHours()
    for monday in (epoch(2026, 3, 2), epoch(2026, 10, 26)):
        for quarter in range(14 * 24 * 4):
            t = monday + quarter * 900
            expected = hours.is_open(AssetType.FOREX, dt.datetime.fromtimestamp(t, dt.UTC))
            assert market.is_open("C:EURUSD", t, market_hours=True) is expected, t


# --- auth ------------------------------------------------------------------------------------


def test_missing_key_answers_401_with_the_recorded_body(sim: PolygonSimulator) -> None:
    response = requests.get(sim.url + FOREX_ONE.format("C:EURUSD"), timeout=5)
    expected = recorded("error_401_missing_key.json")
    body = response.json()
    assert response.status_code == 401
    assert body.keys() == expected.keys()
    assert body["status"] == "ERROR" and body["error"] == expected["error"]
    assert len(body["request_id"]) == 32 and body["request_id"] != expected["request_id"]


def test_unknown_key_answers_401_unknown_api_key(sim: PolygonSimulator) -> None:
    response = requests.get(
        sim.url + FOREX_ONE.format("C:EURUSD"),
        headers={"Authorization": "Bearer wrong"},
        timeout=5,
    )
    expected = recorded("error_401_unknown_key.json")
    assert response.status_code == 401
    assert {k: v for k, v in response.json().items() if k != "request_id"} == {
        k: v for k, v in expected.items() if k != "request_id"
    }


def test_key_is_accepted_in_the_header_or_the_query(sim: PolygonSimulator) -> None:
    path = FOREX_ONE.format("C:EURUSD")
    assert get(sim, path).status_code == 200
    by_query = requests.get(sim.url + path, params={"apiKey": KEY}, timeout=5)
    assert by_query.status_code == 200


def test_any_non_empty_key_is_accepted_when_no_keys_are_configured(clock: FrozenClock) -> None:
    with PolygonSimulator(clock=clock) as open_sim:
        path = open_sim.url + FOREX_ONE.format("C:EURUSD")
        assert requests.get(path, headers={"Authorization": "Bearer x"}, timeout=5).ok
        assert requests.get(path, params={"apiKey": ""}, timeout=5).status_code == 401


# --- v2 snapshots ----------------------------------------------------------------------------


def assert_same_keys(ours: dict[str, Any], theirs: dict[str, Any], *nested: str) -> None:
    assert ours.keys() == theirs.keys()
    for name in nested:
        assert ours[name].keys() == theirs[name].keys(), name


def test_forex_snapshot_matches_the_recorded_shape_and_units(sim: PolygonSimulator) -> None:
    response = get(sim, FOREX_ONE.format("C:EURUSD"))
    expected = recorded("v2_forex_ticker_C_EURUSD.json")
    body = response.json()
    assert response.headers["Content-Type"] == "application/json"
    assert_same_keys(body, expected)
    assert_same_keys(body["ticker"], expected["ticker"], "day", "lastQuote", "min", "prevDay")
    snap = body["ticker"]
    now_ms = int(WEDNESDAY_NOON * 1000)
    # `updated` in nanoseconds, as in real recordings; quote and minute times in milliseconds.
    assert snap["updated"] == now_ms * 1_000_000
    assert snap["lastQuote"]["t"] == now_ms
    assert snap["min"]["t"] == now_ms - now_ms % 60_000
    assert snap["lastQuote"]["b"] < snap["lastQuote"]["a"]
    assert snap["lastQuote"]["x"] == 48 and snap["lastQuote"]["i"] == 0
    day = snap["day"]
    assert day["l"] <= min(day["o"], day["c"]) and max(day["o"], day["c"]) <= day["h"]
    assert snap["todaysChange"] == pytest.approx(day["c"] - snap["prevDay"]["c"], abs=1e-9)


def test_crypto_snapshot_matches_the_recorded_shape_and_units(sim: PolygonSimulator) -> None:
    body = get(sim, CRYPTO_ONE.format("X:BTCUSD")).json()
    expected = recorded("v2_crypto_ticker_X_BTCUSD.json")
    assert_same_keys(body, expected)
    assert_same_keys(body["ticker"], expected["ticker"], "day", "lastTrade", "min", "prevDay")
    trade = body["ticker"]["lastTrade"]
    assert isinstance(trade["i"], str)
    assert trade["t"] == int(WEDNESDAY_NOON * 1000)
    assert body["ticker"]["updated"] == int(WEDNESDAY_NOON * 1000) * 1_000_000
    assert "lastQuote" not in body["ticker"]


def test_multi_forex_snapshot_matches_the_production_recording(sim: PolygonSimulator) -> None:
    body = get(sim, FOREX_MANY, tickers="C:XAGCAD,C:NOPE,X:BTCUSD,C:EURUSD").json()
    expected = recorded("v2_forex_tickers_recorded.json")
    assert body.keys() == expected.keys()
    # Unknown tickers and tickers of another market are left out.
    assert [t["ticker"] for t in body["tickers"]] == ["C:XAGCAD", "C:EURUSD"]
    for item in body["tickers"]:
        assert_same_keys(item, expected["tickers"][0], "day", "lastQuote", "min", "prevDay")
        assert item["updated"] > 10**18


def test_multi_snapshot_with_no_filter_returns_a_handful_of_its_market(
    sim: PolygonSimulator,
) -> None:
    forex = [t["ticker"] for t in get(sim, FOREX_MANY).json()["tickers"]]
    crypto = [t["ticker"] for t in get(sim, CRYPTO_MANY, tickers="").json()["tickers"]]
    assert "C:XAUUSD" in forex and all(t.startswith("C:") for t in forex)
    assert "X:BTCUSD" in crypto and all(t.startswith("X:") for t in crypto)


@pytest.mark.parametrize(
    "path",
    [
        FOREX_ONE.format("C:NOPE"),
        FOREX_ONE.format("X:BTCUSD"),
        CRYPTO_ONE.format("X:ETHUSDT"),
        "/v1/last_quote/currencies/USD/XYZ",
        "/v1/last/crypto/ETH/USDT",
    ],
)
def test_unknown_ticker_answers_404_ticker_not_found(sim: PolygonSimulator, path: str) -> None:
    response = get(sim, path)
    expected = recorded("error_404_ticker_not_found.json")
    assert response.status_code == 404
    body = response.json()
    assert body.keys() == expected.keys() and body["message"] == expected["message"]


def test_unknown_path_answers_404_not_found(sim: PolygonSimulator) -> None:
    response = get(sim, "/v9/nothing/here")
    assert response.status_code == 404
    assert response.json()["status"] == "NOT_FOUND" and response.json()["message"]


# --- v3 snapshots ----------------------------------------------------------------------------


def test_v3_snapshot_items_match_the_recorded_shapes(sim: PolygonSimulator) -> None:
    body = get(sim, "/v3/snapshot", **{"ticker.any_of": "C:USDCAD,X:BTCUSD,TSLAAPL"}).json()
    expected = recorded("v3_snapshot_mixed.json")
    assert body.keys() == expected.keys()
    fx, crypto, missing = body["results"]
    assert_same_keys(fx, expected["results"][0], "session", "last_quote")
    assert_same_keys(crypto, expected["results"][1], "session", "last_trade")
    assert missing == expected["results"][2]
    assert fx["type"] == "fx" and crypto["type"] == "crypto"
    assert fx["last_quote"]["last_updated"] == int(WEDNESDAY_NOON * 1000) * 1_000_000
    assert crypto["last_trade"]["participant_timestamp"] == int(WEDNESDAY_NOON * 1e3) * 10**6
    assert isinstance(crypto["last_trade"]["id"], str)
    assert fx["last_quote"]["bid"] < fx["last_quote"]["ask"]


def test_v3_index_items_carry_value_and_nanosecond_last_updated(sim: PolygonSimulator) -> None:
    for path in ("/v3/snapshot", "/v3/snapshot/indices"):
        body = get(sim, path, **{"ticker.any_of": "I:SPX,C:EURUSD"}).json()
        index = body["results"][0]
        assert index["type"] == "indices" and index["ticker"] == "I:SPX"
        assert abs(index["value"] / 5500 - 1) < 0.005
        assert index["last_updated"] == int(WEDNESDAY_NOON * 1000) * 1_000_000
        assert {"session", "market_status", "name"} <= index.keys()
    # The indices endpoint knows only indices.
    assert body["results"][1]["error"] == "NOT_FOUND"


def test_v3_snapshot_pages_by_limit_through_next_url(sim: PolygonSimulator) -> None:
    wanted = ["C:EURUSD", "C:GBPUSD", "X:BTCUSD", "I:SPX", "C:XAUUSD"]
    response = get(sim, "/v3/snapshot", **{"ticker.any_of": ",".join(wanted), "limit": 2})
    pages = [response.json()]
    while "next_url" in pages[-1]:
        next_url = urlsplit(pages[-1]["next_url"])
        # The real API names its own host; only path and query are meant to be followed.
        assert next_url.netloc == "api.polygon.io"
        assert "cursor=" in next_url.query and KEY not in pages[-1]["next_url"]
        pages.append(get(sim, f"{next_url.path}?{next_url.query}").json())
    assert [len(page["results"]) for page in pages] == [2, 2, 1]
    assert [item["ticker"] for page in pages for item in page["results"]] == wanted
    assert len(sim.requests) == 3


def test_v3_snapshot_defaults_to_ten_per_page(sim: PolygonSimulator) -> None:
    body = get(sim, "/v3/snapshot").json()
    assert len(body["results"]) == 10 and "next_url" in body


def test_page_size_cap_shrinks_pages_below_the_requested_limit(clock: FrozenClock) -> None:
    with PolygonSimulator(clock=clock, page_size_cap=1) as small:
        body = get(small, "/v3/snapshot", **{"ticker.any_of": "I:SPX,I:NDX", "limit": 250}).json()
        assert len(body["results"]) == 1 and "next_url" in body


@pytest.mark.parametrize(
    "params",
    [
        {"ticker.any_of": ",".join(f"C:X{i:05d}" for i in range(251))},
        {"ticker.any_of": "I:SPX", "limit": 251},
        {"ticker.any_of": "I:SPX", "limit": "ten"},
        {"cursor": "not-a-cursor!"},
    ],
)
def test_v3_snapshot_rejects_bad_parameters_with_400(
    sim: PolygonSimulator, params: dict[str, Any]
) -> None:
    response = get(sim, "/v3/snapshot", **params)
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR" and response.json()["error"]


# --- v1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fixture", "symbol"),
    [
        ("/v1/last_quote/currencies/AUD/USD", "v1_last_quote_currencies_AUD_USD.json", "AUD/USD"),
        ("/v1/last/crypto/BTC/USD", "v1_last_crypto_BTC_USD.json", "BTC-USD"),
    ],
)
def test_v1_last_endpoints_match_the_recorded_shape(
    sim: PolygonSimulator, path: str, fixture: str, symbol: str
) -> None:
    body = get(sim, path).json()
    expected = recorded(fixture)
    assert_same_keys(body, expected, "last")
    assert body["status"] == "success" and body["symbol"] == symbol
    assert body["last"]["timestamp"] == int(WEDNESDAY_NOON * 1000)


# --- aggregates ------------------------------------------------------------------------------


def test_day_bars_match_the_recorded_shape(sim: PolygonSimulator) -> None:
    body = get(sim, "/v2/aggs/ticker/C:EURUSD/range/1/day/2024-05-20/2024-05-24").json()
    expected = recorded("v2_aggs_paginated_first_page.json")
    assert body.keys() == expected.keys() - {"next_url"}
    assert [bar.keys() for bar in body["results"]] == [expected["results"][0].keys()] * 5
    assert body["results"][0]["t"] == 1_716_163_200_000  # 2024-05-20 00:00 UTC, in ms
    assert body["resultsCount"] == body["count"] == 5 and body["adjusted"] is True


def test_an_empty_range_answers_200_without_a_results_key(sim: PolygonSimulator) -> None:
    body = get(sim, "/v2/aggs/ticker/C:EURUSD/range/1/day/2030-01-01/2030-01-05").json()
    assert body.keys() == recorded("v2_aggs_empty.json").keys()
    assert body["resultsCount"] == 0


def test_unknown_ticker_bars_answer_200_with_no_results(sim: PolygonSimulator) -> None:
    response = get(sim, "/v2/aggs/ticker/X:ETHUSDT/range/1/day/2024-05-20/2024-05-24")
    assert response.status_code == 200
    assert "results" not in response.json() and response.json()["resultsCount"] == 0


def test_bars_stop_at_the_window_in_progress(sim: PolygonSimulator) -> None:
    now_ms = int(WEDNESDAY_NOON * 1000)
    body = get(
        sim, f"/v2/aggs/ticker/X:BTCUSD/range/1/minute/{now_ms - 180_000}/{now_ms + 600_000}"
    ).json()
    starts = [bar["t"] for bar in body["results"]]
    assert starts == [now_ms - 180_000, now_ms - 120_000, now_ms - 60_000]


@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_bars_page_through_next_url_in_either_order(sim: PolygonSimulator, sort: str) -> None:
    start_ms = int(WEDNESDAY_NOON * 1000) - 3_600_000
    path = f"/v2/aggs/ticker/C:EURUSD/range/5/minute/{start_ms}/{start_ms + 1_799_999}"
    pages = [get(sim, path, limit=2, sort=sort).json()]
    while "next_url" in pages[-1]:
        next_url = urlsplit(pages[-1]["next_url"])
        assert next_url.netloc == "api.polygon.io"
        pages.append(get(sim, f"{next_url.path}?{next_url.query}").json())
    starts = [bar["t"] for page in pages for bar in page["results"]]
    expected = [start_ms + k * 300_000 for k in range(6)]
    assert starts == (expected if sort == "asc" else expected[::-1])
    assert [page["count"] for page in pages] == [2, 2, 2]


def test_previous_day_bar_is_yesterday_utc(sim: PolygonSimulator) -> None:
    body = get(sim, "/v2/aggs/ticker/C:XAUUSD/prev").json()
    (bar,) = body["results"]
    # `t` as the vendor's examples put it on this endpoint: the day's last millisecond
    assert bar["t"] == int(WEDNESDAY_NOON - 43_200) * 1000 - 1
    assert bar["l"] <= min(bar["o"], bar["c"]) and max(bar["o"], bar["c"]) <= bar["h"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/aggs/ticker/C:EURUSD/range/1/fortnight/2024-05-20/2024-05-24",
        "/v2/aggs/ticker/C:EURUSD/range/0/day/2024-05-20/2024-05-24",
        "/v2/aggs/ticker/C:EURUSD/range/1/day/yesterday/2024-05-24",
        "/v2/aggs/ticker/C:EURUSD/range/1/day/2024-05-20/2024-05-24?limit=50001",
    ],
)
def test_bad_bar_parameters_answer_400(sim: PolygonSimulator, path: str) -> None:
    response = get(sim, path)
    assert response.status_code == 400 and response.json()["status"] == "ERROR"


# --- budget and plan -------------------------------------------------------------------------


def test_budget_answers_429_with_the_exact_recorded_text_and_counts_rejections(
    clock: FrozenClock,
) -> None:
    expected = recorded("error_429_rate_limited.json")
    with PolygonSimulator(clock=clock, rate_limit_calls=2, rate_limit_window=60) as limited:
        path = FOREX_ONE.format("C:EURUSD")

        def status_at(offset: float) -> int:
            clock.now = WEDNESDAY_NOON + offset
            return get(limited, path).status_code

        assert [status_at(0), status_at(0)] == [200, 200]
        clock.now = WEDNESDAY_NOON + 30
        response = get(limited, path)
        assert response.status_code == 429
        assert response.json()["error"] == expected["error"]
        assert response.json().keys() == expected.keys()
        assert not {"Retry-After", "X-RateLimit-Remaining"} & set(response.headers)
        assert status_at(40) == 429
        # Rejected requests count too, as on the real API: 30, 40 and 61 are within a minute.
        assert status_at(61) == 429
        assert status_at(101) == 200
        assert [r.status for r in limited.requests] == [200, 200, 429, 429, 429, 200]


def test_budget_is_kept_per_key(clock: FrozenClock) -> None:
    with PolygonSimulator(clock=clock, rate_limit_calls=1) as limited:
        path = limited.url + FOREX_ONE.format("C:EURUSD")
        for key in ("one", "two"):
            assert requests.get(path, headers={"Authorization": f"Bearer {key}"}).ok


def assert_refused(response: requests.Response, message: str) -> None:
    """A 403 with the vendor's NOT_AUTHORIZED body, carrying `message`."""
    expected = recorded("error_403_not_authorized.json")
    assert response.status_code == 403
    assert response.json().keys() == expected.keys()
    assert response.json()["status"] == "NOT_AUTHORIZED"
    assert response.json()["message"] == message


@pytest.mark.parametrize(
    ("path", "params"),
    [
        # the v2 multi-ticker snapshots, filtered and unfiltered
        (FOREX_MANY, {"tickers": "C:EURUSD"}),
        (CRYPTO_MANY, {}),
        # the v3 snapshots, any market and indices only
        ("/v3/snapshot", {"ticker.any_of": "C:EURUSD"}),
        ("/v3/snapshot/indices", {"ticker.any_of": "I:SPX"}),
    ],
)
def test_starter_no_multi_refuses_multi_ticker_endpoints_and_serves_single_ones(
    clock: FrozenClock, path: str, params: dict[str, str]
) -> None:
    with PolygonSimulator(clock=clock, plan="starter_no_multi") as starter:
        assert_refused(
            get(starter, path, **params), recorded("error_403_not_authorized.json")["message"]
        )
        assert get(starter, FOREX_ONE.format("C:EURUSD")).status_code == 200
        assert get(starter, CRYPTO_ONE.format("X:BTCUSD")).status_code == 200
        assert get(starter, "/v1/last_quote/currencies/EUR/USD").status_code == 200


@pytest.mark.parametrize(
    ("path", "params"),
    [
        # v2 single-ticker snapshots, forex and crypto
        (FOREX_ONE.format("C:EURUSD"), {}),
        (CRYPTO_ONE.format("X:BTCUSD"), {}),
        # a ticker the API does not know: still refused, the plan is checked first
        (FOREX_ONE.format("C:NOPE"), {}),
        # v2 multi-ticker snapshots
        (FOREX_MANY, {"tickers": "C:EURUSD"}),
        (CRYPTO_MANY, {}),
        # v3 snapshots
        ("/v3/snapshot", {"ticker.any_of": "C:EURUSD"}),
        ("/v3/snapshot/indices", {"ticker.any_of": "I:SPX"}),
        # v1 last forex quote and last crypto trade
        ("/v1/last_quote/currencies/EUR/USD", {}),
        ("/v1/last/crypto/BTC/USD", {}),
    ],
)
def test_free_plan_refuses_every_snapshot_and_last_endpoint_with_the_vendor_body(
    clock: FrozenClock, path: str, params: dict[str, str]
) -> None:
    with PolygonSimulator(clock=clock, plan="free") as free:
        assert_refused(
            get(free, path, **params), recorded("error_403_not_authorized.json")["message"]
        )


GROUPED = "/v2/aggs/grouped/locale/global/market/{}/{}"
TIMEFRAME_TEXT = (
    "Your plan doesn't include this data timeframe. Please upgrade your plan at "
    "https://polygon.io/pricing"
)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        # grouped daily for yesterday (the clock is Wednesday 2024-05-29 noon), both markets
        (GROUPED.format("fx", "2024-05-28"), "OK"),
        (GROUPED.format("crypto", "2024-05-28"), "OK"),
        # day bars of last week: end-of-day data, DELAYED as in the recorded page
        ("/v2/aggs/ticker/C:EURUSD/range/1/day/2024-05-20/2024-05-24", "DELAYED"),
        # hour bars of yesterday, in ms
        ("/v2/aggs/ticker/X:BTCUSD/range/1/hour/1716854400000/1716940799999", "DELAYED"),
        # two years back to the day is still covered
        ("/v2/aggs/ticker/C:EURUSD/range/1/day/2022-05-29/2022-05-31", "DELAYED"),
        # the previous day's bar
        ("/v2/aggs/ticker/C:XAUUSD/prev", "OK"),
    ],
)
def test_free_plan_serves_past_aggregates(clock: FrozenClock, path: str, status: str) -> None:
    with PolygonSimulator(clock=clock, plan="free") as free:
        response = get(free, path)
    assert response.status_code == 200
    assert response.json()["status"] == status and response.json()["results"]


@pytest.mark.parametrize(
    "path",
    [
        # grouped daily for today, and for tomorrow
        GROUPED.format("fx", "2024-05-29"),
        GROUPED.format("crypto", "2024-05-30"),
        # a range ending today, as a date and as this very millisecond
        "/v2/aggs/ticker/C:EURUSD/range/1/day/2024-05-20/2024-05-29",
        f"/v2/aggs/ticker/X:BTCUSD/range/1/minute/1716940800000/{int(WEDNESDAY_NOON * 1000)}",
        # a range in the future
        "/v2/aggs/ticker/C:EURUSD/range/1/day/2030-01-01/2030-01-05",
        # a range starting one day more than two years back, and grouped daily that far back
        "/v2/aggs/ticker/C:EURUSD/range/1/day/2022-05-28/2022-05-31",
        GROUPED.format("fx", "2022-05-28"),
    ],
)
def test_free_plan_refuses_today_the_future_and_old_history(clock: FrozenClock, path: str) -> None:
    with PolygonSimulator(clock=clock, plan="free") as free:
        assert_refused(get(free, path), TIMEFRAME_TEXT)


def test_free_plan_range_pages_through_next_url(clock: FrozenClock) -> None:
    with PolygonSimulator(clock=clock, plan="free") as free:
        pages = [get(free, "/v2/aggs/ticker/X:BTCUSD/range/1/day/2024-05-20/2024-05-24", limit=2)]
        while "next_url" in pages[-1].json():
            next_url = urlsplit(pages[-1].json()["next_url"])
            pages.append(get(free, f"{next_url.path}?{next_url.query}"))
    assert [page.json()["status"] for page in pages] == ["DELAYED"] * 3
    assert sum(len(page.json()["results"]) for page in pages) == 5


def test_grouped_daily_lists_every_pair_of_its_market_in_the_aggs_shape(
    sim: PolygonSimulator,
) -> None:
    fx = get(sim, GROUPED.format("fx", "2024-05-28")).json()
    crypto = get(sim, GROUPED.format("crypto", "2024-05-28")).json()
    bar_keys = recorded("v2_aggs_C_EURUSD_day.json")["results"][0].keys()
    for body, count in ((fx, 90), (crypto, 6)):
        assert body.keys() == {
            "adjusted",
            "queryCount",
            "request_id",
            "results",
            "resultsCount",
            "status",
        }
        assert body["resultsCount"] == body["queryCount"] == len(body["results"]) == count
        for result in body["results"]:
            assert result.keys() == bar_keys | {"T"}
            # the day's last millisecond, as in the vendor's forex grouped-daily example
            assert result["t"] == 1_716_940_799_999  # 2024-05-28 23:59:59.999 UTC, in ms
    assert {"C:EURUSD", "C:XAUUSD", "C:XAGCAD"} <= {r["T"] for r in fx["results"]}
    assert {r["T"] for r in crypto["results"]} == set(market.default_tickers("crypto"))


@pytest.mark.parametrize(
    ("market_name", "day", "tickers"),
    [
        # forex is shut all of Saturday (UTC): no bars, and no `results` key, as recorded
        ("fx", "2024-06-01", 0),
        # forex traded Friday until 21:00 UTC
        ("fx", "2024-05-31", 90),
        # crypto trades every day
        ("crypto", "2024-06-01", 6),
    ],
)
def test_grouped_daily_lists_only_pairs_that_traded_with_market_hours_on(
    market_name: str, day: str, tickers: int
) -> None:
    monday_noon = FrozenClock(WEDNESDAY_NOON + 5 * 86_400)
    with PolygonSimulator(clock=monday_noon, plan="free", market_hours=True) as free:
        response = get(free, GROUPED.format(market_name, day))
    assert response.status_code == 200
    assert response.json()["resultsCount"] == len(response.json().get("results", [])) == tickers
    if not tickers:
        assert response.json().keys() == recorded("v2_aggs_empty.json").keys() - {"ticker"}


@pytest.mark.parametrize(
    ("now", "market_hours", "ticker", "day"),
    [
        # Wednesday: yesterday is the previous trading day, forex and crypto
        (WEDNESDAY_NOON, False, "C:EURUSD", "2024-05-28"),
        (WEDNESDAY_NOON, False, "X:BTCUSD", "2024-05-28"),
        # Saturday with market hours on: forex's previous trading day is Friday (it closed at
        # 21:00 UTC), crypto's is Friday too
        (WEDNESDAY_NOON + 3 * 86_400, True, "C:XAUUSD", "2024-05-31"),
        (WEDNESDAY_NOON + 3 * 86_400, True, "X:ETHUSD", "2024-05-31"),
        # Sunday noon, market hours on: forex has not reopened, Saturday did not trade: Friday
        (WEDNESDAY_NOON + 4 * 86_400, True, "C:GBPUSD", "2024-05-31"),
    ],
)
def test_grouped_daily_agrees_with_range_and_prev(
    now: float, market_hours: bool, ticker: str, day: str
) -> None:
    market_name = "fx" if ticker.startswith("C:") else "crypto"
    with PolygonSimulator(clock=FrozenClock(now), plan="free", market_hours=market_hours) as free:
        grouped = get(free, GROUPED.format(market_name, day)).json()["results"]
        (ranged,) = get(free, f"/v2/aggs/ticker/{ticker}/range/1/day/{day}/{day}").json()["results"]
        (prev,) = get(free, f"/v2/aggs/ticker/{ticker}/prev").json()["results"]
    (from_grouped,) = [r for r in grouped if r["T"] == ticker]
    # the same bar, but `t` is not the same instant: a range bar's is the window's start, the
    # grouped and prev bars' the day's last millisecond (the vendor's own examples)
    last_ms = ranged["t"] + 86_400_000 - 1
    assert from_grouped == prev == {"T": ticker, **ranged, "t": last_ms}
    # and the day's close is the simulator's live price at the day's end (frozen while shut)
    day_end = epoch(*map(int, day.split("-"))) + 86_400
    assert ranged["c"] == market.price_at(ticker, day_end, market_hours)


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("http_500", 500, "application/json"),
        ("http_502", 502, "text/html"),
        ("http_503", 503, "text/html"),
        ("forbidden", 403, "application/json"),
        ("rate_limited", 429, "application/json"),
        ("malformed", 200, "application/json"),
    ],
)
def test_request_faults_replace_the_answer_for_count_requests(
    sim: PolygonSimulator, kind: str, status: int, content_type: str
) -> None:
    sim.add_fault(Fault(kind, ticker="C:EURUSD", count=1))
    path = FOREX_ONE.format("C:EURUSD")
    assert get(sim, FOREX_ONE.format("C:GBPUSD")).status_code == 200  # another ticker: untouched
    faulted = get(sim, path)
    assert (faulted.status_code, faulted.headers["Content-Type"]) == (status, content_type)
    if kind == "malformed" or content_type == "text/html":
        with pytest.raises(ValueError):
            json.loads(faulted.text)
    elif kind == "rate_limited":
        assert faulted.json()["error"] == recorded("error_429_rate_limited.json")["error"]
    elif kind == "forbidden":
        assert faulted.json()["status"] == "NOT_AUTHORIZED"
    else:
        assert faulted.json()["error"] == "Internal Server Error"
    assert get(sim, path).status_code == 200  # count=1: spent
    assert sim.faults == []


def test_timeout_fault_delays_the_answer_past_a_client_read_timeout(sim: PolygonSimulator) -> None:
    sim.add_fault(Fault("timeout", count=1, delay=0.5))
    path = sim.url + FOREX_ONE.format("C:EURUSD")
    with pytest.raises(requests.ReadTimeout):
        requests.get(path, headers=AUTH, timeout=(1, 0.1))
    assert requests.get(path, headers=AUTH, timeout=1).status_code == 200


def test_crossed_fault_puts_bid_above_ask_in_v2_v3_and_v1(sim: PolygonSimulator) -> None:
    sim.add_fault(Fault("crossed", ticker="C:EURUSD"))
    quote = get(sim, FOREX_ONE.format("C:EURUSD")).json()["ticker"]["lastQuote"]
    assert quote["b"] > quote["a"]
    results = get(sim, "/v3/snapshot", **{"ticker.any_of": "C:EURUSD,C:GBPUSD"}).json()["results"]
    assert results[0]["last_quote"]["bid"] > results[0]["last_quote"]["ask"]
    # Only the faulted item is touched in a multi-ticker answer.
    assert results[1]["last_quote"]["bid"] < results[1]["last_quote"]["ask"]
    last = get(sim, "/v1/last_quote/currencies/EUR/USD").json()["last"]
    assert last["bid"] > last["ask"]


def test_negative_price_fault_sends_a_negative_price(sim: PolygonSimulator) -> None:
    sim.add_fault(Fault("negative_price", ticker="X:BTCUSD"))
    sim.add_fault(Fault("negative_price", ticker="C:EURUSD"))
    assert get(sim, CRYPTO_ONE.format("X:BTCUSD")).json()["ticker"]["lastTrade"]["p"] == -1.0
    assert get(sim, FOREX_ONE.format("C:EURUSD")).json()["ticker"]["lastQuote"]["b"] == -1.0
    results = get(sim, "/v3/snapshot", **{"ticker.any_of": "X:BTCUSD,C:EURUSD"}).json()["results"]
    assert results[0]["last_trade"]["price"] == -1.0
    assert results[1]["last_quote"]["bid"] == -1.0


def test_future_fault_stamps_the_quote_an_hour_ahead(sim: PolygonSimulator) -> None:
    sim.add_fault(Fault("future", ticker="C:EURUSD"))
    now_ms = int(WEDNESDAY_NOON * 1000)
    snap = get(sim, FOREX_ONE.format("C:EURUSD")).json()["ticker"]
    assert snap["lastQuote"]["t"] == now_ms + 3_600_000
    assert snap["updated"] == (now_ms + 3_600_000) * 1_000_000
    item = get(sim, "/v3/snapshot", **{"ticker.any_of": "C:EURUSD"}).json()["results"][0]
    assert item["last_quote"]["last_updated"] == (now_ms + 3_600_000) * 1_000_000


def test_unknown_fault_makes_a_known_ticker_unknown_everywhere(sim: PolygonSimulator) -> None:
    sim.add_fault(Fault("unknown", ticker="C:XAUUSD"))
    assert get(sim, FOREX_ONE.format("C:XAUUSD")).status_code == 404
    results = get(sim, "/v3/snapshot", **{"ticker.any_of": "C:XAUUSD,C:XAGUSD"}).json()["results"]
    assert results[0] == {
        "error": "NOT_FOUND",
        "message": "Ticker not found.",
        "ticker": "C:XAUUSD",
    }
    assert results[1]["type"] == "fx"
    bars = get(sim, "/v2/aggs/ticker/C:XAUUSD/range/1/day/2024-05-20/2024-05-24").json()
    assert "results" not in bars


def test_forbidden_ticker_fails_a_whole_v3_request(sim: PolygonSimulator) -> None:
    sim.add_fault(Fault("forbidden", ticker="C:XAUUSD"))
    assert get(sim, "/v3/snapshot", **{"ticker.any_of": "C:EURUSD,C:XAUUSD"}).status_code == 403
    assert get(sim, "/v3/snapshot", **{"ticker.any_of": "C:EURUSD"}).status_code == 200


def test_path_prefix_narrows_a_fault(sim: PolygonSimulator) -> None:
    sim.add_fault(Fault("http_503", path_prefix="/v3/"))
    assert get(sim, FOREX_ONE.format("C:EURUSD")).status_code == 200
    assert get(sim, "/v3/snapshot").status_code == 503
    sim.clear_faults()
    assert get(sim, "/v3/snapshot").status_code == 200


def test_faults_are_rejected_when_their_kind_is_unknown() -> None:
    with pytest.raises(ValueError):
        Fault("gremlins")


def test_admin_endpoints_arm_faults_read_the_log_and_reset(sim: PolygonSimulator) -> None:
    armed = requests.post(
        sim.url + "/_sim/faults", json={"kind": "http_500", "count": 2}, timeout=5
    )
    assert armed.ok
    assert get(sim, "/v3/snapshot").status_code == 500
    assert requests.delete(sim.url + "/_sim/faults", timeout=5).ok
    assert get(sim, "/v3/snapshot").status_code == 200
    log = requests.get(sim.url + "/_sim/log", timeout=5).json()
    assert [entry["status"] for entry in log] == [500, 200]
    assert all(not entry["path"].startswith("/_sim") for entry in log)
    bad = requests.post(sim.url + "/_sim/faults", json={"kind": "gremlins"}, timeout=5)
    assert bad.status_code == 400
    assert requests.post(sim.url + "/_sim/reset", timeout=5).ok
    assert sim.requests == []


# --- the request log -------------------------------------------------------------------------


def test_the_log_records_requests_without_the_key(clock: FrozenClock, tmp_path: Path) -> None:
    log_file = tmp_path / "requests.jsonl"
    with PolygonSimulator(clock=clock, log_file=str(log_file)) as logged:
        response = requests.get(
            logged.url + "/v3/snapshot",
            params={"ticker.any_of": "C:EURUSD,C:GBPUSD", "limit": 1, "apiKey": KEY},
            timeout=5,
        )
        get(logged, FOREX_ONE.format("C:EURUSD"))
        entries = logged.requests
        served_log = requests.get(logged.url + "/_sim/log", timeout=5).text
    assert KEY not in response.text
    assert entries[0] == SimulatorRequest(
        at=WEDNESDAY_NOON,
        path="/v3/snapshot",
        query={"ticker.any_of": "C:EURUSD,C:GBPUSD", "limit": "1"},
        key_id=hashlib.sha256(KEY.encode()).hexdigest()[:12],
        status=200,
    )
    assert entries[1].key_id == entries[0].key_id
    written = log_file.read_text()
    assert KEY not in written and KEY not in served_log
    assert [json.loads(line) for line in written.splitlines()] == [e.to_dict() for e in entries]


# --- other clients and processes -------------------------------------------------------------


def test_the_official_massive_client_reads_the_simulator(sim: PolygonSimulator) -> None:
    from massive import RESTClient

    client = RESTClient(api_key=KEY, base=sim.url, retries=0, read_timeout=5)
    wanted = ["C:EURUSD", "X:BTCUSD", "I:SPX", "C:NOPE"]
    snapshots = list(client.list_universal_snapshots(ticker_any_of=wanted, limit=2))
    assert [s.ticker for s in snapshots] == wanted
    assert snapshots[0].last_quote.bid < snapshots[0].last_quote.ask
    assert snapshots[3].error == "NOT_FOUND"
    crypto = client.get_snapshot_ticker("crypto", "X:BTCUSD")
    assert crypto.last_trade.price > 0
    bars = client.get_aggs("C:EURUSD", 1, "day", "2024-05-20", "2024-05-24")
    assert len(bars) == 5 and all(bar.low <= bar.high for bar in bars)
    assert client.get_last_forex_quote("AUD", "USD").last.bid > 0


def test_the_module_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    log_file = tmp_path / "sim.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "assets_pipeline.simulator",
            "--port",
            "0",
            "--keys",
            f"{KEY},other",
            "--log-file",
            str(log_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("polygon simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        response = requests.get(url + FOREX_ONE.format("C:EURUSD"), headers=AUTH, timeout=5)
        assert response.status_code == 200
        assert json.loads(log_file.read_text())["status"] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
