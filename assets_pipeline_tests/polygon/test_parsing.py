"""The parser against every recorded response in `data/polygon/responses/` beside these tests.

Each recorded file has its own expectations below, and a guard test fails if a file is added to
the folder without them, so the parser is always checked against all that is known of the API.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest

from assets_pipeline.http.errors import (
    MalformedResponse,
    NotEntitled,
    PermanentError,
    PolygonError,
    RateLimited,
    TickerNotFound,
)
from assets_pipeline.polygon.bars import latest_bar_quotes
from assets_pipeline.polygon.parsing import (
    SOURCE_GROUPED,
    SOURCE_PREV,
    answers_for,
    epoch_to_utc,
    error_from_response,
    load_json,
    merge_page,
    next_url_path,
    parse_aggs,
    parse_v2_market,
    parse_v2_single,
    parse_v3_snapshot,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.quotes import QuoteRejected, Timeframe, validate_quote
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline_tests.conftest import RESPONSES
from assets_pipeline_tests.polygon_reference import (
    parse_v1_last_crypto,
    parse_v1_last_quote,
)


def recorded(name: str):
    return json.loads((RESPONSES / name).read_text())


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def check_forex_eurusd():
    quote = parse_v2_single(recorded("v2_forex_ticker_C_EURUSD.json"))
    assert (quote.ticker, quote.bid, quote.ask) == ("C:EURUSD", 1.18398, 1.18403)
    assert quote.spread == pytest.approx(0.00005)
    assert quote.last_price == pytest.approx((1.18398 + 1.18403) / 2)
    assert (quote.day_open, quote.day_high, quote.day_low, quote.day_close) == (
        1.18725,
        1.1906,
        1.18001,
        1.18403,
    )
    assert quote.day_volume == 83578
    # lastQuote.t is milliseconds
    assert quote.data_time == epoch_to_utc(1606163759000) == utc(2020, 11, 23, 20, 35, 59)
    validate_quote(quote, now=quote.data_time)  # as when it was recorded


def check_crypto_btcusd():
    quote = parse_v2_single(recorded("v2_crypto_ticker_X_BTCUSD.json"))
    # a crypto snapshot has trades, not quotes: no bid, no ask, no spread, never 0
    assert (quote.bid, quote.ask, quote.spread) == (None, None, None)
    assert quote.last_price == 16242.31
    assert quote.data_time == utc(2020, 11, 13, 19, 3, 50, 780000)
    assert (quote.day_open, quote.day_close, quote.day_volume) == (
        16418.07,
        16260.85,
        105008.84231068,
    )
    validate_quote(quote, now=quote.data_time)  # as when it was recorded


def check_forex_tickers():
    quotes = parse_v2_market(recorded("v2_forex_tickers_recorded.json"))
    quote = quotes["C:XAGCAD"]
    assert (quote.bid, quote.ask) == (28.5, 28.51)
    assert quote.data_time == utc(2022, 1, 10, 21, 21, 7)


def check_v3_mixed():
    results, next_path = parse_v3_snapshot(recorded("v3_snapshot_mixed.json"))
    assert next_path is None
    fx, btc, missing = results["C:USDCAD"], results["X:BTCUSD"], results["TSLAAPL"]
    assert (fx.bid, fx.ask, fx.day_open, fx.day_close) == (1.35185, 1.35191, 1.34667, 1.35178)
    # last_updated is nanoseconds
    assert fx.data_time == utc(2023, 5, 18, 17, 30, 2)
    assert (btc.bid, btc.ask, btc.last_price) == (None, None, 27220)
    assert btc.data_time == utc(2023, 5, 18, 15, 7, 29, 502000)
    # an unknown ticker is an item inside the 200, and fails only itself
    assert isinstance(missing, TickerNotFound) and not missing.retryable
    assert "TSLAAPL" in str(missing)


def check_v1_last_quote():
    quote = parse_v1_last_quote(recorded("v1_last_quote_currencies_AUD_USD.json"))
    assert (quote.ticker, quote.bid, quote.ask) == ("C:AUDUSD", 0.6952, 0.69527)
    assert quote.data_time == utc(2022, 5, 10, 14, 41, 34)


def check_v1_last_crypto():
    quote = parse_v1_last_crypto(recorded("v1_last_crypto_BTC_USD.json"))
    assert (quote.ticker, quote.last_price, quote.bid) == ("X:BTCUSD", 39976.89682331, None)
    assert quote.data_time == utc(2022, 4, 28, 21, 13, 29, 688000)


def check_aggs_day():
    bars, next_path = parse_aggs(recorded("v2_aggs_C_EURUSD_day.json"))
    assert next_path is None
    (bar,) = bars
    assert (bar.open, bar.high, bar.low, bar.close, bar.trades) == (
        1.17921,
        1.18305,
        1.1756,
        1.17721,
        125329,
    )
    assert bar.start == utc(2021, 7, 22)


def check_aggs_empty():
    # an empty range is a 200 without a `results` key
    assert parse_aggs(recorded("v2_aggs_empty.json")) == ([], None)


def check_aggs_paginated():
    bars, next_path = parse_aggs(recorded("v2_aggs_paginated_first_page.json"))
    assert len(bars) == 2
    # the host is dropped: the next page goes to our configured base URL
    assert (
        next_path
        == "/v2/aggs/ticker/AAPL/range/1/day/1112673600000/2005-04-10?cursor=bGltaXQ9MiZzb3J0PWFzYw"
    )


def check_error(name: str, status: int, cls: type, text: str):
    def check():
        error = error_from_response(status, (RESPONSES / name).read_text())
        assert type(error) is cls
        assert error.status == status
        assert text in str(error)

    return check


class _Recorded:
    """Stands in for the client on the day-bar path: each path answered with a recorded body."""

    def __init__(self, bodies: dict[str, object]) -> None:
        self.bodies = bodies
        self.asked: list[str] = []

    def get_json(self, path, params=None, ticker=None):
        self.asked.append(path)
        return self.bodies[path]


def check_grouped_fx_example():
    # Thursday 2020-10-15 09:00Z: the newest published forex bar is Wednesday 2020-10-14's. Every
    # bar's `t` is that day's last millisecond; the price is as of the UTC day's close (forex
    # trades on through midnight), whenever it is fetched, and never t + 1 day.
    path = "/v2/aggs/grouped/locale/global/market/fx/2020-10-14"
    client = _Recorded({path: recorded("v2_aggs_grouped_fx_2020-10-14.json")})
    with clock.frozen_at(utc(2020, 10, 15, 9, 0)):
        answers = latest_bar_quotes(client, {"C:GBPCAD": AssetType.FOREX}, MarketHours())
    assert client.asked == [path]  # one call for the market
    quote = answers["C:GBPCAD"]
    assert quote.data_time == utc(2020, 10, 15, 0, 0)
    assert (quote.timeframe, quote.source) == (Timeframe.END_OF_DAY, SOURCE_GROUPED)
    assert (quote.last_price, quote.day_open, quote.day_high, quote.day_low) == (
        1.71103,
        1.69955,
        1.71642,
        1.69064,
    )
    assert (quote.bid, quote.ask, quote.spread) == (None, None, None)
    validate_quote(quote, now=utc(2020, 10, 15, 9, 0))


def check_prev_stock_example():
    # The official client's mock of a stock's `prev` puts `t` at the US close (20:00Z in April):
    # read as an index's previous day, its price is as of the exchange's close on 2022-04-26.
    path = "/v2/aggs/ticker/AAPL/prev"
    client = _Recorded({path: recorded("v2_aggs_prev_AAPL.json")})
    with clock.frozen_at(utc(2022, 4, 27, 10, 0)):
        answers = latest_bar_quotes(client, {"AAPL": AssetType.INDEX}, MarketHours())
    quote = answers["AAPL"]
    assert quote.data_time == utc(2022, 4, 26, 20, 0)  # 16:00 New York, daylight time
    assert (quote.timeframe, quote.source, quote.last_price) == (
        Timeframe.END_OF_DAY,
        SOURCE_PREV,
        156.8,
    )


CASES = {
    "v2_aggs_grouped_fx_2020-10-14.json": check_grouped_fx_example,
    "v2_aggs_prev_AAPL.json": check_prev_stock_example,
    "v2_forex_ticker_C_EURUSD.json": check_forex_eurusd,
    "v2_crypto_ticker_X_BTCUSD.json": check_crypto_btcusd,
    "v2_forex_tickers_recorded.json": check_forex_tickers,
    "v3_snapshot_mixed.json": check_v3_mixed,
    "v1_last_quote_currencies_AUD_USD.json": check_v1_last_quote,
    "v1_last_crypto_BTC_USD.json": check_v1_last_crypto,
    "v2_aggs_C_EURUSD_day.json": check_aggs_day,
    "v2_aggs_empty.json": check_aggs_empty,
    "v2_aggs_paginated_first_page.json": check_aggs_paginated,
    "error_401_missing_key.json": check_error(
        "error_401_missing_key.json", 401, PermanentError, "API Key was not provided"
    ),
    "error_401_unknown_key.json": check_error(
        "error_401_unknown_key.json", 401, PermanentError, "Unknown API Key"
    ),
    "error_403_not_authorized.json": check_error(
        "error_403_not_authorized.json", 403, NotEntitled, "not entitled"
    ),
    "error_404_ticker_not_found.json": check_error(
        "error_404_ticker_not_found.json", 404, TickerNotFound, "Ticker not found."
    ),
    "error_429_rate_limited.json": check_error(
        "error_429_rate_limited.json", 429, RateLimited, "exceeded the maximum requests"
    ),
}


def test_every_recorded_response_has_expectations():
    assert RESPONSES.is_dir(), f"the recorded responses are expected at {RESPONSES}"
    assert sorted(p.name for p in RESPONSES.glob("*.json")) == sorted(CASES)


def test_every_recorded_response_says_where_it_came_from():
    provenance = (RESPONSES / "PROVENANCE.md").read_text()
    described = re.findall(r"^\| `([^`]+\.json)` \|", provenance, flags=re.MULTILINE)
    assert sorted(described) == sorted(p.name for p in RESPONSES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_response_parses(name):
    CASES[name]()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1606163759000, utc(2020, 11, 23, 20, 35, 59)),  # ms
        (1641849720000000000, utc(2022, 1, 10, 21, 22)),  # ns (v2 `updated` in real answers)
        (1641849720000000, utc(2022, 1, 10, 21, 22)),  # us
        (1641849720, utc(2022, 1, 10, 21, 22)),  # s
    ],
)
def test_epoch_unit_is_detected_by_magnitude(value, expected):
    assert epoch_to_utc(value) == expected


def test_retryable_and_permanent_statuses():
    assert error_from_response(500, "<html>Bad gateway</html>").retryable
    assert error_from_response(502, "").retryable
    assert error_from_response(429, "{}").retryable
    for status in (400, 401, 403, 404):
        assert not error_from_response(status, "{}").retryable


def test_an_html_error_page_is_summed_up_by_its_title():
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    error = error_from_response(502, page)
    assert str(error) == "Polygon answered 502: 502 Bad Gateway (HTML page)" and error.retryable


def test_unparseable_body_is_retryable():
    with pytest.raises(MalformedResponse) as info:
        load_json(b'{"status":"OK","ticker":{"day"')
    assert info.value.retryable


def test_null_lists_are_empty_and_string_trade_ids_are_fine():
    assert parse_aggs({"status": "OK", "ticker": "C:EURUSD", "results": None}) == ([], None)
    body = recorded("v2_crypto_ticker_X_BTCUSD.json")
    body["ticker"]["lastTrade"]["i"] = 464569520  # an integer in some answers
    assert parse_v2_single(body).last_price == 16242.31


def test_zero_day_bar_means_unknown_not_a_price():
    body = recorded("v2_forex_ticker_C_EURUSD.json")
    body["ticker"]["day"] = {"o": 0, "h": 0, "l": 0, "c": 0, "v": 0}
    parsed = parse_v2_single(body)
    quote = validate_quote(parsed, now=parsed.data_time)
    assert (quote.day_open, quote.day_close, quote.day_volume) == (None, None, 0)


def test_next_url_never_carries_a_key():
    assert next_url_path("https://api.polygon.io/v3/snapshot?cursor=abc&apiKey=SECRET") == (
        "/v3/snapshot?cursor=abc"
    )


@pytest.mark.parametrize(
    ("recorded_file", "mutate", "reason"),
    [
        # a forex snapshot whose ask is null: its day close is no quote
        (
            "v2_forex_ticker_C_EURUSD.json",
            lambda b: b["ticker"]["lastQuote"].update(a=None),
            "lastQuote.a missing",
        ),
        # a forex snapshot with no lastQuote at all (per_ticker mode)
        (
            "v2_forex_ticker_C_EURUSD.json",
            lambda b: b["ticker"].pop("lastQuote"),
            "lastQuote.b and lastQuote.a missing",
        ),
        # a crypto snapshot whose trade has no price
        (
            "v2_crypto_ticker_X_BTCUSD.json",
            lambda b: b["ticker"]["lastTrade"].update(p=None),
            "no price of its own: lastTrade.p",
        ),
        # a forex quote without its own time is not priced by the snapshot's `updated`
        (
            "v2_forex_ticker_C_EURUSD.json",
            lambda b: b["ticker"]["lastQuote"].pop("t"),
            "no time of its own: lastQuote.t",
        ),
    ],
)
def test_a_snapshot_without_a_price_of_its_own_is_rejected_not_priced_by_its_day(
    recorded_file, mutate, reason
):
    body = recorded(recorded_file)
    mutate(body)
    with pytest.raises(QuoteRejected, match=reason):
        parse_v2_single(body)


def test_a_v3_item_without_a_price_of_its_own_fails_only_that_ticker():
    body = recorded("v3_snapshot_mixed.json")
    fx = next(i for i in body["results"] if i.get("ticker", "").startswith("C:"))
    fx["last_quote"]["ask"] = None
    results, _ = parse_v3_snapshot(body)
    assert "last_quote.ask missing" in str(results[fx["ticker"]])
    assert any(not isinstance(r, Exception) for r in results.values())  # the others parse


def test_json_nested_far_deeper_than_polygon_is_refused_before_the_parser_recurses():
    import ast

    with pytest.raises(MalformedResponse, match="nests 100000 deep"):
        load_json("[" * 100_000 + "]" * 100_000)
    # the interpreter is unharmed: it still parses source (CPython 3.11 may not after the JSON
    # parser hits the recursion limit)
    ast.parse("x = [[[1]]]\n" * 50)
    # brackets inside strings do not count
    assert load_json('{"a": "[[[[{{{{"}') == {"a": "[[[[{{{{"}


def test_a_day_bar_that_does_not_parse_is_that_tickers_error_not_the_runs():
    # a hostile `prev` answer whose close is a string: the ticker fails with the reason, and
    # the other ticker of the same refresh is still priced
    bad = recorded("v2_aggs_prev_AAPL.json")
    bad["results"][0]["c"] = "156.8 dollars"
    client = _Recorded(
        {
            "/v2/aggs/ticker/I:BAD/prev": bad,
            "/v2/aggs/ticker/AAPL/prev": recorded("v2_aggs_prev_AAPL.json"),
        }
    )
    with clock.frozen_at(utc(2022, 4, 27, 10, 0)):
        answers = latest_bar_quotes(
            client, {"I:BAD": AssetType.INDEX, "AAPL": AssetType.INDEX}, MarketHours()
        )
    assert isinstance(answers["I:BAD"], QuoteRejected) and "not a number" in str(answers["I:BAD"])
    assert answers["AAPL"].last_price == 156.8


def test_a_previous_day_bar_dated_in_the_future_is_refused():
    # a `prev` bar whose day has not closed yet (or lies about its date) is not stored
    body = recorded("v2_aggs_prev_AAPL.json")
    client = _Recorded({"/v2/aggs/ticker/AAPL/prev": body})
    with clock.frozen_at(utc(2022, 4, 26, 15, 0)):  # 11:00 New York: the 26th is still open
        answers = latest_bar_quotes(client, {"AAPL": AssetType.INDEX}, MarketHours())
    assert isinstance(answers["AAPL"], MalformedResponse)
    assert "not a closed session" in str(answers["AAPL"])


def test_a_previous_day_bar_of_another_ticker_is_refused():
    # asked for C:USDJPY, answered with EURUSD's bar: not USDJPY's price
    body = recorded("v2_aggs_prev_AAPL.json")
    client = _Recorded({"/v2/aggs/ticker/MSFT/prev": body})
    with clock.frozen_at(utc(2022, 4, 27, 10, 0)):
        answers = latest_bar_quotes(client, {"MSFT": AssetType.INDEX}, MarketHours())
    assert isinstance(answers["MSFT"], MalformedResponse)
    assert "asked for MSFT's previous day, Polygon answered AAPL" in str(answers["MSFT"])


def test_a_ticker_listed_twice_in_a_grouped_day_is_asked_for_on_its_own():
    # two bars for C:GBPCAD in one grouped answer: neither is trusted; its own `prev` decides
    grouped = recorded("v2_aggs_grouped_fx_2020-10-14.json")
    grouped["results"].append({**grouped["results"][1], "c": 9999.0})
    prev = {
        "ticker": "C:GBPCAD",
        "results": [{**grouped["results"][1], "T": "C:GBPCAD", "t": 1602633600000}],
        "status": "OK",
    }
    client = _Recorded(
        {
            "/v2/aggs/grouped/locale/global/market/fx/2020-10-14": grouped,
            "/v2/aggs/ticker/C:GBPCAD/prev": prev,
        }
    )
    with clock.frozen_at(utc(2020, 10, 15, 9, 0)):
        answers = latest_bar_quotes(client, {"C:GBPCAD": AssetType.FOREX}, MarketHours())
    assert client.asked[-1] == "/v2/aggs/ticker/C:GBPCAD/prev"
    assert answers["C:GBPCAD"].last_price == 1.71103


# --- hostile bodies: bounded time, bounded memory, nothing that escapes --------------------------


def _seconds(operation, text) -> float:
    """The best of three CPU times of `operation(text)` in this thread, whatever it raises (ours
    or not): CPU time, not wall time, so other processes on a loaded machine do not count."""
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        try:
            operation(text)
        except PolygonError:
            pass
        best = min(best, time.thread_time() - started)
    return best


PATHOLOGICAL = {
    # an unterminated string of escaped quotes: the old nesting regex tried it from every quote
    "escaped quotes": (load_json, lambda n: '{"a": "' + '\\"' * (n // 2)),
    "quotes": (load_json, lambda n: '"' * n),
    "brackets": (load_json, lambda n: "[" * (n // 2) + "]" * (n // 2)),
    # an error page of unclosed titles: the old title regex scanned to the end from each one
    "titles": (lambda text: error_from_response(502, text), lambda n: "<title>" * (n // 7)),
    "escaped quotes in a 500": (
        lambda text: error_from_response(500, text),
        lambda n: '{"error": "' + '\\"' * (n // 2),
    ),
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_a_pathological_body_is_scanned_in_linear_time(name):
    operation, make = PATHOLOGICAL[name]
    small, large = make(100_000), make(1_000_000)
    ratio = _seconds(operation, large) / max(_seconds(operation, small), 1e-4)
    assert ratio < 20, f"{name}: 1 MB took {ratio:.1f} times as long as 100 KB"


def test_a_body_of_too_many_values_or_too_long_a_string_is_refused_before_it_is_built():
    with pytest.raises(MalformedResponse, match="JSON values"):
        load_json('{"results": [' + "1," * 9_000_000 + "1]}")
    with pytest.raises(MalformedResponse, match="a string of over"):
        load_json('{"message": "' + "x" * 15_000_000 + '"}')
    # a 50,000-bar aggregates page, the largest Polygon sends, is well within both
    bar = '{"v":1,"vw":1.1,"o":1.1,"c":1.1,"h":1.2,"l":1.0,"t":1606163759000,"n":7}'
    assert len(load_json('{"results": [' + ",".join([bar] * 50_000) + "]}")["results"]) == 50_000


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "ERROR", "error": "' + "x" * 15_000_000 + '"}',  # cut before parsing
        '{"status": "ERROR", "error": "' + "x" * 60_000 + '"}',  # parsed, then quoted short
        '{"status": "' + "S" * 60_000 + '", "error": "boom"}',
        "<html><title>" + "busy " * 100_000 + "</title></html>",
        "x" * 15_000_000,
    ],
)
def test_an_error_body_of_any_size_gives_a_short_error(body):
    error = error_from_response(500, body, "C:EURUSD")
    assert error.retryable and len(str(error)) < 400


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "ERROR", "error": "nul \\u0000 and a lone \\ud800 surrogate\\u001b[31m"}',
        '{"status": "NOT_FOUND", "message": "nul \\u0000 and a lone \\udfff surrogate"}',
        "nul \x00 and a lone \udfff surrogate in plain text",
        "[" * 100_000 + "]" * 100_000,  # deep nesting in a non-200: no RecursionError
        '{"error": ' * 10_000 + "1" + "}" * 10_000,
        '{"error": ["a", {"b": null}], "message": 12}',
    ],
)
def test_an_error_text_is_safe_to_store_and_print(body):
    for status in (400, 404, 500):
        text = str(error_from_response(status, body))
        text.encode("utf-8")  # no lone surrogate
        assert not any(ord(c) < 32 and c not in "\t\n" for c in text), text
        assert len(text) < 400


def test_a_non_200_body_is_read_only_in_its_first_64_kb():
    json_body = '{"status": "ERROR", "pad": [' + "0," * 40_000 + '0], "error": "late"}'
    error = str(error_from_response(500, json_body))
    assert "late" not in error and error.startswith('Polygon answered 500: {"status": "ERROR"')
    html = "<html>" + " " * 70_000 + "<title>late</title></html>"
    assert "late" not in str(error_from_response(502, html))


def _v3(*items):
    return {"status": "OK", "request_id": "x", "results": list(items)}


def _fx(ticker):
    item = next(i for i in recorded("v3_snapshot_mixed.json")["results"] if i.get("type") == "fx")
    return {**item, "ticker": ticker}


def test_a_v3_item_without_a_ticker_fails_only_itself():
    results, _ = parse_v3_snapshot(_v3({"type": "fx", "last_quote": {}}, _fx("C:EURUSD"), {}))
    assert set(results) == {"C:EURUSD"} and results["C:EURUSD"].bid == 1.35185
    answers = answers_for(results, ["C:EURUSD", "C:GBPUSD"])
    assert answers["C:EURUSD"] is results["C:EURUSD"]
    assert isinstance(answers["C:GBPUSD"], MalformedResponse)  # left out: retryable
    assert answers["C:GBPUSD"].retryable and "left C:GBPUSD out" in str(answers["C:GBPUSD"])


def test_a_ticker_listed_twice_is_that_tickers_error_and_only_its():
    results, _ = parse_v3_snapshot(_v3(_fx("C:EURUSD"), _fx("C:GBPUSD"), _fx("C:EURUSD")))
    assert "listed 'C:EURUSD' twice" in str(results["C:EURUSD"])
    assert results["C:EURUSD"].retryable and results["C:GBPUSD"].bid == 1.35185
    pages: dict = {}
    merge_page(pages, parse_v3_snapshot(_v3(_fx("C:EURUSD")))[0])
    merge_page(pages, parse_v3_snapshot(_v3(_fx("C:EURUSD"), _fx("C:USDJPY")))[0])
    assert "twice" in str(pages["C:EURUSD"]) and pages["C:USDJPY"].bid == 1.35185


def test_an_empty_page_or_another_case_is_retryable_not_a_permanent_not_found():
    empty, _ = parse_v3_snapshot(_v3())
    assert all(e.retryable for e in answers_for(empty, ["C:EURUSD", "X:BTCUSD"]).values())
    lower, _ = parse_v3_snapshot(_v3(_fx("c:eurusd")))
    answer = answers_for(lower, ["C:EURUSD"])["C:EURUSD"]
    assert type(answer) is MalformedResponse and "the case differs" in str(answer)
    # the vendor's own NOT_FOUND item stays permanent
    mixed, _ = parse_v3_snapshot(recorded("v3_snapshot_mixed.json"))
    assert not answers_for(mixed, ["TSLAAPL"])["TSLAAPL"].retryable


def test_a_v3_items_huge_message_is_quoted_short():
    item = {"ticker": "C:EURUSD", "error": "NOT_FOUND", "message": "m\x00" * 30_000}
    (error,) = parse_v3_snapshot(_v3(item))[0].values()
    assert isinstance(error, TickerNotFound) and len(str(error)) < 400 and "\x00" not in str(error)
