"""Every provider keeps the `Provider` contract, and every quote it makes names it."""

from __future__ import annotations

import datetime as dt

import pytest

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.providers import bitstamp_wire, kraken_wire, oanda
from assets_pipeline.providers.bitstamp import BitstampProvider
from assets_pipeline.providers.contract import Provider
from assets_pipeline.providers.kraken import KrakenProvider
from assets_pipeline.providers.oanda import OandaProvider
from assets_pipeline.providers.polygon import PolygonProvider
from assets_pipeline.rules.plans import LearntPlan
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.quotes import Quote, Timeframe
from assets_pipeline_tests.conftest import get_engine

NOW = dt.datetime(2026, 11, 25, 14, 30, tzinfo=dt.UTC)


@pytest.fixture
def budget(sqlite_url):
    return PolygonBudget(SqlBudgetStore(get_engine(sqlite_url)), limit=1000, window_seconds=60)


@pytest.fixture
def polygon(simulator, budget):
    provider = PolygonProvider(PolygonClient(simulator.url, "key", budget, max_retries=0))
    yield provider
    provider.close()


def test_every_provider_keeps_the_contract(polygon, budget):
    kraken = KrakenProvider(budget)
    practice = OandaProvider(oanda.PRACTICE_URL, "101-001-1-001", "token", budget)
    bitstamp = BitstampProvider(budget)
    providers = (polygon, kraken, practice, bitstamp)
    assert [isinstance(p, Provider) for p in providers] == [True] * 4
    assert [p.name for p in providers] == list(ProviderName)


def test_a_polygon_provider_takes_its_batch_size_and_timeframe_from_the_plan(polygon, registry):
    assert (polygon.tickers_per_call, polygon.timeframe) == (250, Timeframe.REAL_TIME)
    polygon.learnt = LearntPlan("free", "per_ticker")
    assert (polygon.tickers_per_call, polygon.timeframe) == (1, Timeframe.END_OF_DAY)
    eur = next(spec for spec in registry if spec.symbol == "EURUSD")
    assert polygon.instrument(eur) == "C:EURUSD"


def test_each_providers_quotes_name_it(polygon):
    fetched = polygon.fetch_quotes(["C:EURUSD", "X:BTCUSD"])
    kraken = kraken_wire.ticker_quote(
        "XBTUSD",
        {
            "a": ["97000.1"],
            "b": ["96999.9"],
            "c": ["97000.0"],
            "o": "96000",
            "h": ["98000"],
            "l": ["95000"],
            "v": ["10.5"],
        },
        NOW,
    )
    practice = oanda.parse_price(
        {
            "instrument": "EUR_USD",
            "time": "2026-11-25T14:29:59.000000000Z",
            "status": "tradeable",
            "bids": [{"price": "1.08000"}],
            "asks": [{"price": "1.08020"}],
        }
    )
    bitstamp = bitstamp_wire.ticker_quote(
        "btcusd",
        {"timestamp": "1764080999", "bid": "96999", "ask": "97001", "last": "97000", "open": "1"},
    )
    quotes = {
        "polygon": list(fetched.values()),
        "kraken": [kraken],
        "oanda": [practice],
        "bitstamp": [bitstamp],
    }
    for name, made in quotes.items():
        assert all(isinstance(q, Quote) for q in made), made
        assert {(q.provider, q.source.partition(":")[0]) for q in made} == {(name, name)}
        assert {q.event_data()["provider"] for q in made} == {name}


def test_a_quote_names_the_provider_its_source_names_and_refuses_another():
    at = NOW
    assert Quote("XBTUSD", at, "kraken:v0-public-ticker", last_price=1.0).provider == "kraken"
    assert Quote("C:EURUSD", at, "bench", last_price=1.0).provider == "polygon"  # the old default
    with pytest.raises(ValueError, match="served by oanda"):
        Quote("XBTUSD", at, "kraken:v0-public-ticker", last_price=1.0, provider="oanda")
