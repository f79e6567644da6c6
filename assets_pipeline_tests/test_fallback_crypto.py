"""Crypto's second live source, over real HTTP against the vendors' simulators and on PostgreSQL:
with Kraken stopped, a refresh passes BTCUSD and ETHUSDT to Bitstamp in the same run, live, and
nothing fails; Polygon (on its free plan, a day-old close) is not needed. The `World` of
test_fallback.py, with Bitstamp beside Kraken and the default crypto chain."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.config.registry import Registry, parse_registry
from assets_pipeline.persistence.provider_state import provider_syncs, recently_failed, serving
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.providers.bitstamp import BitstampProvider
from assets_pipeline.providers.kraken import KrakenProvider
from assets_pipeline.refresh import Refresh, plan_refresh
from assets_pipeline.rules import clock
from assets_pipeline.rules.fallback import DEFAULT_CHAINS
from assets_pipeline.rules.quotes import Timeframe
from assets_pipeline.rules.run_kinds import MANUAL
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline.simulator.bitstamp import BitstampSimulator
from assets_pipeline.simulator.kraken import KrakenSimulator
from assets_pipeline.sourcing import Source, Sourcing, polygon_live
from assets_pipeline_tests.conftest import ALWAYS_OPEN, get_engine, symbol_entry

ALL = frozenset(AssetType)
SYMBOLS = {
    "symbols": [
        symbol_entry(
            symbol="BTCUSD",
            polygon_ticker="X:BTCUSD",
            asset_type="crypto",
            base_asset="BTC",
            price_precision=2,
        ),
        symbol_entry(
            symbol="ETHUSDT",
            polygon_ticker="X:ETHUSD",
            asset_type="crypto",
            tier="high",
            base_asset="ETH",
            quote_asset="USDT",
            price_precision=2,
        ),
    ],
    "market_hours": ALWAYS_OPEN,
    "providers": {"retry_after": "5m", "return_after": "15m", "alert_after": "30m"},
}
CRYPTO = ["BTCUSD", "ETHUSDT"]
POLYGON_KEY = "polygon-test-key-0123456789"


@dataclass
class World:
    """Polygon's, Kraken's and Bitstamp's simulators on the frozen clock, their budgets in
    PostgreSQL, one store."""

    engine: object
    registry: Registry
    polygon: PolygonSimulator
    kraken: KrakenSimulator
    bitstamp: BitstampSimulator
    polygon_plan: str
    logs: list[str] = field(default_factory=list)

    def budget(self, name: str) -> PolygonBudget:
        return PolygonBudget(SqlBudgetStore(self.engine, name), limit=100, window_seconds=60)

    def sourcing(self) -> Sourcing:
        plan = "free" if self.polygon_plan == "free" else "paid"
        client = PolygonClient(
            self.polygon.url, POLYGON_KEY, self.budget("polygon"), max_retries=0, plan=plan
        )
        kraken = KrakenProvider(self.budget("kraken"), self.kraken.url, max_retries=0)
        bitstamp = BitstampProvider(self.budget("bitstamp"), self.bitstamp.url, max_retries=0)
        others = [
            Source("kraken", kraken.budget, ALL, kraken),
            Source("bitstamp", bitstamp.budget, ALL, bitstamp),
        ]
        live = polygon_live(plan == "free", frozenset())
        syncs = provider_syncs(self.engine, [s.symbol for s in self.registry])
        since = clock.utcnow() - dt.timedelta(seconds=self.registry.fallback.return_after_seconds)
        log = _ListLog(self.logs)
        return Sourcing(
            client,
            others,
            Source("polygon", client.budget, live),
            self.registry,
            recently_failed(syncs, since),
            log,
        )

    def refresh(self, symbols: list[str] = CRYPTO):
        """One refresh, as a step runs it; (its batch, its sourcing, the quotes it stored)."""
        store, queue = QuoteStore(self.engine), RefreshQueue(self.engine, self.registry.queue)
        plan = plan_refresh(self.registry, symbols, MANUAL, f"b-{uuid.uuid4()}")
        sourcing = self.sourcing()
        refresh = Refresh(plan, sourcing, store, queue, "batch", _ListLog(self.logs))
        stored = {}
        for spec, quote, _ in refresh.quotes():
            refresh.store(spec, quote)
            stored[spec.symbol] = quote
        return refresh.settle(), sourcing, stored

    def status(self, symbol: str, provider: str):
        return provider_syncs(self.engine, [symbol])[symbol][provider]


class _ListLog:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def _add(self, message: str) -> None:
        self.lines.append(message)
        logging.getLogger("fallback-crypto-test").info(message)

    info = warning = error = debug = _add


@pytest.fixture(params=["free", "full"])
def world(request, pg_url, frozen_clock) -> Iterator[World]:
    """`free`: Polygon's free plan (day bars only) last in the chain; `full`: a paid Polygon
    that can serve live too, still after the two free live exchanges."""
    sim_clock = lambda: frozen_clock.now.timestamp()  # noqa: E731 - the vendors' clocks
    registry = parse_registry(SYMBOLS, source="fallback-crypto-test.yaml")
    polygon = PolygonSimulator(host="127.0.0.1", port=0, plan=request.param, clock=sim_clock)
    kraken = KrakenSimulator(host="127.0.0.1", port=0, clock=sim_clock)
    bitstamp = BitstampSimulator(host="127.0.0.1", port=0, clock=sim_clock)
    with polygon, kraken, bitstamp:
        yield World(get_engine(pg_url), registry, polygon, kraken, bitstamp, request.param)


def test_crypto_symbols_list_kraken_then_bitstamp_then_polygon(world):
    assert DEFAULT_CHAINS[AssetType.CRYPTO] == ("kraken", "bitstamp", "polygon")
    assert [world.registry.chain(world.registry.get(s)) for s in CRYPTO] == [
        ("kraken", "bitstamp", "polygon")
    ] * 2


def test_with_kraken_healthy_it_serves_and_bitstamp_is_not_asked(world):
    batch, _, stored = world.refresh()
    assert batch.failed == {}
    assert {s: q.provider for s, q in stored.items()} == {"BTCUSD": "kraken", "ETHUSDT": "kraken"}
    assert world.bitstamp.requests == []


def test_a_stopped_kraken_passes_crypto_to_bitstamp_live_in_the_same_run(world):
    world.kraken.stop()
    batch, sourcing, stored = world.refresh()
    assert batch.failed == {}  # nothing lost
    assert sorted(batch.updated) == sorted(CRYPTO)
    now = clock.utcnow()
    for symbol, pair in (("BTCUSD", "btcusd"), ("ETHUSDT", "ethusdt")):
        quote = stored[symbol]
        assert (quote.provider, quote.ticker) == ("bitstamp", pair)
        assert quote.timeframe is Timeframe.REAL_TIME and quote.data_time == now
        assert quote.source == "bitstamp:v2-ticker" and 0 < quote.bid < quote.ask
        assert world.status(symbol, "kraken").status == "failed"
        assert world.status(symbol, "bitstamp").status == "success"
        assert [name for name, _ in sourcing.fell_back(symbol)] == ["kraken"]
    assert [r.path for r in world.bitstamp.requests] == [
        "/api/v2/ticker/btcusd/",
        "/api/v2/ticker/ethusdt/",
    ]
    assert len([r for r in world.polygon.requests if not r.path.startswith("/_sim")]) == 0
    assert serving(world.engine, ["BTCUSD"])["BTCUSD"].provider == "bitstamp"
    assert serving(world.engine, ["BTCUSD"])["BTCUSD"].fallback_since == now


def test_with_both_exchanges_stopped_polygon_still_serves(world):
    world.kraken.stop()
    world.bitstamp.stop()
    batch, _, stored = world.refresh(["BTCUSD"])
    assert batch.failed == {}
    assert stored["BTCUSD"].provider == "polygon"
    expected = Timeframe.END_OF_DAY if world.polygon_plan == "free" else Timeframe.REAL_TIME
    assert stored["BTCUSD"].timeframe is expected
