"""Per-symbol choice and fallback within a refresh, over real HTTP against the three vendors'
simulators and on PostgreSQL: the first provider that can serve a symbol live does; an outage,
a refusal or stale data passes it to the next in the same run; an outage opens the provider's
circuit, asked again on schedule; a provider that failed a symbol lately is asked after the
others (no flapping); a provider out of budget slots is passed over, its budget never exceeded."""

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
from assets_pipeline.providers.oanda import OandaProvider
from assets_pipeline.refresh import Refresh, plan_refresh
from assets_pipeline.rules.quotes import Timeframe
from assets_pipeline.rules.run_kinds import CRITICAL, MANUAL
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline.simulator.bitstamp import BitstampSimulator
from assets_pipeline.simulator.kraken import KrakenFault, KrakenSimulator
from assets_pipeline.simulator.oanda import DEFAULT_ACCOUNT, DEFAULT_TOKEN, OandaSimulator
from assets_pipeline.sourcing import Source, Sourcing, polygon_live
from assets_pipeline_tests.conftest import ALWAYS_OPEN, get_engine, symbol_entry

ALL = frozenset(AssetType)
SYMBOLS = {
    "symbols": [
        symbol_entry(symbol="XAUUSD", polygon_ticker="C:XAUUSD", base_asset="XAU"),
        symbol_entry(),
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
        symbol_entry(
            symbol="SPX",
            polygon_ticker="I:SPX",
            asset_type="index",
            tier="high",
            base_asset="SPX",
            quote_asset="USD",
            price_precision=2,
        ),
    ],
    "market_hours": {**ALWAYS_OPEN, "index": "always"},
    "providers": {"retry_after": "5m", "return_after": "15m", "alert_after": "30m"},
}
CRITICAL_SYMBOLS = ["XAUUSD", "EURUSD", "BTCUSD"]
POLYGON_KEY = "polygon-test-key-0123456789"


@dataclass
class World:
    """Three vendors' simulators on the frozen clock, their budgets in PostgreSQL, one store."""

    engine: object
    registry: Registry
    polygon: PolygonSimulator
    kraken: KrakenSimulator
    oanda: OandaSimulator
    polygon_plan: str
    kraken_calls: int = 100
    logs: list[str] = field(default_factory=list)
    #: Where each simulator listened (a stopped one keeps its address: connections refused).
    urls: dict[str, str] = field(default_factory=dict)
    #: Crypto's second live source, when the test has it.
    bitstamp: BitstampSimulator | None = None

    def __post_init__(self) -> None:
        self.urls = {
            "polygon": self.polygon.url,
            "kraken": self.kraken.url,
            "oanda": self.oanda.url,
        }
        if self.bitstamp is not None:
            self.urls["bitstamp"] = self.bitstamp.url

    def budget(self, name: str, calls: int) -> PolygonBudget:
        return PolygonBudget(SqlBudgetStore(self.engine, name), limit=calls, window_seconds=60)

    def sourcing(self) -> Sourcing:
        plan = "free" if self.polygon_plan == "free" else "paid"
        client = PolygonClient(
            self.urls["polygon"], POLYGON_KEY, self.budget("polygon", 100), max_retries=0, plan=plan
        )
        kraken = KrakenProvider(self.budget("kraken", self.kraken_calls), self.urls["kraken"])
        kraken.max_retries, kraken.backoff_seconds = 0, 0.0
        oanda = OandaProvider(
            self.urls["oanda"],
            DEFAULT_ACCOUNT,
            DEFAULT_TOKEN,
            self.budget("oanda", 100),
            max_retries=0,
        )
        others = [
            Source("kraken", kraken.budget, ALL, kraken),
            Source("oanda", oanda.budget, ALL, oanda),
        ]
        if self.bitstamp is not None:
            bitstamp = BitstampProvider(self.budget("bitstamp", 100), self.urls["bitstamp"])
            bitstamp.max_retries = 0
            others.append(Source("bitstamp", bitstamp.budget, ALL, bitstamp))
        live = polygon_live(plan == "free", frozenset())
        syncs = provider_syncs(self.engine, [s.symbol for s in self.registry])
        since = _now() - dt.timedelta(seconds=self.registry.fallback.return_after_seconds)
        held = recently_failed(syncs, since)
        log = _ListLog(self.logs)
        return Sourcing(
            client, others, Source("polygon", client.budget, live), self.registry, held, log
        )

    def refresh(self, symbols: list[str] = CRITICAL_SYMBOLS, kind: str = CRITICAL):
        """One refresh, as a step runs it; (its batch, its sourcing, the quotes it stored)."""
        store, queue = QuoteStore(self.engine), RefreshQueue(self.engine, self.registry.queue)
        plan = plan_refresh(self.registry, symbols, kind, f"b-{uuid.uuid4()}")
        sourcing = self.sourcing()
        refresh = Refresh(plan, sourcing, store, queue, "batch", _ListLog(self.logs))
        stored = {}
        for spec, quote, _ in refresh.quotes():
            refresh.store(spec, quote)
            stored[spec.symbol] = quote
        return refresh.settle(), sourcing, stored

    def requests(self, simulator) -> int:
        return len([r for r in simulator.requests if not r.path.startswith("/_sim")])

    def status(self, symbol: str, provider: str):
        return provider_syncs(self.engine, [symbol])[symbol][provider]


class _ListLog:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def _add(self, message: str) -> None:
        self.lines.append(message)
        logging.getLogger("fallback-test").info(message)

    info = warning = error = debug = _add


def _now() -> dt.datetime:
    from assets_pipeline.rules import clock

    return clock.utcnow()


@pytest.fixture(params=["free", "full"])
def world(request, pg_url, frozen_clock) -> Iterator[World]:
    """`free`: Polygon's free plan (day bars only) behind the free live providers; `full`: a
    paid Polygon that can serve live too."""
    sim_clock = lambda: frozen_clock.now.timestamp()  # noqa: E731 - the vendors' clocks
    registry = parse_registry(SYMBOLS, source="fallback-test.yaml")
    polygon = PolygonSimulator(host="127.0.0.1", port=0, plan=request.param, clock=sim_clock)
    kraken = KrakenSimulator(host="127.0.0.1", port=0, clock=sim_clock)
    oanda = OandaSimulator(host="127.0.0.1", port=0, clock=sim_clock, market_hours=False)
    with polygon, kraken, oanda:
        yield World(get_engine(pg_url), registry, polygon, kraken, oanda, request.param)


@pytest.fixture(params=["free", "full"])
def crypto_world(request, pg_url, frozen_clock) -> Iterator[World]:
    """The same, with Bitstamp beside Kraken: crypto's default list, kraken, bitstamp, polygon."""
    sim_clock = lambda: frozen_clock.now.timestamp()  # noqa: E731 - the vendors' clocks
    registry = parse_registry(SYMBOLS, source="fallback-test.yaml")
    polygon = PolygonSimulator(host="127.0.0.1", port=0, plan=request.param, clock=sim_clock)
    kraken = KrakenSimulator(host="127.0.0.1", port=0, clock=sim_clock)
    oanda = OandaSimulator(host="127.0.0.1", port=0, clock=sim_clock, market_hours=False)
    bitstamp = BitstampSimulator(host="127.0.0.1", port=0, clock=sim_clock)
    with polygon, kraken, oanda, bitstamp:
        engine = get_engine(pg_url)
        yield World(engine, registry, polygon, kraken, oanda, request.param, bitstamp=bitstamp)


def test_with_free_accounts_the_critical_symbols_carry_live_prices_from_named_providers(world):
    batch, _, stored = world.refresh()
    assert batch.failed == {} and sorted(batch.updated) == sorted(CRITICAL_SYMBOLS)
    assert {s: q.provider for s, q in stored.items()} == {
        "XAUUSD": "oanda",
        "EURUSD": "oanda",
        "BTCUSD": "kraken",
    }
    cadence = dt.timedelta(
        seconds=world.registry.tiers[world.registry.get("EURUSD").tier].every_seconds
    )
    for quote in stored.values():
        assert quote.timeframe is Timeframe.REAL_TIME
        assert quote.age(_now()) < cadence
    assert world.requests(world.polygon) == 0  # not needed: nothing asked of it
    assert world.status("BTCUSD", "kraken").status == "success"
    held = serving(world.engine, CRITICAL_SYMBOLS)
    assert {s: (h.provider, h.fallback_since) for s, h in held.items()} == {
        "XAUUSD": ("oanda", None),
        "EURUSD": ("oanda", None),
        "BTCUSD": ("kraken", None),
    }


def test_polygon_still_serves_what_only_it_serves(world):
    batch, _, stored = world.refresh(["SPX"], MANUAL)
    assert batch.failed == {}
    assert stored["SPX"].provider == "polygon"
    expected = Timeframe.END_OF_DAY if world.polygon_plan == "free" else Timeframe.REAL_TIME
    assert stored["SPX"].timeframe is expected


def test_a_stopped_provider_passes_its_symbols_to_the_next_in_the_same_run(world):
    world.kraken.stop()
    batch, _, stored = world.refresh()
    assert batch.failed == {}  # nothing lost
    assert stored["BTCUSD"].provider == "polygon"
    expected = Timeframe.END_OF_DAY if world.polygon_plan == "free" else Timeframe.REAL_TIME
    assert stored["BTCUSD"].timeframe is expected
    kraken = world.status("BTCUSD", "kraken")
    assert kraken.status == "failed" and kraken.error
    assert world.status("BTCUSD", "polygon").status == "success"
    assert any("kraken: outage" in line and "circuit open" in line for line in world.logs)
    assert serving(world.engine, ["BTCUSD"])["BTCUSD"].fallback_since == _now()


def test_an_open_circuit_is_asked_again_on_schedule_not_on_every_refresh(world, frozen_clock):
    """Kraken's outage opens its circuit: not asked for `retry_after` (5m). Then asked again,
    on Polygon's free plan at once (a live price beats a day-old close); with a live Polygon
    serving BTCUSD meanwhile, once Kraken's failure is `return_after` (15m) old."""
    world.kraken.add_fault(KrakenFault("http_502"))
    world.refresh()
    asked = world.requests(world.kraken)
    assert asked >= 1
    world.kraken.clear_faults()
    back_after = 300 if world.polygon_plan == "free" else 900
    for _ in range(back_after // 60 - 1):
        frozen_clock.advance(60)
        batch, _, stored = world.refresh()
        assert world.requests(world.kraken) == asked  # not asked on any of these refreshes
        assert stored["BTCUSD"].provider == "polygon" and batch.failed == {}
    frozen_clock.advance(60)
    assert world.refresh()[2]["BTCUSD"].provider == "kraken"
    assert world.requests(world.kraken) > asked


def test_a_provider_answering_stale_data_passes_the_symbol_on(world, frozen_clock):
    """OANDA's clock 30 minutes behind: its prices are older than the critical tier allows
    while the market trades. A live Polygon serves instead; on Polygon's free plan (a day-old
    close) OANDA's price is still the newest, and is kept."""
    world.oanda.clock = lambda: frozen_clock.now.timestamp() - 1800
    batch, sourcing, stored = world.refresh(["EURUSD"])
    assert batch.failed == {}
    if world.polygon_plan == "free":
        assert stored["EURUSD"].provider == "oanda"
        assert sourcing.fell_back("EURUSD") == []  # nobody left who could do better
    else:
        assert stored["EURUSD"].provider == "polygon"
        assert world.status("EURUSD", "oanda").error.startswith("stale data")
        assert [name for name, _ in sourcing.fell_back("EURUSD")] == ["oanda"]


def test_a_symbol_does_not_flip_back_on_the_next_refresh(world, frozen_clock):
    """OANDA fails EURUSD once: a live Polygon serves it, and keeps serving it while OANDA's
    failure is recent (`return_after`), though OANDA answers again; then OANDA serves again."""
    if world.polygon_plan == "free":
        pytest.skip("a day-old close is never preferred to a live price: no hysteresis to show")
    from assets_pipeline.simulator.oanda import OandaFault

    world.oanda.add_fault(OandaFault("http_503", count=1))
    assert world.refresh(["EURUSD"])[2]["EURUSD"].provider == "polygon"
    for seconds in (300, 300, 299):  # 5, 10 and just under 15 minutes later
        frozen_clock.advance(seconds)
        assert world.refresh(["EURUSD"])[2]["EURUSD"].provider == "polygon"
    assert world.requests(world.oanda) == 1  # its one failure
    frozen_clock.advance(2)  # more than 15 minutes since OANDA failed it
    assert world.refresh(["EURUSD"])[2]["EURUSD"].provider == "oanda"


def test_a_provider_out_of_slots_is_passed_over_and_its_budget_never_exceeded(world):
    if world.polygon_plan == "free":
        pytest.skip("with Polygon on day bars only, Kraken is asked and waits for its slot")
    world.kraken_calls = 2  # one refresh: Kraken's clock and one ticker call
    first = world.refresh()[2]
    second = world.refresh()[2]
    assert first["BTCUSD"].provider == "kraken"
    assert second["BTCUSD"].provider == "polygon"  # no Kraken slot free right now
    assert world.requests(world.kraken) == 2


def test_a_critical_symbol_on_a_fallback_too_long_fails_its_primary_provider_check(
    world, frozen_clock, pg_url
):
    import dagster as dg

    from assets_pipeline.defs.checks import PROVIDER_CHECK, judge_providers
    from assets_pipeline.defs.keys import quote_asset_key
    from assets_pipeline.defs.resources import TradingDatabase

    if world.polygon_plan == "free":
        pytest.skip(
            "a day-old close is older than Kraken's stored price: never stored, no fallback"
        )
    database = TradingDatabase(url=pg_url)
    selected = {dg.AssetCheckKey(quote_asset_key(s), PROVIDER_CHECK) for s in CRITICAL_SYMBOLS}

    def verdicts() -> dict[str, bool]:
        return {
            r.asset_key.path[-1]: r.passed
            for r in judge_providers(world.registry, database, selected)
        }

    world.refresh()
    assert verdicts() == dict.fromkeys(CRITICAL_SYMBOLS, True)
    world.kraken.stop()
    world.refresh()  # BTCUSD on Polygon from now
    frozen_clock.advance(1800)
    world.refresh()
    assert verdicts()["BTCUSD"] is True  # 30 minutes: not yet longer than alert_after
    frozen_clock.advance(1)
    failed = {r.asset_key.path[-1]: r for r in judge_providers(world.registry, database, selected)}
    assert failed["BTCUSD"].passed is False
    assert "served by polygon, a fallback, for 30.0 minutes (its primary is kraken" in (
        failed["BTCUSD"].description
    )
    assert failed["EURUSD"].passed is True


@pytest.mark.parametrize("plan", ["free", "auto"])
def test_a_live_provider_keeps_its_symbols_due_whatever_polygons_plan(plan):
    """On Polygon's free plan a symbol holding the newest day bar is not fetched again until
    the next close is published; a symbol a live provider serves is due at every cadence, even
    when its stored price is a day bar its fallback gave (the live provider may be back)."""
    from assets_pipeline.rules.quotes import Quote

    live = parse_registry(SYMBOLS, plan=plan, live_providers=frozenset({"kraken", "oanda"}))
    alone = parse_registry(SYMBOLS, plan=plan)
    at = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    eurusd = live.get("EURUSD")
    day_bar = Quote(
        ticker="C:EURUSD",
        data_time=dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC),  # the newest close
        source="polygon:grouped-daily",
        last_price=1.08,
        timeframe=Timeframe.END_OF_DAY,
    )
    assert live.due(eurusd, day_bar, at)
    assert not alone.due(alone.get("EURUSD"), day_bar, at)  # the newest close is stored
    assert not live.on_day_bars(day_bar, eurusd)  # judged on stale_after, not the bar schedule
    # Polygon alone serves SPX: holding its newest close, it is not fetched again
    assert not live.due(live.get("SPX"), _spx_bar(), at)


def _spx_bar():
    from assets_pipeline.rules.quotes import Quote

    return Quote(
        ticker="I:SPX",
        data_time=dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC),
        source="polygon:index-daily",
        last_price=5500.0,
        timeframe=Timeframe.END_OF_DAY,
    )


# --- crypto's second live source ------------------------------------------------------------

CRYPTO = ["BTCUSD", "ETHUSDT"]


def test_crypto_symbols_list_kraken_then_bitstamp_then_polygon(crypto_world):
    registry = crypto_world.registry
    chains = [registry.chain(registry.get(s)) for s in CRYPTO]
    assert chains == [("kraken", "bitstamp", "polygon")] * 2


def test_with_kraken_healthy_it_serves_and_bitstamp_is_not_asked(crypto_world):
    batch, _, stored = crypto_world.refresh(CRYPTO, MANUAL)
    assert batch.failed == {}
    assert {s: q.provider for s, q in stored.items()} == {"BTCUSD": "kraken", "ETHUSDT": "kraken"}
    assert crypto_world.bitstamp.requests == []


def test_a_stopped_kraken_passes_crypto_to_bitstamp_live_in_the_same_run(crypto_world):
    world = crypto_world
    world.kraken.stop()
    batch, sourcing, stored = world.refresh(CRYPTO, MANUAL)
    assert batch.failed == {}  # nothing lost
    assert sorted(batch.updated) == sorted(CRYPTO)
    now = _now()
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
    assert world.requests(world.polygon) == 0
    assert serving(world.engine, ["BTCUSD"])["BTCUSD"].fallback_since == now


def test_with_both_exchanges_stopped_polygon_still_serves(crypto_world):
    crypto_world.kraken.stop()
    crypto_world.bitstamp.stop()
    batch, _, stored = crypto_world.refresh(["BTCUSD"])
    assert batch.failed == {}
    assert stored["BTCUSD"].provider == "polygon"
    plan = crypto_world.polygon_plan
    expected = Timeframe.END_OF_DAY if plan == "free" else Timeframe.REAL_TIME
    assert stored["BTCUSD"].timeframe is expected


def test_a_provider_budget_smaller_than_its_critical_reserve_still_serves_other_runs(pg_url):
    """Kraken at 2 calls a window, a critical refresh costing 2: a queue or manual run keeps
    one call, not none (a budget refusing every caller would switch the provider off)."""
    from assets_pipeline.budget.fairness import CRITICAL_CALLER
    from assets_pipeline.defs.resources import CallBudgetResource, RedisResource, TradingDatabase
    from assets_pipeline.defs.sources import KrakenResource

    database = TradingDatabase(url=pg_url)
    budget = CallBudgetResource(
        name="kraken",
        calls=2,
        window_seconds=60,
        store="database",
        redis=RedisResource(),
        database=database,
    )
    kraken = KrakenResource(base_url="http://127.0.0.1:9", budget=budget)
    registry = parse_registry(SYMBOLS)
    secondary = kraken.caller(registry, "kraken", critical=False)
    assert secondary.reserve == 1
    assert kraken.provider(None, secondary).budget.caller.reserve == 1  # it builds
    assert kraken.caller(registry, "kraken", critical=True) is CRITICAL_CALLER


def test_a_provider_only_our_budget_kept_from_answering_is_not_failed_nor_held(world):
    """Kraken asked first but without a slot before its wait ran out (another process took
    them): Polygon serves BTCUSD; Kraken's row is not `failed` (which would hold it back for
    `return_after`) and not left `in_progress`."""
    from assets_pipeline.budget.interface import BudgetCongested

    sourcing = world.sourcing
    busy_kraken = []

    def with_a_congested_kraken():
        built = sourcing()
        kraken = built.sources["kraken"].provider

        def fetch_quotes(instruments):
            busy_kraken.append(instruments)
            return {i: BudgetCongested("no Kraken call slot within 15s") for i in instruments}

        kraken.fetch_quotes = fetch_quotes
        return built

    world.sourcing = with_a_congested_kraken
    batch, refresh_sourcing, stored = world.refresh(["BTCUSD"])
    assert busy_kraken and stored["BTCUSD"].provider == "polygon" and batch.failed == {}
    assert world.status("BTCUSD", "kraken").status == "pending"
    assert refresh_sourcing.failed("BTCUSD") == []
    assert [name for name, _ in refresh_sourcing.fell_back("BTCUSD")] == ["kraken"]
