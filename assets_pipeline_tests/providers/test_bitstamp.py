"""The Bitstamp provider: its parser on every recorded answer, then the provider over real HTTP
against the Bitstamp simulator (quotes, day bars, the budget, errors, bounded answers)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from assets_pipeline.config.registry import AssetType, SymbolSpec, Tier
from assets_pipeline.http.errors import (
    MalformedResponse,
    PermanentError,
    RateLimited,
    RedirectRefused,
    RetryableError,
    TickerNotFound,
)
from assets_pipeline.providers import bitstamp_wire as wire
from assets_pipeline.providers.bitstamp import BitstampProvider
from assets_pipeline.providers.contract import Provider
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import Quote, QuoteRejected, Timeframe
from assets_pipeline.simulator.bitstamp import BitstampFault, BitstampSimulator
from assets_pipeline_tests.providers.test_kraken import CountingBudget

DATA = Path(__file__).resolve().parents[1] / "data" / "bitstamp"
#: The tests' now: every clock (the provider's and the simulator's) reads it.
NOW = dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC)


def load(name: str):
    return json.loads((DATA / name).read_text())


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def frozen():
    with clock.frozen_at(NOW):
        yield


@pytest.fixture
def simulator():
    with BitstampSimulator(clock=NOW.timestamp) as sim:
        yield sim


@pytest.fixture
def budget(simulator):
    return CountingBudget(simulator)


@pytest.fixture
def provider(simulator, budget):
    provider = BitstampProvider(budget, simulator.url, backoff_seconds=0.01, read_timeout=2.0)
    yield provider
    provider.close()


def spec(symbol, asset_type, base, quote):
    return SymbolSpec(symbol, f"X:{symbol}", asset_type, Tier.HIGH, symbol, base, quote, 2)


# --- the recorded answers -------------------------------------------------------------------


def check_ticker(name, pair, moment, bid, ask, last, day_open):
    def run():
        quote = wire.ticker_quote(pair, load(name))
        assert (quote.bid, quote.ask, quote.last_price, quote.day_open) == (
            bid,
            ask,
            last,
            day_open,
        )
        assert quote.data_time == moment and quote.source == "bitstamp:v2-ticker"
        assert (quote.provider, quote.plan, quote.timeframe) == (
            "bitstamp",
            "public",
            Timeframe.REAL_TIME,
        )
        # the ticker's high, low and volume are the last 24 hours', not the UTC day's
        assert quote.day_high is quote.day_low is quote.day_volume is quote.day_close is None

    return run


def check_ohlc(name, pair, step, starts, closes):
    def run():
        bars = wire.ohlc_bars(load(name), pair, step)
        assert [b.start for b in bars] == starts and [b.close for b in bars] == closes

    return run


def check_error(name, error, text):
    def run():
        found = wire.error_in(load(name), "btcusd")
        assert isinstance(found, error) and text in str(found)
        assert found.retryable is error.retryable and found.ticker == "btcusd"

    return run


def check_markets():
    # the pairs the platform trades are listed, under the names `instrument` gives them
    listed = {m["market_symbol"]: m for m in load("markets_btcusd_ethusdt_ccxt.json")}
    for symbol, item in listed.items():
        assert wire.pair_for(item["base_currency"], item["counter_currency"]) == symbol
        assert item["trading"] == "Enabled"
    assert sorted(listed) == ["btcusd", "ethusdt"]


CASES = {
    "ticker_btcusdt_ccxt.json": check_ticker(
        "ticker_btcusdt_ccxt.json", "btcusdt", utc(2024, 3, 13, 11, 10, 41),
        73353.0, 73367.0, 73285.0, 71448.0,
    ),
    "ticker_btcusd_2018_wiki.json": check_ticker(
        "ticker_btcusd_2018_wiki.json", "btcusd", utc(2018, 4, 12, 14, 33, 30),
        7675.0, 7675.01, 7675.0, 6940.94,
    ),
    "ohlc_btcusdt_1h_ccxt.json": check_ohlc(
        "ohlc_btcusdt_1h_ccxt.json", "btcusdt", 3600, [utc(2024, 3, 13, 11)], [73285.0]
    ),
    "ohlc_btcusd_1min_basana.json": check_ohlc(
        "ohlc_btcusd_1min_basana.json", "btcusd", 60, [utc(2016, 1, 1)], [430.89]
    ),
    "markets_btcusd_ethusdt_ccxt.json": check_markets,
    "error_status_reason_basana.json": check_error(
        "error_status_reason_basana.json", PermanentError, "Order not found"
    ),
    "error_text_basana.json": check_error(
        "error_text_basana.json", PermanentError, "Order not found"
    ),
    "error_rate_limit_400_002.json": check_error(
        "error_rate_limit_400_002.json", RateLimited, "exceeded rate limit"
    ),
}  # fmt: skip


def test_every_recorded_answer_has_expectations():
    assert sorted(p.name for p in DATA.glob("*.json")) == sorted(CASES)


def test_every_recorded_answer_says_where_it_came_from():
    provenance = (DATA / "PROVENANCE.md").read_text()
    described = re.findall(r"^\| `([^`]+\.json)` \|", provenance, flags=re.MULTILINE)
    assert sorted(described) == sorted(p.name for p in DATA.glob("*.json"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_answer_parses(name):
    CASES[name]()


@pytest.mark.parametrize(
    "value",
    # what float() would take and a price must not be: signs, exponents, words, blanks, numbers
    ["NaN", "nan", "inf", "Infinity", "-1.0", "+1.0", "1e5", "", " 1.0", "1,000.0", True, None,
     73353, 73353.5, float("nan"), float("inf"), "1" * 40],
)  # fmt: skip
def test_a_price_is_plain_decimal_digits(value):
    with pytest.raises(QuoteRejected):
        wire.decimal(value, "bid", "btcusd")


@pytest.mark.parametrize("stamp", [True, "12", "1710328241.5", "-1710328241", 2**40, None, "x"])
def test_a_ticker_timestamp_must_be_unix_seconds(stamp):
    body = {**load("ticker_btcusdt_ccxt.json"), "timestamp": stamp}
    with pytest.raises(MalformedResponse, match="not a time"):
        wire.ticker_quote("btcusdt", body)


def test_candles_listed_twice_off_the_grid_or_impossible_refuse_the_answer():
    row = load("ohlc_btcusdt_1h_ccxt.json")["data"]["ohlc"][0]
    for rows, text in (
        ([row, row], "twice"),
        ([{**row, "timestamp": "1710327601"}], "off the grid"),
        ([{**row, "low": "80000"}], "impossible prices"),
        ([{**row, "close": 73285}], "not a price"),
    ):
        with pytest.raises(MalformedResponse, match=text):
            wire.ohlc_bars({"data": {"ohlc": rows}}, "btcusdt", 3600)
    with pytest.raises(MalformedResponse, match="no candles"):
        wire.ohlc_bars({"data": {}}, "btcusdt", 3600)


def test_http_errors_are_sorted_by_what_to_do_about_them():
    page = b"<html><body>Not Found</body></html>"
    assert isinstance(wire.http_error(404, page, "nopeusd"), TickerNotFound)
    assert type(wire.http_error(404, page)) is PermanentError  # not a pair's path
    assert isinstance(wire.http_error(429, b""), RateLimited)
    limited = json.dumps(load("error_rate_limit_400_002.json")).encode()
    assert isinstance(wire.http_error(400, limited, "btcusd"), RateLimited)
    assert type(wire.http_error(502, b"")) is RetryableError
    assert type(wire.http_error(403, b"")) is PermanentError


# --- instruments ----------------------------------------------------------------------------


def test_the_platforms_crypto_symbols_are_bitstamp_pairs_and_nothing_else_is():
    provider = BitstampProvider(CountingBudget())
    assert provider.instrument(spec("BTCUSD", AssetType.CRYPTO, "BTC", "USD")) == "btcusd"
    assert provider.instrument(spec("ETHUSDT", AssetType.CRYPTO, "ETH", "USDT")) == "ethusdt"
    assert provider.instrument(spec("EURUSD", AssetType.FOREX, "EUR", "USD")) is None
    assert provider.instrument(spec("X", AssetType.CRYPTO, "B/C", "USD")) is None


def test_the_provider_keeps_the_contract():
    provider: Provider = BitstampProvider(CountingBudget())
    assert isinstance(provider, Provider)
    assert (provider.name, provider.timeframe) == ("bitstamp", Timeframe.REAL_TIME)
    assert provider.tickers_per_call == 1 and provider.redact("no secret") == "no secret"


# --- over HTTP, against the simulator -------------------------------------------------------


def paths(sim):
    return [r.path for r in sim.requests]


def test_btcusd_and_ethusdt_are_quoted_one_call_each_timed_by_bitstamp(provider, simulator, budget):
    quotes = provider.fetch_quotes(["btcusd", "ethusdt", "btcusd"])  # one repeated
    assert paths(simulator) == ["/api/v2/ticker/btcusd/", "/api/v2/ticker/ethusdt/"]
    assert budget.slots == [0, 1]  # each slot taken before its request was sent
    assert provider.calls == 2 == len(simulator.requests)
    for pair, level in (("btcusd", 60000), ("ethusdt", 3000)):
        quote = quotes[pair]
        assert isinstance(quote, Quote), quote
        assert quote.ticker == pair and 0 < quote.bid < quote.ask
        assert abs(quote.last_price / level - 1) < 0.01
        assert quote.data_time == NOW == quote.fetched_at  # the ticker's own `timestamp`
        assert (quote.source, quote.plan, quote.provider) == (
            "bitstamp:v2-ticker",
            "public",
            "bitstamp",
        )


def test_day_bars_are_closed_days_only_oldest_first(provider, simulator, budget):
    bars = provider.fetch_day_bars("btcusd", dt.date(2026, 11, 10), dt.date(2026, 11, 30))
    # today (the 20th) is running: the last bar is yesterday's
    assert [b.start.date() for b in bars] == [dt.date(2026, 11, d) for d in range(10, 20)]
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in bars)
    (request,) = simulator.requests
    assert request.path == "/api/v2/ohlc/btcusd/" and budget.slots == [0]
    assert request.query == {
        "step": "86400",
        "limit": "10",
        "start": str(int(utc(2026, 11, 10).timestamp())),
    }
    assert provider.fetch_day_bars("btcusd", dt.date(2026, 11, 20), dt.date(2026, 11, 21)) == []
    assert len(simulator.requests) == 1  # nothing closed in that range: nothing asked


def test_more_than_a_thousand_days_take_one_call_per_thousand(provider, simulator):
    bars = provider.fetch_day_bars("btcusd", dt.date(2023, 1, 1), dt.date(2026, 11, 19))
    days = (dt.date(2026, 11, 19) - dt.date(2023, 1, 1)).days + 1
    assert len(bars) == days and len(simulator.requests) == 2
    assert [r.query["limit"] for r in simulator.requests] == ["1000", str(days - 1000)]
    starts = [b.start for b in bars]
    assert starts == sorted(set(starts))


def test_an_unknown_pair_is_permanent_and_fails_alone(provider, simulator, budget):
    answers = provider.fetch_quotes(["btcusd", "nopeusd", "ethusdt"])
    assert isinstance(answers["btcusd"], Quote) and isinstance(answers["ethusdt"], Quote)
    unknown = answers["nopeusd"]
    assert isinstance(unknown, TickerNotFound) and not unknown.retryable
    assert unknown.ticker == "nopeusd" and unknown.status == 404
    assert len(budget.slots) == 3 == len(simulator.requests)  # asked once, not retried


def test_a_pair_bitstamp_stopped_listing_fails_alone(provider, simulator):
    simulator.add_fault(BitstampFault("unknown_pair", pair="ethusdt"))
    answers = provider.fetch_quotes(["btcusd", "ethusdt"])
    assert isinstance(answers["btcusd"], Quote) and isinstance(answers["ethusdt"], TickerNotFound)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("http_429", RateLimited),
        # Bitstamp's documented rate-limit code, in a 200
        ("rate_limited", RateLimited),
        ("http_5xx", RetryableError),
        ("malformed", MalformedResponse),
    ],
)
def test_retryable_answers_are_retried_each_attempt_paid(provider, simulator, budget, kind, error):
    simulator.add_fault(BitstampFault(kind, count=1))
    assert isinstance(provider.fetch_quotes(["btcusd"])["btcusd"], Quote)
    assert len(budget.slots) == 2 == len(simulator.requests)  # the fault, its retry
    assert budget.penalties == (1 if error is RateLimited else 0)  # a rate limit pauses it
    simulator.add_fault(BitstampFault(kind))
    answer = provider.fetch_quotes(["btcusd"])["btcusd"]
    assert isinstance(answer, error) and answer.retryable
    assert len(budget.slots) == 5 == len(simulator.requests)  # three attempts, each paid
    assert budget.penalties == (4 if error is RateLimited else 0)  # every one pauses the budget


def test_a_slow_answer_is_cut_off_and_retried(simulator):
    simulator.add_fault(BitstampFault("timeout", count=1, delay=2.0))
    provider = BitstampProvider(CountingBudget(simulator), simulator.url, read_timeout=0.3)
    provider.backoff_seconds = 0.0
    assert isinstance(provider.fetch_quotes(["btcusd"])["btcusd"], Quote)
    assert provider.calls == 2


def test_a_redirect_is_refused_not_followed(provider, simulator, budget):
    simulator.add_fault(BitstampFault("redirect"))
    answer = provider.fetch_quotes(["btcusd"])["btcusd"]
    assert isinstance(answer, RedirectRefused) and "elsewhere.example" in str(answer)
    assert not answer.retryable
    assert len(simulator.requests) == 1 == len(budget.slots)  # nothing asked elsewhere


def test_nothing_outside_the_public_api_is_ever_asked(provider, simulator, budget):
    for path in ("/api/v2/balance/%2E%2E/%2e%2e/admin", "/v2/aggs", "/api/v2/%2e%2e/user"):
        with pytest.raises(MalformedResponse, match="outside the API"):
            provider.get_json(path)
    answer = provider.fetch_quotes(["btc/usd"])["btc/usd"]
    assert isinstance(answer, MalformedResponse)  # never put in a path
    assert simulator.requests == [] and budget.slots == []


@pytest.mark.parametrize(
    ("kind", "error", "reason"),
    [
        # a bid above the ask: read, then rejected by the hard rules
        ("crossed", QuoteRejected, "crossed quote"),
        # a signed price, or a JSON number, is not one Bitstamp writes: refused as read
        ("negative_price", QuoteRejected, "is not a price"),
        ("number_price", QuoteRejected, "is not a price"),
        # a `timestamp` an hour ahead of our clock is not a time of the past
        ("future", QuoteRejected, "in the future"),
    ],
)
def test_a_bad_price_or_time_is_refused_for_its_pair_alone(
    provider, simulator, kind, error, reason
):
    simulator.add_fault(BitstampFault(kind, pair="ethusdt"))
    answers = provider.fetch_quotes(["btcusd", "ethusdt"])
    assert isinstance(answers["btcusd"], Quote)
    assert isinstance(answers["ethusdt"], error) and reason in str(answers["ethusdt"])


def test_a_stale_ticker_keeps_its_own_old_time(provider, simulator):
    # an hour-old `timestamp` is Bitstamp's word: the quote says so, and the refresh judges it
    simulator.add_fault(BitstampFault("stale", pair="btcusd"))
    quote = provider.fetch_quotes(["btcusd"])["btcusd"]
    assert isinstance(quote, Quote) and quote.data_time == NOW - dt.timedelta(hours=1)


def test_the_simulator_answers_in_the_recorded_shapes(simulator):
    provider = BitstampProvider(CountingBudget(), simulator.url)
    served = provider.get_json("/api/v2/ticker/btcusdt/")
    recorded = load("ticker_btcusdt_ccxt.json")
    assert {k: type(v) for k, v in served.items()} == {k: type(v) for k, v in recorded.items()}
    candles = provider.get_json("/api/v2/ohlc/btcusdt/", {"step": 3600, "limit": 2})
    recorded = load("ohlc_btcusdt_1h_ccxt.json")["data"]
    assert set(candles["data"]) == set(recorded) and candles["data"]["pair"] == "BTC/USDT"
    assert [set(c) for c in candles["data"]["ohlc"]] == [set(recorded["ohlc"][0])] * 2


def test_an_answer_naming_another_pair_is_refused_whoever_it_prices():
    """A ticker that says it is ETH/USD when BTC/USD was asked: storing it as BTCUSD would
    put Ether's price on Bitcoin (found by a black-box attack)."""
    body = json.loads((DATA / "ticker_btcusdt_ccxt.json").read_text())
    with pytest.raises(MalformedResponse, match="answered the ticker of 'ETH/USD' when asked"):
        wire.ticker_quote("btcusdt", {**body, "pair": "ETH/USD"})
    assert wire.ticker_quote("btcusdt", {**body, "pair": "BTC/USDT"}).ticker == "btcusdt"


def test_after_an_outage_the_next_pairs_are_not_asked(provider, simulator, budget):
    """One pair a call: once Bitstamp failed one pair with its retries spent, asking the next
    would only spend theirs too (a trickle made a refresh take three minutes)."""
    simulator.add_fault(BitstampFault("http_5xx"))
    answers = provider.fetch_quotes(["btcusd", "ethusdt"])
    assert isinstance(answers["btcusd"], RetryableError)
    assert isinstance(answers["ethusdt"], RetryableError)
    assert "not asked: Bitstamp failed before" in str(answers["ethusdt"])
    assert len(simulator.requests) == 3 == len(budget.slots)  # btcusd's three attempts only


def test_a_rate_limit_that_leaves_no_slot_is_reported_as_the_vendors_limit(simulator):
    """Bitstamp's 429 pauses the budget; when the pause outlasts the wait for a slot, the
    error says Bitstamp limited us, not that our own budget was busy."""
    from assets_pipeline.budget.interface import BudgetCongested

    class Paused(CountingBudget):
        def acquire(self, max_wait_seconds, on_wait=None):
            if self.penalties:
                raise BudgetCongested("no Bitstamp call slot within 0.1s")
            return super().acquire(max_wait_seconds, on_wait)

    budget = Paused(simulator)
    provider = BitstampProvider(budget, simulator.url, backoff_seconds=0.01)
    simulator.add_fault(BitstampFault("http_429"))
    answer = provider.fetch_quotes(["btcusd"])["btcusd"]
    assert isinstance(answer, RateLimited) and "429" in str(answer)


def test_a_retry_that_gets_no_slot_reports_the_failure_it_was_retrying(simulator):
    """A 5xx, then no budget slot for its retry: the error is the 5xx (Bitstamp failed), not
    our budget (which would pass it off as congestion and hide the outage)."""
    from assets_pipeline.budget.interface import BudgetCongested

    class OneSlot(CountingBudget):
        def acquire(self, max_wait_seconds, on_wait=None):
            if self.slots:
                raise BudgetCongested("no Bitstamp call slot within 0.1s")
            return super().acquire(max_wait_seconds, on_wait)

    provider = BitstampProvider(OneSlot(simulator), simulator.url, backoff_seconds=0.01)
    simulator.add_fault(BitstampFault("http_5xx"))
    answer = provider.fetch_quotes(["btcusd"])["btcusd"]
    assert isinstance(answer, RetryableError) and not isinstance(answer, RateLimited)
    assert len(simulator.requests) == 1
