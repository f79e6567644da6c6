"""The Kraken provider: its parser on every recorded answer, then the provider over real HTTP
against the Kraken simulator (quotes, day bars, the budget, errors in a 200, bounded answers)."""

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
from assets_pipeline.polygon.parsing import load_json
from assets_pipeline.providers import kraken_wire as wire
from assets_pipeline.providers.contract import Provider
from assets_pipeline.providers.kraken import KrakenProvider
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import Quote, QuoteRejected, Timeframe
from assets_pipeline.simulator.kraken import KrakenFault, KrakenSimulator

DATA = Path(__file__).resolve().parents[1] / "data" / "kraken"
#: The tests' now: every clock (the provider's and the simulator's) reads it.
NOW = dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC)


def load(name: str):
    return json.loads((DATA / name).read_text())


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


class CountingBudget:
    """A budget with every slot free, which counts what it is asked and, at each slot, how many
    requests the simulator had already seen (so a slot is shown to come before its request)."""

    limit = 1000
    window_seconds = 60.0
    waits = 0
    waited_seconds = 0.0

    def __init__(self, simulator: KrakenSimulator | None = None) -> None:
        self.simulator = simulator
        self.slots: list[int] = []
        self.penalties = 0

    def acquire(self, max_wait_seconds, on_wait=None) -> float:
        self.slots.append(len(self.simulator.requests) if self.simulator else 0)
        return 0.0

    def penalize(self) -> None:
        self.penalties += 1

    def refuse(self, feature, message) -> None:
        pass

    def refusal(self, feature, max_age):
        return None


@pytest.fixture(autouse=True)
def frozen():
    with clock.frozen_at(NOW):
        yield


@pytest.fixture
def simulator():
    with KrakenSimulator(clock=NOW.timestamp) as sim:
        yield sim


@pytest.fixture
def budget(simulator):
    return CountingBudget(simulator)


@pytest.fixture
def provider(simulator, budget):
    provider = KrakenProvider(budget, simulator.url, backoff_seconds=0.01, read_timeout=2.0)
    yield provider
    provider.close()


def spec(symbol, asset_type, base, quote):
    return SymbolSpec(symbol, f"X:{symbol}", asset_type, Tier.HIGH, symbol, base, quote, 2)


# --- the recorded answers -------------------------------------------------------------------


def check_ticker(name, key, asked, bid, ask, last):
    def run():
        answers = wire.ticker_answers(load(name), [asked], NOW)
        quote = answers[asked]
        assert isinstance(quote, Quote), quote
        assert (quote.bid, quote.ask, quote.last_price) == (bid, ask, last)
        assert quote.data_time == NOW and quote.source == "kraken:v0-public-ticker"
        assert quote.day_close is None and quote.plan == "public"
        assert key in load(name)["result"]

    return run


def check_time(name, moment):
    return lambda: wire.server_time(load(name)) == moment or pytest.fail(name)


def check_ohlc(name, pair, interval, starts):
    def run():
        bars = wire.ohlc_bars(load(name), pair, interval)
        assert [int(b.start.timestamp()) for b in bars] == starts

    return run


def check_refused_ohlc(name, pair, interval, text):
    def run():
        with pytest.raises(MalformedResponse, match=text):
            wire.ohlc_bars(load(name), pair, interval)

    return run


def check_error(name, error, text):
    def run():
        with pytest.raises(error, match=text) as info:
            wire.result_of(load(name))
        assert info.value.retryable is error.retryable

    return run


def check_asset_pairs():
    # every answer key the provider knows for a pair, where the vendor's AssetPairs lists it,
    # names that pair's altname
    pairs = load("assetpairs_XETHXXBT_XXBTZUSD.json")["result"]
    listed = {key: pairs[key]["altname"] for key in pairs}
    known = {key: alt for alt, key in wire.RESULT_KEYS.items() if key in listed}
    assert known == listed == {"XXBTZUSD": "XBTUSD", "XETHXXBT": "ETHXBT"}


CASES = {
    "ticker_XXBTZUSD_2023.json": check_ticker(
        "ticker_XXBTZUSD_2023.json", "XXBTZUSD", "XBTUSD", 30300.0, 30300.1, 30303.2
    ),
    "ticker_XXBTZUSD_2019.json": check_ticker(
        "ticker_XXBTZUSD_2019.json", "XXBTZUSD", "XBTUSD", 3537.4, 3537.5, 3537.5
    ),
    "ticker_XBTUSDT_ccxt.json": check_ticker(
        "ticker_XBTUSDT_ccxt.json", "XBTUSDT", "XBTUSDT", 73380.6, 73380.7, 73380.6
    ),
    "time_2023.json": check_time("time_2023.json", utc(2023, 7, 6, 18, 50, 48)),
    "time_2019.json": check_time("time_2019.json", utc(2019, 1, 9, 1, 50, 54)),
    # trimmed by the vendor: all four are committed by `last`, the final one is still held back
    "ohlc_XXBTZUSD_2023_1min.json": check_ohlc(
        "ohlc_XXBTZUSD_2023_1min.json", "XBTUSD", 60, [1688671200, 1688671260, 1688671320]
    ),
    # the final candle starts after `last` (a string here): the five before it are committed
    "ohlc_XBTUSDT_1h_ccxt.json": check_ohlc(
        "ohlc_XBTUSDT_1h_ccxt.json",
        "XBTUSDT",
        3600,
        [1706626800, 1706630400, 1706634000, 1706637600, 1706641200],
    ),
    "ohlc_XXBTZUSD_2019.json": check_refused_ohlc(
        "ohlc_XXBTZUSD_2019.json", "XBTUSD", 86400, "twice or out of order"
    ),
    "assetpairs_XETHXXBT_XXBTZUSD.json": check_asset_pairs,
    "error_unknown_asset_pair.json": check_error(
        "error_unknown_asset_pair.json", TickerNotFound, "EQuery:Unknown asset pair"
    ),
    "error_invalid_arguments.json": check_error(
        "error_invalid_arguments.json", PermanentError, "EGeneral:Invalid arguments"
    ),
    "error_rate_limit_exceeded.json": check_error(
        "error_rate_limit_exceeded.json", RateLimited, "EAPI:Rate limit exceeded"
    ),
    "error_too_many_requests.json": check_error(
        "error_too_many_requests.json", RateLimited, "EGeneral:Too many requests"
    ),
}


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
    # what float() would take and a price must not be: signs, exponents, words, blanks, bools
    ["NaN", "nan", "inf", "Infinity", "-1.0", "+1.0", "1e5", "", " 1.0", "1,000.0", True, None,
     float("nan"), float("inf"), "1" * 40],
)  # fmt: skip
def test_a_price_is_plain_decimal_digits(value):
    with pytest.raises(QuoteRejected):
        wire.decimal(value, "bid", "XBTUSD")


def test_two_clocks_of_one_time_answer_must_agree():
    body = {
        "error": [],
        "result": {"unixtime": 1688669448, "rfc1123": "Thu, 06 Jul 23 19:50:48 +0000"},
    }
    with pytest.raises(MalformedResponse, match="two clocks disagree"):
        wire.server_time(body)
    for unixtime in (True, "1688669448", 12, 2**40):
        with pytest.raises(MalformedResponse, match="not a time"):
            wire.server_time({"error": [], "result": {"unixtime": unixtime}})


def test_a_warning_is_not_an_error_and_an_unknown_error_is_permanent():
    assert wire.result_of({"error": ["WGeneral:Something"], "result": {"x": 1}}) == {"x": 1}
    with pytest.raises(PermanentError, match="EGeneral:Unheard of"):
        wire.result_of({"error": ["EGeneral:Unheard of"]})
    for body in ([], {"error": "EQuery:Unknown asset pair"}, {"error": [1]}, {"error": []}):
        with pytest.raises(MalformedResponse):
            wire.result_of(body)


# --- instruments ----------------------------------------------------------------------------


def test_the_platforms_crypto_symbols_are_kraken_pairs_and_nothing_else_is():
    provider = KrakenProvider(CountingBudget())
    assert provider.instrument(spec("BTCUSD", AssetType.CRYPTO, "BTC", "USD")) == "XBTUSD"
    assert provider.instrument(spec("ETHUSDT", AssetType.CRYPTO, "ETH", "USDT")) == "ETHUSDT"
    assert provider.instrument(spec("DOGEUSD", AssetType.CRYPTO, "DOGE", "USD")) == "XDGUSD"
    assert provider.instrument(spec("EURUSD", AssetType.FOREX, "EUR", "USD")) is None
    assert provider.instrument(spec("X", AssetType.CRYPTO, "B/C", "USD")) is None


def test_the_provider_keeps_the_contract():
    provider: Provider = KrakenProvider(CountingBudget())
    assert (provider.name, provider.timeframe) == ("kraken", Timeframe.REAL_TIME)
    assert provider.tickers_per_call >= 2


# --- over HTTP, against the simulator -------------------------------------------------------


def paths(sim):
    return [(r.path, r.query.get("pair")) for r in sim.requests]


def test_btcusd_and_ethusdt_are_quoted_by_one_ticker_call_timed_by_krakens_clock(
    provider, simulator, budget
):
    quotes = provider.fetch_quotes(["XBTUSD", "ETHUSDT"])
    assert paths(simulator) == [("/0/public/Time", None), ("/0/public/Ticker", "XBTUSD,ETHUSDT")]
    assert budget.slots == [0, 1]  # each slot taken before its request was sent
    for pair, level in (("XBTUSD", 60000), ("ETHUSDT", 3000)):
        quote = quotes[pair]
        assert isinstance(quote, Quote), quote
        assert quote.ticker == pair and 0 < quote.bid < quote.ask
        assert abs(quote.last_price / level - 1) < 0.01
        assert quote.data_time == NOW == quote.fetched_at  # Kraken's clock, not ours
        assert (quote.source, quote.plan) == ("kraken:v0-public-ticker", "public")


def test_more_pairs_than_one_call_takes_are_asked_in_chunks_each_timed_anew(provider, simulator):
    provider.tickers_per_call = 2
    quotes = provider.fetch_quotes(["XBTUSD", "ETHUSDT", "SOLUSD", "XBTUSD"])  # one repeated
    assert list(quotes) == ["XBTUSD", "ETHUSDT", "SOLUSD"]
    assert all(isinstance(q, Quote) for q in quotes.values())
    assert paths(simulator) == [
        ("/0/public/Time", None), ("/0/public/Ticker", "XBTUSD,ETHUSDT"),
        ("/0/public/Time", None), ("/0/public/Ticker", "SOLUSD"),
    ]  # fmt: skip


def test_day_bars_are_closed_days_only_oldest_first(provider, simulator, budget):
    bars = provider.fetch_day_bars("XBTUSD", dt.date(2026, 11, 10), dt.date(2026, 11, 30))
    # today (the 20th) is open: the last bar is yesterday's, whatever `last` asked for
    assert [b.start.date() for b in bars] == [dt.date(2026, 11, d) for d in range(10, 20)]
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in bars)
    (request,) = simulator.requests
    assert request.query["interval"] == "1440" and budget.slots == [0]
    assert provider.fetch_day_bars("XBTUSD", dt.date(2026, 11, 20), dt.date(2026, 11, 21)) == []
    assert len(simulator.requests) == 1  # nothing closed in that range: nothing asked


def test_an_unknown_pair_is_permanent_and_stops_only_itself(provider, simulator, budget):
    answers = provider.fetch_quotes(["XBTUSD", "NOPEUSD", "ETHUSDT"])
    assert isinstance(answers["XBTUSD"], Quote) and isinstance(answers["ETHUSDT"], Quote)
    assert isinstance(answers["NOPEUSD"], TickerNotFound)
    assert not answers["NOPEUSD"].retryable and answers["NOPEUSD"].ticker == "NOPEUSD"
    # Kraken refuses the whole list for one unknown pair: then each is asked alone, once
    assert [pair for _, pair in paths(simulator)] == [
        None, "XBTUSD,NOPEUSD,ETHUSDT", "XBTUSD", "NOPEUSD", "ETHUSDT"
    ]  # fmt: skip
    assert len(budget.slots) == 5


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        # Kraken's own words for "slow down", inside a 200, and a plain 429
        ("rate_limited", RateLimited),
        ("too_many_requests", RateLimited),
        ("http_429", RateLimited),
        # the service's trouble, inside a 200 and as a 502 page: retried, never paused for
        ("unavailable", RetryableError),
        ("http_502", RetryableError),
        ("malformed", MalformedResponse),
    ],
)
def test_retryable_answers_are_retried_each_attempt_paid(provider, simulator, budget, kind, error):
    simulator.add_fault(KrakenFault(kind, path_prefix="/0/public/Ticker", count=1))
    assert isinstance(provider.fetch_quotes(["XBTUSD"])["XBTUSD"], Quote)
    assert len(budget.slots) == 3 == len(simulator.requests)  # Time, the fault, its retry
    assert budget.penalties == (1 if error is RateLimited else 0)
    simulator.add_fault(KrakenFault(kind, path_prefix="/0/public/Ticker"))
    answer = provider.fetch_quotes(["XBTUSD"])["XBTUSD"]
    assert isinstance(answer, error) and answer.retryable
    assert budget.penalties == (4 if error is RateLimited else 0)  # every 429 pauses the budget


def test_a_refusal_inside_a_200_is_permanent_and_not_retried(provider, simulator, budget):
    simulator.add_fault(KrakenFault("invalid_arguments", path_prefix="/0/public/OHLC"))
    with pytest.raises(PermanentError, match="EGeneral:Invalid arguments") as info:
        provider.fetch_day_bars("XBTUSD", dt.date(2026, 11, 1), dt.date(2026, 11, 5))
    assert not info.value.retryable and len(simulator.requests) == 1


def test_nothing_outside_the_public_api_is_ever_asked(provider, simulator, budget):
    for path in ("/0/private/Balance", "/v2/aggs", "/0/public/%2e%2e/private/Balance"):
        with pytest.raises(MalformedResponse, match="outside the API"):
            provider.get_json(path)
    assert simulator.requests == [] and budget.slots == []


def test_a_redirect_is_refused_not_followed(provider, simulator):
    simulator.add_fault(KrakenFault("redirect", path_prefix="/0/public/Ticker"))
    answer = provider.fetch_quotes(["XBTUSD"])["XBTUSD"]
    assert isinstance(answer, RedirectRefused) and "elsewhere.example" in str(answer)
    assert len(simulator.requests) == 2  # Time, and the redirect; nothing asked elsewhere


@pytest.mark.parametrize(
    ("kind", "error", "text"),
    [
        # a body far larger than any Kraken answer: the size cap ends it
        ("bloated", "AnswerTooLarge", "larger than 1,000,000 bytes"),
        # a byte every 0.2 s: each read is short, the answer never ends; the deadline ends it
        ("trickle", "AnswerTooSlow", "took longer than 1s"),
    ],
)
def test_every_answer_is_bounded_in_size_and_time(simulator, kind, error, text):
    simulator.add_fault(KrakenFault(kind, path_prefix="/0/public/Ticker"))
    provider = KrakenProvider(
        CountingBudget(), simulator.url, max_body_bytes=1_000_000, total_timeout=1.0, max_retries=0
    )
    answer = provider.fetch_quotes(["XBTUSD"])["XBTUSD"]
    assert type(answer).__name__ == error and answer.retryable and text in str(answer)


def test_an_answer_for_a_pair_not_asked_is_refused_whole(provider, simulator):
    simulator.add_fault(KrakenFault("wrong_pair", pair="ETHUSDT"))
    answers = provider.fetch_quotes(["XBTUSD", "ETHUSDT"])
    for pair in ("XBTUSD", "ETHUSDT"):
        assert isinstance(answers[pair], MalformedResponse), answers[pair]
        assert "not asked" in str(answers[pair])


@pytest.mark.parametrize("kind", ["future_time", "stale_time"])
def test_a_clock_that_lies_times_no_quote(provider, simulator, kind):
    # Kraken's `Time` an hour ahead of ours, or an hour behind: no quote is timed by it
    simulator.add_fault(KrakenFault(kind))
    answers = provider.fetch_quotes(["XBTUSD", "ETHUSDT"])
    assert all(isinstance(a, MalformedResponse) for a in answers.values()), answers
    assert "Kraken's clock reads" in str(answers["XBTUSD"])
    assert [path for path, _ in paths(simulator)] == ["/0/public/Time"]  # no Ticker asked


@pytest.mark.parametrize(
    ("kind", "error", "reason"),
    [
        # a bid above the ask: read, then rejected by the hard rules
        ("crossed", QuoteRejected, "crossed quote"),
        # a signed price is not one Kraken writes: unreadable, refused before any rule
        ("negative_price", MalformedResponse, "is not a price"),
    ],
)
def test_an_impossible_quote_is_rejected_alone(provider, simulator, kind, error, reason):
    simulator.add_fault(KrakenFault(kind, pair="ETHUSDT"))
    answers = provider.fetch_quotes(["XBTUSD", "ETHUSDT"])
    assert isinstance(answers["XBTUSD"], Quote)
    assert isinstance(answers["ETHUSDT"], error) and reason in str(answers["ETHUSDT"])


def test_the_simulator_answers_in_the_recorded_shapes(simulator):
    provider = KrakenProvider(CountingBudget(), simulator.url)
    recorded = load("ticker_XXBTZUSD_2023.json")["result"]["XXBTZUSD"]
    served = provider.get_json("/0/public/Ticker", {"pair": "XBTUSD"})
    assert list(served["result"]) == ["XXBTZUSD"]  # asked by altname, keyed as Kraken keys it
    item = served["result"]["XXBTZUSD"]
    assert {k: [type(v) for v in vs] if isinstance(vs, list) else type(vs) for k, vs in item.items()} == {
        k: [type(v) for v in vs] if isinstance(vs, list) else type(vs) for k, vs in recorded.items()
    }  # fmt: skip
    time_answer = provider.get_json("/0/public/Time")
    assert wire.server_time(time_answer) == NOW
    assert set(time_answer["result"]) == set(load("time_2023.json")["result"])


# --- found by a black-box attack from Kraken's documentation (2026-12-01) --------------------


@pytest.mark.parametrize("price", [30300.1, 30300, "3.03e4", "+30300.1", " 30300.1"])
def test_a_price_that_is_not_a_plain_decimal_string_is_rejected(price):
    with pytest.raises(QuoteRejected, match="is not a price"):
        wire.decimal(price, "ask", "XBTUSD")


def test_an_answer_naming_a_pair_twice_is_refused_whole():
    item = '{"a": ["1", "1", "1"], "b": ["1", "1", "1"], "c": ["1", "1"], "o": "1"}'
    body = '{"error": [], "result": {"XXBTZUSD": ' + item + ', "XXBTZUSD": ' + item + "}}"
    with pytest.raises(MalformedResponse, match="written twice"):
        load_json(body, unique_keys=True)
