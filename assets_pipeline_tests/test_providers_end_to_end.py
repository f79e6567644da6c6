"""Issue 20's "done when", through Dagster as the code location builds it from the environment,
on the real PostgreSQL and Redis: with only free accounts (Polygon's free plan, Kraken's public
data, an OANDA practice account, each its simulator over HTTP) the critical symbols carry live
prices served by the providers their metadata and events name, Polygon still serves what only
it serves, and stopping one provider's service moves its critical symbols to the next at the
next critical refresh, with nothing lost and no provider's budget exceeded."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets_pipeline.config.registry import load_registry
from assets_pipeline.persistence.provider_state import provider_syncs
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline.simulator.bitstamp import BitstampSimulator
from assets_pipeline.simulator.kraken import KrakenSimulator
from assets_pipeline.simulator.oanda import DEFAULT_ACCOUNT, DEFAULT_TOKEN, OandaSimulator
from assets_pipeline_tests.conftest import (
    ALWAYS_OPEN,
    REDIS_URL,
    always_open_symbols_file,
    get_engine,
    max_in_any_window,
)
from assets_pipeline_tests.test_assets_end_to_end import Subscriber

POLYGON_KEY = "free-plan-key-0123456789abcdef"
CRITICAL = ["XAUUSD", "EURUSD", "BTCUSD"]
BUDGETS = {"KRAKEN": (6, 60.0), "OANDA": (4, 60.0), "BITSTAMP": (6, 60.0), "POLYGON": (5, 60.0)}


class FreeAccounts:
    """A deployment on free accounts only, each vendor its simulator."""

    def __init__(self, monkeypatch, tmp_path: Path, pg_url: str, namespace: str) -> None:
        self.polygon = PolygonSimulator(
            host="127.0.0.1", port=0, plan="free", api_keys={POLYGON_KEY}
        )
        self.kraken = KrakenSimulator(host="127.0.0.1", port=0)
        self.oanda = OandaSimulator(host="127.0.0.1", port=0, market_hours=False)
        self.bitstamp = BitstampSimulator(host="127.0.0.1", port=0)
        for simulator in self.simulators:
            simulator.start()
        self.pg_url, self.namespace = pg_url, namespace
        env = {
            "POLYGON_BASE_URL": self.polygon.url,
            "POLYGON_API_KEY": POLYGON_KEY,
            "POLYGON_PLAN": "free",
            "KRAKEN_BASE_URL": self.kraken.url,
            "BITSTAMP_BASE_URL": self.bitstamp.url,
            "OANDA_BASE_URL": self.oanda.url,
            "OANDA_API_TOKEN": DEFAULT_TOKEN,
            "OANDA_ACCOUNT_ID": DEFAULT_ACCOUNT,
            "TRADING_DATABASE_URL": pg_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_NAMESPACE": namespace,
        }
        for prefix, (calls, window) in BUDGETS.items():
            env[f"{prefix}_RATE_LIMIT_CALLS"] = str(calls)
            env[f"{prefix}_RATE_LIMIT_WINDOW_SECONDS"] = str(window)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        document = yaml.safe_load(always_open_symbols_file(tmp_path).read_text())
        document["symbols"].append(
            {
                "symbol": "SPX",
                "polygon_ticker": "I:SPX",
                "asset_type": "index",
                "tier": "high",
                "name": "S&P 500",
                "base_asset": "SPX",
                "quote_asset": "USD",
                "price_precision": 2,
            }
        )
        document["market_hours"] = {**ALWAYS_OPEN, "index": "always"}
        self.symbols_file = tmp_path / "free-accounts.yaml"
        self.symbols_file.write_text(yaml.safe_dump(document))
        self.instance = dg.DagsterInstance.ephemeral()
        self.kraken_running = True

    def defs(self) -> dg.Definitions:
        from assets_pipeline.definitions import build_definitions

        return build_definitions(load_registry(self.symbols_file))

    def refresh_critical(self) -> dg.ExecuteInProcessResult:
        job = self.defs().resolve_job_def("refresh_critical")
        return job.execute_in_process(instance=self.instance, raise_on_error=False)

    def materialize(self, symbols: list[str]) -> dg.ExecuteInProcessResult:
        job = self.defs().resolve_implicit_global_asset_job_def()
        keys = [dg.AssetKey(["quotes", s]) for s in symbols]
        return job.execute_in_process(
            instance=self.instance, raise_on_error=False, asset_selection=keys
        )

    @property
    def simulators(self) -> tuple:
        return (self.polygon, self.kraken, self.oanda, self.bitstamp)

    def close(self) -> None:
        for simulator in self.simulators:
            if simulator is not self.kraken or self.kraken_running:
                simulator.stop()

    def stop_kraken(self) -> None:
        self.kraken.stop()
        self.kraken_running = False


@pytest.fixture
def accounts(monkeypatch, tmp_path, pg_url, redis_namespace):
    deployment = FreeAccounts(monkeypatch, tmp_path, pg_url, redis_namespace)
    yield deployment
    deployment.close()


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        m.asset_key.path[-1]: {k: getattr(v, "value", v) for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node("quotes")
    }


def test_free_accounts_give_the_critical_symbols_live_prices_and_a_stopped_provider_moves_them(
    accounts,
):
    channels = [f"{accounts.namespace}asset:update:{s}" for s in CRITICAL]
    subscriber = Subscriber(channels)
    try:
        first = accounts.refresh_critical()
        assert first.success
        meta = _metadata(first)
        assert {s: meta[s]["provider"] for s in CRITICAL} == {
            "XAUUSD": "oanda",
            "EURUSD": "oanda",
            "BTCUSD": "kraken",
        }
        cadence = 300  # the critical tier refreshes every 5 minutes
        for symbol in CRITICAL:
            assert meta[symbol]["timeframe"] == "REAL-TIME"
            assert meta[symbol]["data_age_seconds"] < cadence
        events = subscriber.wait_for(3)
        assert {e[1]["symbol"]: e[1]["data"]["provider"] for e in events} == {
            "XAUUSD": "oanda",
            "EURUSD": "oanda",
            "BTCUSD": "kraken",
        }
        assert all(e[1]["data"]["timeframe"] == "REAL-TIME" for e in events)

        accounts.stop_kraken()  # Kraken's service stops
        second = accounts.refresh_critical()  # the next critical refresh
        events = subscriber.wait_for(6)
    finally:
        subscriber.close()
    assert second.success  # nothing lost: every critical symbol stored
    meta = _metadata(second)
    # the next provider in BTCUSD's list: Bitstamp, live, in the same run
    assert (meta["BTCUSD"]["provider"], meta["BTCUSD"]["timeframe"]) == ("bitstamp", "REAL-TIME")
    assert meta["BTCUSD"]["passed_over"].startswith("kraken: ")
    assert meta["BTCUSD"]["data_age_seconds"] < cadence
    assert meta["EURUSD"]["provider"] == "oanda"
    announced = [e[1] for e in events if e[1]["symbol"] == "BTCUSD"]
    assert [e["data"]["provider"] for e in announced] == ["kraken", "bitstamp"]
    syncs = provider_syncs(get_engine(accounts.pg_url), ["BTCUSD"])["BTCUSD"]
    assert syncs["kraken"].status == "failed" and syncs["bitstamp"].status == "success"
    assert "polygon" not in syncs or syncs["polygon"].status != "success"


def test_polygon_still_serves_what_only_it_serves_on_its_free_plan(accounts):
    result = accounts.materialize(["SPX", "EURUSD"])
    assert result.success
    meta = _metadata(result)
    assert (meta["SPX"]["provider"], meta["SPX"]["timeframe"]) == ("polygon", "END-OF-DAY")
    assert meta["EURUSD"]["provider"] == "oanda"


def test_no_providers_budget_is_exceeded_over_refreshes(accounts):
    for _ in range(4):
        accounts.refresh_critical()
    pairs = ((accounts.kraken, "KRAKEN"), (accounts.oanda, "OANDA"))
    for simulator, prefix in pairs:
        times = [r.at for r in simulator.requests if not r.path.startswith("/_sim")]
        calls, window = BUDGETS[prefix]
        assert times, prefix
        assert max_in_any_window(times, window) <= calls, prefix


def test_the_critical_symbols_asset_metadata_names_their_providers_in_order(accounts):
    graph = accounts.defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey(["quotes", "BTCUSD"]))
    assert node.metadata["providers"] == "kraken, bitstamp, polygon"
    assert set(node.kinds) == {"kraken", "crypto"}  # two badges: the catalog shows its name
