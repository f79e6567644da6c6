"""The OANDA provider: its parser against every example in `data/oanda/` (a guard fails on a file
without expectations or provenance), then the provider over real HTTP against the OANDA
simulator: one pricing call for the seven forex and metals symbols, day bars by UTC day, the
budget, errors, hostile answers and the token. Every test reads a frozen clock."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest

from assets_pipeline.config.registry import AssetType, SymbolSpec, Tier, load_registry
from assets_pipeline.http.errors import (
    MalformedResponse,
    PermanentError,
    RateLimited,
    RedirectRefused,
    RetryableError,
    TickerNotFound,
)
from assets_pipeline.polygon.parsing import load_json
from assets_pipeline.providers.contract import Provider
from assets_pipeline.providers.oanda import (
    PLAN,
    SOURCE_PRICING,
    OandaProvider,
    error_from_answer,
    parse_candles,
    parse_pricing,
    parse_time,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import QuoteRejected, Timeframe
from assets_pipeline.simulator import PolygonSimulator, market
from assets_pipeline.simulator.oanda import DEFAULT_ACCOUNT, OandaFault, OandaSimulator

DATA = Path(__file__).resolve().parents[1] / "data" / "oanda"
TOKEN = "oanda-Practice+Token/0123456789abcdef-fedcba9876543210"
#: A Wednesday afternoon, markets open; and a Saturday, forex and metals closed.
WEDNESDAY = dt.datetime(2026, 11, 25, 14, 30, 7, 250000, tzinfo=dt.UTC)
SATURDAY = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
SEVEN = ["XAUUSD", "EURUSD", "GBPUSD", "USDJPY", "XAGUSD", "AUDUSD", "USDCAD"]


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def recorded(name: str):
    return json.loads((DATA / name).read_text())


class CountingBudget:
    """A `CallBudget` that counts what it is asked: slots taken and 429 pauses."""

    limit, window_seconds, waits, waited_seconds = 1000, 1.0, 0, 0.0

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties = 0

    def acquire(self, max_wait_seconds, on_wait=None) -> float:
        self.acquired += 1
        return 0.0

    def penalize(self) -> None:
        self.penalties += 1

    def refuse(self, feature, message) -> None:
        pass

    def refusal(self, feature, max_age):
        return None


@pytest.fixture
def frozen():
    with clock.frozen_at(WEDNESDAY) as move:
        yield move


@pytest.fixture
def sim(frozen):
    now = clock.reader()
    with OandaSimulator(token=TOKEN, clock=lambda: now().timestamp()) as simulator:
        yield simulator


@pytest.fixture
def budget():
    return CountingBudget()


def provider_for(url, budget, token=TOKEN, **options) -> OandaProvider:
    options = {"backoff_seconds": 0.01, "read_timeout": 2.0, **options}
    return OandaProvider(url, DEFAULT_ACCOUNT, token, budget, **options)


@pytest.fixture
def provider(sim, budget):
    provider = provider_for(sim.url, budget)
    yield provider
    provider.close()


# --- the parser on every example -----------------------------------------------------------


def check_pricing_eur_usd_eur_jpy():
    answers = parse_pricing(recorded("pricing_EUR_USD_EUR_JPY.json"), ["EUR_USD", "EUR_JPY"])
    eur, jpy = answers["EUR_USD"], answers["EUR_JPY"]
    # the best of each side's buckets, whatever their order
    assert (eur.bid, eur.ask, jpy.bid, jpy.ask) == (1.12157, 1.12170, 115.329, 115.346)
    # nanoseconds cut to microseconds: the price's own time, not the fetch time
    assert eur.data_time == utc(2016, 10, 5, 5, 28, 16, 729643)
    assert (eur.source, eur.plan, eur.timeframe) == (SOURCE_PRICING, PLAN, Timeframe.REAL_TIME)
    assert parse_pricing(recorded("pricing_EUR_USD_EUR_JPY.json"), ["EUR_USD"]).keys() == {
        "EUR_USD"
    }  # EUR_JPY, not asked, is not taken


def check_pricing_closed_gold():
    body = recorded("pricing_XAU_USD_non_tradeable_reconstructed.json")
    gold = parse_pricing(body, ["XAU_USD"])["XAU_USD"]
    # closed: the last price, at its own time (Friday's close), not the answer's time
    assert gold.data_time == utc(2024, 6, 7, 20, 59, 58, 408392)
    assert (gold.bid, gold.ask) == (2293.602, 2294.128)


def check_candles_de30():
    bars = parse_candles(recorded("candles_DE30_EUR_M5.json"), "DE30_EUR")
    assert [b.start for b, _ in bars][:2] == [utc(2016, 10, 17, 19, 35), utc(2016, 10, 17, 19, 40)]
    first, complete = bars[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        10503.8,
        10508.0,
        10503.8,
        10506.0,
        132.0,
    )
    assert complete and len(bars) == 5
    with pytest.raises(MalformedResponse, match="answered 'DE30/EUR'"):
        parse_candles(recorded("candles_DE30_EUR_M5.json"), "EUR_USD")


def check_candles_eur_usd_daily():
    bars = parse_candles(recorded("candles_EUR_USD_D_utc_reconstructed.json"), "EUR_USD")
    assert [b.start.date() for b, _ in bars] == [
        dt.date(2024, 6, 6),
        dt.date(2024, 6, 7),
        dt.date(2024, 6, 9),  # Sunday's stub: the week opens Sunday evening New York
        dt.date(2024, 6, 10),
    ]
    assert [complete for _, complete in bars] == [True, True, True, False]


def check_error(name, status, error, text):
    def check():
        found = error_from_answer(status, (DATA / name).read_bytes(), ["EUR_USD"])
        assert type(found) is error and text in str(found) and found.status == status

    return check


CASES = {
    "pricing_EUR_USD_EUR_JPY.json": check_pricing_eur_usd_eur_jpy,
    "pricing_XAU_USD_non_tradeable_reconstructed.json": check_pricing_closed_gold,
    "candles_DE30_EUR_M5.json": check_candles_de30,
    "candles_EUR_USD_D_utc_reconstructed.json": check_candles_eur_usd_daily,
    # an order for an unknown instrument: a permanent 400, not an instrument not found
    "error_400_invalid_order_instrument.json": check_error(
        "error_400_invalid_order_instrument.json", 400, PermanentError, "'order.instrument'"
    ),
    "error_400_invalid_instruments_reconstructed.json": check_error(
        "error_400_invalid_instruments_reconstructed.json", 400, TickerNotFound, "'instruments'"
    ),
    "error_401_insufficient_authorization_reconstructed.json": check_error(
        "error_401_insufficient_authorization_reconstructed.json",
        401,
        PermanentError,
        "Insufficient authorization",
    ),
}


def test_every_example_has_expectations_and_provenance():
    files = sorted(p.name for p in DATA.glob("*.json"))
    assert files == sorted(CASES)
    provenance = (DATA / "PROVENANCE.md").read_text()
    described = re.findall(r"^\| `([^`]+\.json)` \| (\w+)", provenance, flags=re.MULTILINE)
    assert sorted(name for name, _ in described) == files
    # a reconstruction is never passed off as recorded
    assert all((kind == "reconstructed") == ("_reconstructed" in name) for name, kind in described)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_parses(name):
    CASES[name]()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-10-05T05:28:16.729643492Z", utc(2016, 10, 5, 5, 28, 16, 729643)),
        ("2016-10-05T05:28:16Z", utc(2016, 10, 5, 5, 28, 16)),
        ("2016-10-05T07:28:16.5+02:00", utc(2016, 10, 5, 5, 28, 16, 500000)),
    ],
)
def test_rfc3339_times_with_nanoseconds(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["1475645296.729643492", "2016-10-05 05:28:16Z", "2016-13-05T05:28:16Z", 1475645296]
)
def test_what_is_not_an_rfc3339_time_is_malformed(text):
    with pytest.raises(MalformedResponse):
        parse_time(text)


def test_a_time_of_a_million_digits_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(MalformedResponse):
        parse_time("2016-10-05T05:28:16." + "1" * 1_000_000 + "Z")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bids": []}, "no bids liquidity"),
        ({"asks": [{"price": "0"}]}, "must be positive"),
        ({"asks": [{"price": "-1.2"}]}, "not a decimal string"),
        ({"bids": [{"price": "NaN"}]}, "not a decimal string"),
        ({"bids": [{"price": "Infinity"}]}, "not a decimal string"),
        ({"bids": [{"price": "1.1e0"}]}, "not a decimal string"),
        ({"bids": [{"price": 1.1}]}, "not a decimal string"),
        ({"status": "invalid"}, "marks the price invalid"),
        ({"time": "yesterday"}, "not an RFC 3339 time"),
    ],
)
def test_a_broken_price_fails_its_instrument_only(change, reason):
    body = recorded("pricing_EUR_USD_EUR_JPY.json")
    body["prices"][0].update(change)
    answers = parse_pricing(body, ["EUR_USD", "EUR_JPY"])
    assert isinstance(answers["EUR_USD"], MalformedResponse) and reason in str(answers["EUR_USD"])
    assert answers["EUR_JPY"].bid == 115.329


# --- the provider against the simulator ----------------------------------------------------


def test_it_keeps_the_provider_contract(provider):
    promised = {*Provider.__annotations__, "instrument", "fetch_quotes", "fetch_day_bars", "close"}
    assert all(hasattr(provider, name) for name in promised)
    assert (provider.name, provider.timeframe) == ("oanda", Timeframe.REAL_TIME)


def test_each_forex_and_metal_symbol_has_its_instrument_and_nothing_else_does(provider):
    registry = load_registry()
    names = {spec.symbol: provider.instrument(spec) for spec in registry}
    assert names["XAUUSD"] == "XAU_USD" and names["EURUSD"] == "EUR_USD"
    assert names["USDJPY"] == "USD_JPY" and names["XAGUSD"] == "XAG_USD"
    assert names["BTCUSD"] is None and names["ETHUSDT"] is None
    index = SymbolSpec("SPX", "I:SPX", AssetType.INDEX, Tier.LOW, "S&P 500", "SPX", "USD", 2)
    assert provider.instrument(index) is None


def test_the_seven_symbols_cost_one_pricing_call(provider, sim, budget):
    registry = load_registry()
    instruments = [provider.instrument(registry.get(symbol)) for symbol in SEVEN]
    quotes = provider.fetch_quotes(instruments)
    assert sorted(quotes) == sorted(instruments)
    assert all(q.bid < q.ask for q in quotes.values()), quotes
    assert budget.acquired == 1 and len(sim.requests) == 1
    (request,) = sim.requests
    assert request.path == f"/v3/accounts/{DEFAULT_ACCOUNT}/pricing"
    assert request.query["instruments"].split(",") == instruments
    eur = quotes["EUR_USD"]
    # the price's own time (nanoseconds cut), fetched now, on the practice plan
    assert eur.data_time == WEDNESDAY and eur.fetched_at == WEDNESDAY and eur.plan == PLAN
    # the same market as the Polygon simulator's C:EURUSD at that second
    same = market.quote("C:EURUSD", WEDNESDAY.timestamp())
    assert (eur.bid, eur.ask) == (same.bid, same.ask)


def test_the_same_prices_as_the_polygon_simulator(provider, frozen):
    now = clock.reader()
    with PolygonSimulator(clock=lambda: now().timestamp()) as polygon:
        import urllib.request

        request = urllib.request.Request(
            f"{polygon.url}/v2/snapshot/locale/global/markets/forex/tickers/C:XAUUSD",
            headers={"Authorization": "Bearer any"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            last_quote = json.load(answer)["ticker"]["lastQuote"]
    gold = provider.fetch_quotes(["XAU_USD"])["XAU_USD"]
    assert (gold.bid, gold.ask) == (last_quote["b"], last_quote["a"])


def test_a_closed_markets_price_keeps_its_own_old_time(provider, frozen):
    frozen(SATURDAY)
    quotes = provider.fetch_quotes(["EUR_USD", "XAU_USD"])
    friday_close = utc(2026, 11, 27, 22, 0)  # 17:00 New York, winter time
    assert quotes["EUR_USD"].data_time == friday_close == quotes["XAU_USD"].data_time
    assert quotes["EUR_USD"].fetched_at == SATURDAY


def test_day_bars_are_utc_days_and_only_complete_ones(provider, sim, budget):
    bars = provider.fetch_day_bars("EUR_USD", dt.date(2026, 11, 20), dt.date(2026, 11, 25))
    # Friday, Sunday's stub, Monday, Tuesday: no Saturday (closed), no Wednesday (still running)
    assert [b.start for b in bars] == [utc(2026, 11, d) for d in (20, 22, 23, 24)]
    (request,) = sim.requests
    assert request.path == "/v3/instruments/EUR_USD/candles" and budget.acquired == 1
    assert request.query["dailyAlignment"] == "0" and request.query["alignmentTimezone"] == "UTC"
    assert request.query["to"] == "2026-11-25T00:00:00Z"  # closed days only: never today
    monday = market.bar(
        "C:EURUSD", utc(2026, 11, 23).timestamp(), utc(2026, 11, 24).timestamp(), 1e12
    )
    assert bars[2].close == monday.close


def test_a_range_entirely_ahead_asks_nothing(provider, sim, budget):
    assert provider.fetch_day_bars("EUR_USD", dt.date(2026, 12, 1), dt.date(2026, 12, 3)) == []
    assert budget.acquired == 0 and sim.requests == []


def test_candles_not_aligned_on_utc_midnight_are_refused(provider, sim):
    sim.add_fault(OandaFault("misaligned"))
    with pytest.raises(MalformedResponse, match="not at 00:00 UTC"):
        provider.fetch_day_bars("EUR_USD", dt.date(2026, 11, 23), dt.date(2026, 11, 24))


def test_one_budget_slot_per_request_retries_included(provider, sim, budget):
    sim.add_fault(OandaFault("http_503", count=1))
    assert provider.fetch_quotes(["EUR_USD"])["EUR_USD"].bid
    sim.add_fault(OandaFault("malformed", count=1))  # a 200 cut in half, then a good one
    assert provider.fetch_quotes(["EUR_USD"])["EUR_USD"].bid
    assert [r.status for r in sim.requests] == [503, 200, 200, 200]
    assert budget.acquired == 4 == provider.calls


def test_a_wrong_token_is_permanent_and_asked_once(sim, budget):
    provider = provider_for(sim.url, budget, token="not-the-token-0123456789")
    answer = provider.fetch_quotes(["EUR_USD", "XAU_USD"])
    assert all(isinstance(e, PermanentError) for e in answer.values())
    assert "401" in str(answer["EUR_USD"]) and "Insufficient authorization" in str(
        answer["EUR_USD"]
    )
    assert len(sim.requests) == 1


def test_an_unknown_instrument_fails_alone(provider, sim, budget):
    quotes = provider.fetch_quotes(["EUR_USD", "ABC_XYZ", "XAU_USD"])
    assert isinstance(quotes["ABC_XYZ"], TickerNotFound) and not quotes["ABC_XYZ"].retryable
    assert quotes["EUR_USD"].bid and quotes["XAU_USD"].bid
    # the batch's 400, then each instrument on its own, every request paid
    assert [r.status for r in sim.requests] == [400, 200, 400, 200] and budget.acquired == 4
    with pytest.raises(TickerNotFound):
        provider.fetch_day_bars("ABC_XYZ", dt.date(2026, 11, 23), dt.date(2026, 11, 24))


def test_a_429_pauses_the_budget_and_ends_as_rate_limited(provider, sim, budget):
    sim.add_fault(OandaFault("rate_limited"))
    answer = provider.fetch_quotes(["EUR_USD"])["EUR_USD"]
    assert isinstance(answer, RateLimited) and answer.retryable
    assert budget.penalties == 3 and budget.acquired == 3  # every 429 pauses every caller


def test_a_redirect_is_refused_not_followed(provider, sim):
    sim.add_fault(OandaFault("redirect"))
    answer = provider.fetch_quotes(["EUR_USD"])["EUR_USD"]
    assert isinstance(answer, RedirectRefused) and "refused" in str(answer)
    assert len(sim.requests) == 1


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("bloated", "AnswerTooLarge", "larger than 1,000,000 bytes"),
        ("trickle", "AnswerTooSlow", "took longer than 1s"),
    ],
)
def test_bloated_and_trickled_answers_are_bounded(sim, budget, kind, error, message):
    sim.add_fault(OandaFault(kind))
    provider = provider_for(
        sim.url, budget, total_timeout=1.0, max_body_bytes=1_000_000, max_retries=0
    )
    started = time.monotonic()
    answer = provider.fetch_quotes(["EUR_USD"])["EUR_USD"]
    assert type(answer).__name__ == error and message in str(answer) and answer.retryable
    assert time.monotonic() - started < 15.0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("future", "in the future"),
        ("crossed", "crossed quote"),
        ("negative_price", "not a decimal string"),
        ("nan_price", "not a decimal string"),
        ("empty_bids", "no bids liquidity"),
    ],
)
def test_a_bad_price_is_refused_and_the_others_stand(provider, sim, fault, reason):
    sim.add_fault(OandaFault(fault, instrument="EUR_USD"))
    quotes = provider.fetch_quotes(["EUR_USD", "XAU_USD"])
    assert isinstance(quotes["EUR_USD"], MalformedResponse | QuoteRejected)
    assert reason in str(quotes["EUR_USD"]) and quotes["XAU_USD"].bid


def test_an_instrument_not_asked_is_refused(provider, sim):
    sim.add_fault(OandaFault("not_asked"))
    quotes = provider.fetch_quotes(["EUR_USD", "XAU_USD"])
    assert set(quotes) == {"EUR_USD", "XAU_USD"}  # USD_CHF, sent unasked, is not taken
    assert isinstance(quotes["EUR_USD"], MalformedResponse) and "left EUR_USD out" in str(
        quotes["EUR_USD"]
    )
    assert quotes["XAU_USD"].bid


def test_an_instrument_listed_twice_is_trusted_neither_time(provider, sim):
    sim.add_fault(OandaFault("twice", instrument="EUR_USD"))
    quotes = provider.fetch_quotes(["EUR_USD", "XAU_USD"])
    assert "twice" in str(quotes["EUR_USD"]) and quotes["XAU_USD"].bid


def test_the_token_travels_only_in_the_header(provider, sim, caplog):
    sim.add_fault(OandaFault("http_500", count=1))
    provider.fetch_quotes(["EUR_USD"])
    provider.fetch_day_bars("EUR_USD", dt.date(2026, 11, 23), dt.date(2026, 11, 24))
    for request in sim.requests:
        assert TOKEN not in request.path and TOKEN not in str(request.query) and request.key_id
    assert TOKEN not in caplog.text


def test_a_token_echoed_back_never_reaches_an_exception_or_log(provider, sim, caplog):
    sim.add_fault(OandaFault("echo_token"))
    answer = provider.fetch_quotes(["EUR_USD"])["EUR_USD"]
    text = str(answer)
    assert isinstance(answer, PermanentError) and "***" in text and TOKEN not in text
    assert not any(TOKEN[i : i + 8] in text for i in range(len(TOKEN) - 7))
    with pytest.raises(ValueError) as info:
        OandaProvider(sim.url, "not an account", TOKEN, CountingBudget())
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text


def test_a_server_error_that_persists_is_retryable(provider, sim, budget):
    sim.add_fault(OandaFault("http_500"))
    answer = provider.fetch_quotes(["EUR_USD"])["EUR_USD"]
    assert isinstance(answer, RetryableError) and "500" in str(answer)
    assert budget.acquired == 3


# --- found by a black-box attack from OANDA's documentation (2026-12-01) ---------------------


def _candles(*starts: str, granularity: str = "D", complete: bool = True) -> dict:
    mid = {"o": "1.1", "h": "1.2", "l": "1.0", "c": "1.15"}
    return {
        "instrument": "EUR_USD",
        "granularity": granularity,
        "candles": [{"complete": complete, "volume": 1, "time": t, "mid": mid} for t in starts],
    }


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        (_candles("2026-11-23T00:00:00.000000000Z", granularity="H1"), "granularity"),
        (_candles("2026-11-24T00:00:00Z", "2026-11-23T00:00:00Z"), "not in time order"),
        (_candles("2026-11-23T00:00:00.000000001Z"), "between two microseconds"),
    ],
)
def test_candles_of_another_size_out_of_order_or_off_the_boundary_are_refused(
    provider, answer, refusal
):
    provider.get_json = lambda *args, **kwargs: answer
    with pytest.raises(MalformedResponse, match=refusal):
        provider.fetch_day_bars("EUR_USD", dt.date(2026, 11, 23), dt.date(2026, 11, 24))


def test_todays_candle_is_never_a_bar_even_marked_complete(provider):
    asked = []

    def answer(path, params, instruments):
        asked.append(params["to"])
        return _candles("2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z")  # Wednesday is today

    provider.get_json = answer
    bars = provider.fetch_day_bars("EUR_USD", dt.date(2026, 11, 24), dt.date(2026, 11, 25))
    assert [b.start for b in bars] == [utc(2026, 11, 24)]
    assert asked == ["2026-11-25T00:00:00Z"]


def test_an_object_naming_a_key_twice_is_malformed():
    with pytest.raises(MalformedResponse, match="written twice"):
        load_json('{"prices": [], "prices": [1]}', unique_keys=True)
