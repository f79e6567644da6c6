"""End to end through Dagster: symbols file -> Polygon (simulator) -> PostgreSQL -> Redis.

The definitions are built exactly as the code location builds them, from environment variables,
and run against the real PostgreSQL and Redis on this machine. The live quotes (`quotes/<SYMBOL>`)
have no partitions; history (`history/<SYMBOL>`) is backfilled by past days, apart from them.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import redis
import sqlalchemy as sa
import yaml

from assets_pipeline.config.registry import load_registry
from assets_pipeline.persistence.outbox import pending_count, relay_pending
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.schema import event_outbox, quote_history, symbols
from assets_pipeline.rules.quotes import Quote, iso_utc
from assets_pipeline.rules.run_kinds import run_tags
from assets_pipeline.simulator import Fault, PolygonSimulator
from assets_pipeline_tests.conftest import REDIS_URL, get_engine, symbol_entry

SECRET = "sk-live-7f3e9a1c5b2d4e6f8a0b-DO-NOT-LEAK"
CRITICAL = ["XAUUSD", "EURUSD", "BTCUSD"]


class Pipeline:
    """The deployment under test: its env, simulator, database and Redis namespace."""

    def __init__(self, monkeypatch, sim, database_url, namespace, redis_url=REDIS_URL):
        self.monkeypatch = monkeypatch
        self.sim = sim
        self.database_url = database_url
        self.namespace = namespace
        env = {
            "POLYGON_API_KEY": SECRET,
            "POLYGON_BASE_URL": sim.url,
            "POLYGON_RATE_LIMIT_CALLS": "100",
            "TRADING_DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_NAMESPACE": namespace,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        self.instance = dg.DagsterInstance.ephemeral()

    def defs(self, symbols_file: Path | None = None) -> dg.Definitions:
        from assets_pipeline.definitions import build_definitions

        return build_definitions(load_registry(symbols_file) if symbols_file else None)

    def run(self, job="refresh_critical", symbols_file=None, mode=None, **options):
        """Run `job` in-process."""
        if mode:
            self.monkeypatch.setenv("POLYGON_SNAPSHOT_MODE", mode)
        job_def = self.defs(symbols_file).resolve_job_def(job)
        return job_def.execute_in_process(instance=self.instance, raise_on_error=False, **options)

    def backfill(self, first, last, symbols=CRITICAL, instance=None):
        """A backfill of `history/<SYMBOL>` over the days `first` to `last`, as the UI launches
        one: a single run over the range (the assets' `BackfillPolicy.single_run()`)."""
        job = self.defs().resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=instance or self.instance,
            raise_on_error=False,
            asset_selection=[dg.AssetKey(["history", s]) for s in symbols],
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
                "dagster/backfill": "test",
            },
        )

    @property
    def store(self) -> QuoteStore:
        return QuoteStore(get_engine(self.database_url), self.namespace)

    def api_requests(self):
        return [r for r in self.sim.requests if not r.path.startswith("/_sim")]


@pytest.fixture
def sim():
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={SECRET}) as simulator:
        yield simulator


@pytest.fixture
def pipeline(monkeypatch, sim, pg_url, redis_namespace):
    return Pipeline(monkeypatch, sim, pg_url, redis_namespace)


class Subscriber:
    """Collects what Redis delivers on some channels, from a thread, like a live service."""

    def __init__(self, channels):
        self.client = redis.Redis.from_url(REDIS_URL)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(*channels)
        while self.pubsub.get_message(timeout=1) is not None:  # subscription confirmations
            pass
        self.messages: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while not self._stop.is_set():
            message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message and message["type"] == "message":
                self.messages.append((message["channel"].decode(), json.loads(message["data"])))

    def wait_for(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # and catch any duplicate
        return self.messages

    def close(self):
        self._stop.set()
        self._thread.join()
        self.pubsub.close()
        self.client.close()


def test_materializing_the_critical_tier_stores_rows_status_history_and_announces(pipeline):
    channels = [f"{pipeline.namespace}asset:update:{s}" for s in CRITICAL]
    subscriber = Subscriber(channels)
    try:
        result = pipeline.run("refresh_critical")
        messages = subscriber.wait_for(3)
    finally:
        subscriber.close()
    assert result.success

    # one batch call for the whole tier, in one run and one step
    requests = pipeline.api_requests()
    assert [r.path for r in requests] == ["/v3/snapshot"]
    assert requests[0].query["ticker.any_of"] == "C:XAUUSD,C:EURUSD,X:BTCUSD"

    materialized = {
        m.asset_key.path[-1]: m for m in result.asset_materializations_for_node("quotes")
    }
    assert sorted(materialized) == sorted(CRITICAL)
    meta = materialized["EURUSD"].metadata
    for key in ("bid", "ask", "spread", "last_price", "data_time", "data_age_seconds"):
        assert key in meta
    assert meta["api_calls"].value == 1 and meta["budget_waits"].value == 0
    # shown at each symbol's precision (EURUSD 5, BTCUSD 2), never as float noise
    for symbol, precision in (("EURUSD", 5), ("BTCUSD", 2), ("XAUUSD", 2)):
        shown = materialized[symbol].metadata
        for key in ("last_price", "daily_high", "daily_low"):
            decimals = repr(float(shown[key].value)).partition(".")[2]
            assert len(decimals) <= precision, (symbol, key, shown[key].value)
    assert meta["written"].value is True
    assert materialized["EURUSD"].partition is None  # the live quote has no partitions

    store = pipeline.store
    for symbol in CRITICAL:
        latest = store.latest_quote(symbol)
        assert latest is not None and latest.last_price > 0
        assert store.sync_status(symbol)["sync_status"] == "success"
    assert store.latest_quote("BTCUSD").bid is None  # crypto: null, never 0
    with store.engine.connect() as conn:
        history = conn.execute(
            sa.select(
                quote_history.c.symbol, quote_history.c.partition_date, quote_history.c.quote_time
            )
        ).all()
        unsent = conn.execute(
            sa.select(sa.func.count()).where(event_outbox.c.sent_at.is_(None))
        ).scalar_one()
        registered = conn.execute(sa.select(sa.func.count()).select_from(symbols)).scalar_one()
    assert sorted(h.symbol for h in history) == sorted(CRITICAL)
    for row in history:  # filed under the UTC day of the quote's own data time
        assert row.partition_date == row.quote_time.astimezone(dt.UTC).date()
    assert unsent == 0
    assert registered == 3

    # each symbol announced once, on its own channel, in the platform's shape
    assert sorted(channel for channel, _ in messages) == sorted(channels)
    for channel, message in messages:
        symbol = channel.rsplit(":", 1)[-1]
        assert set(message) == {"type", "symbol", "data", "event_id", "schema_version", "sequence"}
        assert (message["schema_version"], message["sequence"]) == (3, 1)
        assert message["type"] == "price_update" and message["symbol"] == symbol
        assert set(message["data"]) == {
            *("bid", "ask", "spread", "last_price", "timestamp", "data_time", "fetched_at"),
            *("source", "provider", "plan", "timeframe"),
        }
        stored = store.latest_quote(symbol)
        assert message["data"]["last_price"] == stored.last_price
        # the market's time, and beside it when we fetched it
        assert message["data"]["data_time"] == iso_utc(stored.data_time)
        assert message["data"]["timestamp"] == message["data"]["data_time"]
        assert message["data"]["fetched_at"] == iso_utc(stored.fetched_at)
        assert (message["data"]["timeframe"], message["data"]["plan"]) == ("REAL-TIME", "paid")
    assert dict(messages)[f"{pipeline.namespace}asset:update:BTCUSD"]["data"]["bid"] is None


def test_per_ticker_mode_spends_one_call_per_symbol(pipeline):
    result = pipeline.run("refresh_critical", mode="per_ticker")
    assert result.success
    assert len(pipeline.api_requests()) == 3
    assert {r.path.split("/")[-2] for r in pipeline.api_requests()} == {"tickers"}


def bars_of(pipeline, symbol):
    from assets_pipeline.persistence.schema import price_bars

    with get_engine(pipeline.database_url).connect() as conn:
        return conn.execute(
            sa.select(price_bars.c.bar_start, price_bars.c.close)
            .where(price_bars.c.symbol == symbol)
            .order_by(price_bars.c.bar_start)
        ).all()


def days_ago(n: int) -> dt.date:
    from assets_pipeline.rules import clock

    return clock.today() - dt.timedelta(days=n)


def test_a_backfilled_day_stores_its_bars_and_never_the_live_state(pipeline):
    day = days_ago(2)
    result = pipeline.backfill(day, day)
    assert result.success
    for symbol in CRITICAL:
        bars = bars_of(pipeline, symbol)
        assert len(bars) == 288  # a day of 5-minute bars (the simulator trades every day)
        assert {b.bar_start.astimezone(dt.UTC).date() for b in bars} == {day}
        assert pipeline.store.latest_quote(symbol) is None  # the live quote is not history's
        assert pipeline.store.sync_status(symbol) is None  # nor its sync status
    assert len(pipeline.api_requests()) == 3  # one range request per ticker
    # no check evaluated (freshness judges the live quote), no live asset materialized
    assert result.get_asset_check_evaluations() == []
    assert {m.asset_key.path[0] for m in result.get_asset_materialization_events()} == {"history"}
    with get_engine(pipeline.database_url).connect() as conn:
        for table in (event_outbox, quote_history, symbols):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
    # backfilling the day again rewrites the same rows
    assert pipeline.backfill(day, day).success
    assert len(bars_of(pipeline, "EURUSD")) == 288


def test_a_backfill_of_days_is_one_run_and_one_call_per_symbol(pipeline):
    first, last = days_ago(5), days_ago(3)
    result = pipeline.backfill(first, last)
    assert result.success
    assert len(pipeline.api_requests()) == 3  # three days, one request per symbol
    assert len(bars_of(pipeline, "BTCUSD")) == 3 * 288
    materialized = result.get_asset_materialization_events()
    assert sorted((e.asset_key.path[-1], e.partition) for e in materialized) == sorted(
        (s, (first + dt.timedelta(days=n)).isoformat()) for s in CRITICAL for n in range(3)
    )
    # a backfill is never critical: it left the reserve and did not move its clock
    stats = redis.Redis.from_url(REDIS_URL).hgetall(f"{pipeline.namespace}budget:{{polygon}}:stats")
    assert b"last_critical" not in stats
    # the run's totals are the run's: in its tag and log line, never in a partition's metadata
    totals = pipeline.instance.get_run_by_id(result.run_id).tags["history/totals"]
    assert "3 day(s)" in totals and f"{3 * 3 * 288} bar(s)" in totals and "3 API call(s)" in totals


def symbols_file_with_unknown(tmp_path: Path) -> Path:
    document = yaml.safe_load(Path(load_registry().source).read_text())
    document["symbols"] = [s for s in document["symbols"] if s["tier"] == "critical"] + [
        {
            "symbol": "ZARUSD",
            "polygon_ticker": "C:ZARUSD",  # not a ticker Polygon knows
            "asset_type": "forex",
            "tier": "critical",
            "name": "Rand",
            "base_asset": "ZAR",
            "quote_asset": "USD",
            "price_precision": 5,
        }
    ]
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("mode", ["batch", "per_ticker"])
def test_an_unknown_ticker_and_a_403_fail_only_their_own_symbols(pipeline, tmp_path, mode):
    # On a paid plan a 403 is that symbol's (on `auto` it would teach the market's refusal)
    pipeline.monkeypatch.setenv("POLYGON_PLAN", "paid")
    path = symbols_file_with_unknown(tmp_path)
    first = pipeline.run("refresh_critical", symbols_file=path, mode=mode)
    assert not first.success  # ZARUSD is unknown
    eur_before = pipeline.store.latest_quote("EURUSD")
    pipeline.sim.add_fault(Fault("forbidden", ticker="C:EURUSD"))

    result = pipeline.run("refresh_critical", symbols_file=path, mode=mode)

    assert not result.success
    done = {m.asset_key.path[-1] for m in result.asset_materializations_for_node("quotes")}
    assert done == {"XAUUSD", "BTCUSD"}
    store = pipeline.store
    assert (
        "ZARUSD" in store.sync_status("ZARUSD")["error_message"]
        or "C:ZARUSD" in (store.sync_status("ZARUSD")["error_message"])
    )
    assert store.sync_status("ZARUSD")["sync_status"] == "failed"
    eur = store.sync_status("EURUSD")
    assert eur["sync_status"] == "failed" and "NOT_AUTHORIZED" in eur["error_message"]
    assert store.latest_quote("EURUSD") == eur_before  # the old row is intact
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "2 of 4 symbol(s) failed; the other 2 were stored" in message
    # a permanent error is never retried: one 403 for EURUSD at most per attempt path
    forbidden = [r for r in pipeline.api_requests() if r.status == 403]
    assert len(forbidden) == 1 if mode == "per_ticker" else len(forbidden) in (1, 2)


def test_the_key_never_reaches_logs_run_events_or_the_ui(pipeline, tmp_path, caplog):
    caplog.set_level("DEBUG")
    pipeline.sim.add_fault(Fault("forbidden", ticker="C:EURUSD"))
    pipeline.sim.add_fault(Fault("http_500", count=1))
    result = pipeline.run("refresh_critical", symbols_file=symbols_file_with_unknown(tmp_path))
    assert not result.success
    records = pipeline.instance.all_logs(result.run_id)
    assert records and all(SECRET not in repr(r) for r in records)
    run = pipeline.instance.get_run_by_id(result.run_id)
    assert SECRET not in repr(run)
    assert SECRET not in caplog.text
    # what the UI shows of the resource config is the variable's name, not its value
    defs = pipeline.defs()
    polygon = defs.resources["polygon"]
    assert "POLYGON_API_KEY" in repr(polygon.api.api_key) and SECRET not in repr(polygon)
    store_errors = " ".join(
        str(pipeline.store.sync_status(s)["error_message"]) for s in ("EURUSD", "ZARUSD")
    )
    assert SECRET not in store_errors


def test_with_redis_down_the_write_succeeds_and_the_relay_delivers_each_event_once(
    monkeypatch, sim, pg_url, redis_namespace
):
    # The budget lives in the database here, so Redis being down only affects the events.
    monkeypatch.setenv("POLYGON_BUDGET_STORE", "database")
    down = Pipeline(monkeypatch, sim, pg_url, redis_namespace, redis_url="redis://127.0.0.1:1/0")
    result = down.run("refresh_critical")
    assert result.success
    engine = get_engine(pg_url)
    assert pending_count(engine) == 3
    meta = result.asset_materializations_for_node("quotes")[0].metadata
    assert meta["written"].value is True and meta["event_id"].value
    said = [r.user_message for r in down.instance.all_logs(result.run_id)]
    assert len([m for m in said if "events wait in the outbox: Redis said" in m]) == 1
    # the step's one relay tried the oldest event, met the outage and left the rest to the relay
    with engine.connect() as conn:
        tries = conn.execute(sa.select(event_outbox.c.attempts).order_by(event_outbox.c.id))
        assert list(tries.scalars()) == [1, 0, 0]

    # a second refresh while Redis is still down adds three more events, still in order
    time.sleep(0.01)  # the simulator's quotes are timed to the call, so these are newer
    assert down.run("refresh_critical").success
    assert pending_count(engine) == 6

    channels = [f"{redis_namespace}asset:update:{s}" for s in CRITICAL]
    subscriber = Subscriber(channels)
    try:
        live = redis.Redis.from_url(REDIS_URL)
        first = relay_pending(engine, live)
        again = relay_pending(engine, live)
        messages = subscriber.wait_for(6)
    finally:
        subscriber.close()
    assert (first.sent, first.pending, again.sent) == (6, 0, 0)
    ids = [m["event_id"] for _, m in messages]
    assert len(ids) == 6 and len(set(ids)) == 6  # each once
    with engine.connect() as conn:
        order = (
            conn.execute(sa.select(event_outbox.c.event_id).order_by(event_outbox.c.id))
            .scalars()
            .all()
        )
    assert ids == order  # oldest first


def test_with_the_budget_in_redis_and_redis_down_no_call_is_made(
    monkeypatch, sim, pg_url, redis_namespace
):
    down = Pipeline(monkeypatch, sim, pg_url, redis_namespace, redis_url="redis://127.0.0.1:1/0")
    result = down.run("refresh_critical")
    assert not result.success
    assert down.api_requests() == []  # failing closed
    status = down.store.sync_status("EURUSD")
    assert status["sync_status"] == "failed"
    assert "budget store (redis) is unreachable" in status["error_message"]


def test_overriding_one_setting_in_the_launchpad_keeps_the_others(pipeline):
    # Dagster resets a resource's other fields when run config sets one of them
    # (defs/test_resources.py); the endpoint, the key and the database, loaded from the
    # environment with the definitions, must still be the deployment's.
    result = pipeline.run(
        "refresh_critical",
        run_config={"resources": {"polygon": {"config": {"snapshot_mode": "per_ticker"}}}},
    )
    assert result.success
    assert len(pipeline.api_requests()) == 3  # our simulator, per ticker
    assert pipeline.store.latest_quote("EURUSD") is not None


def test_the_embedded_simulator_never_feeds_a_real_database(pipeline, monkeypatch):
    monkeypatch.delenv("POLYGON_BASE_URL")
    result = pipeline.run("refresh_critical")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "embedded Polygon simulator only serves the embedded database" in (
        failure.step_failure_data.error.message
    )
    assert pipeline.store.latest_quote("EURUSD") is None


def test_a_queue_batch_settles_its_items_and_reports_its_result(pipeline, caplog):
    from assets_pipeline.persistence.batches import recent_batches
    from assets_pipeline.persistence.refresh_queue import RefreshQueue
    from assets_pipeline.rules.queue_rules import IN_FLIGHT, QUEUED
    from assets_pipeline.rules.run_kinds import run_tags
    from assets_pipeline.rules.taxonomy import Tier

    engine = get_engine(pipeline.database_url)
    queue = RefreshQueue(engine)
    queue.enqueue([("GBPUSD", Tier.HIGH), ("USDJPY", Tier.HIGH), ("AUDUSD", Tier.MEDIUM)])
    claimed = queue.claim(slots=2, per_call=1, batch_id="q-test-1")
    assert [i.symbol for i in claimed] == ["GBPUSD", "USDJPY"]
    pipeline.sim.add_fault(Fault("http_503", ticker="C:USDJPY"))

    result = pipeline.run(
        "refresh_queue",
        mode="per_ticker",
        asset_selection=[dg.AssetKey(["quotes", "GBPUSD"]), dg.AssetKey(["quotes", "USDJPY"])],
        tags=run_tags("queue", "q-test-1"),
    )

    assert not result.success  # USDJPY failed
    items = {i.symbol: i for i in queue.items()}
    assert "GBPUSD" not in items  # refreshed: off the queue
    usdjpy = items["USDJPY"]
    assert (usdjpy.status, usdjpy.tier, usdjpy.attempts) == (QUEUED, Tier.MEDIUM, 1)
    assert usdjpy.last_error.endswith("503 Service Temporarily Unavailable (HTML page)")
    assert items["AUDUSD"].status == QUEUED and not any(
        i.status == IN_FLIGHT for i in items.values()
    )
    # the queue is the retry: the run itself does not retry (one request for USDJPY)
    assert len([r for r in pipeline.api_requests() if "USDJPY" in r.path]) == 1

    (batch,) = recent_batches(engine)
    assert (batch.batch_id, batch.kind, batch.run_id) == ("q-test-1", "queue", result.run_id)
    assert batch.updated == ["GBPUSD"] and list(batch.failed) == ["USDJPY"]
    assert (batch.queue_processed, batch.queue_remaining, batch.api_calls) == (2, 2, 2)
    assert batch.duration_ms >= 0 and batch.ended_at >= batch.started_at
    tags = pipeline.instance.get_run_by_id(result.run_id).tags
    # a few tags, short enough for a row of the Runs list; the details are in the log line
    assert tags["assets_pipeline/result"] == "1 updated, 1 failed, 2 calls"
    assert tags["dagster/priority"] == "0"
    ours = [k for k in tags if not k.startswith("dagster/")]
    assert ours == ["assets_pipeline/batch", "assets_pipeline/kind", "assets_pipeline/result"]
    (materialization,) = result.asset_materializations_for_node("quotes")
    assert materialization.metadata["batch_id"].value == "q-test-1"
    logs = [r.user_message for r in pipeline.instance.all_logs(result.run_id) if r.user_message]
    (line,) = [m for m in logs if m.startswith("batch q-test-1 (queue)")]
    for part in (
        "ms: updated 1 [GBPUSD]",
        "failed 1 [USDJPY:",
        "queue processed 2 remaining 2",
        "API calls 2",
        "budget waits 0",
    ):
        assert part in line


def test_a_downstream_asset_reads_the_latest_quote_through_the_io_manager(pipeline):
    from assets_pipeline.defs.assets import build_quote_assets

    assert pipeline.run("refresh_critical").success
    registry = load_registry()
    seen = {}

    @dg.asset(ins={"eurusd": dg.AssetIn(key=["quotes", "EURUSD"])})
    def eurusd_mid(eurusd):
        seen["quote"] = eurusd

    defs = pipeline.defs()
    result = dg.materialize(
        [eurusd_mid, *build_quote_assets(registry)],
        selection=[eurusd_mid],
        resources=defs.resources,
        instance=pipeline.instance,
    )
    assert result.success
    quote = seen["quote"]
    stored = pipeline.store.latest_quote("EURUSD")
    assert isinstance(quote, Quote) and quote.symbol == "EURUSD"
    assert (quote.bid, quote.ask, quote.data_time) == (stored.bid, stored.ask, stored.data_time)


def test_a_downstream_asset_reads_a_past_days_bars_as_a_dataframe(pipeline):
    import pandas as pd

    from assets_pipeline.defs.history import build_history_assets, history_partitions

    day = days_ago(2)
    assert pipeline.backfill(day, day).success
    registry = load_registry()
    seen = {}

    @dg.asset(
        ins={"eurusd": dg.AssetIn(key=["history", "EURUSD"])},
        partitions_def=history_partitions(registry),
    )
    def eurusd_day(eurusd):
        seen["bars"] = eurusd

    result = dg.materialize(
        [eurusd_day, *build_history_assets(registry)],
        selection=[eurusd_day],
        partition_key=day.isoformat(),
        resources=pipeline.defs().resources,
        instance=pipeline.instance,
    )
    assert result.success
    bars = seen["bars"]
    assert isinstance(bars, pd.DataFrame) and len(bars) == 288
    assert set(bars["symbol"]) == {"EURUSD"} and bars["bar_start"].is_monotonic_increasing
    assert [float(c) for c in bars["close"]] == [b.close for b in bars_of(pipeline, "EURUSD")]


# --- runs the project did not launch, congestion ------------------------------------------------


def test_a_run_launched_from_the_ui_is_manual_even_when_it_selects_only_critical_symbols(pipeline):
    # The Materialize button starts a run with no tags of ours. It must not pass for a critical
    # refresh: that would skip the reserve and move the reserve's clock.
    from assets_pipeline.persistence.batches import recent_batches

    defs = pipeline.defs()
    critical = [dg.AssetKey(["quotes", s]) for s in CRITICAL]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=pipeline.instance,
        asset_selection=critical,
        raise_on_error=False,
    )
    assert result.success
    (batch,) = recent_batches(get_engine(pipeline.database_url))
    assert batch.kind == "manual" and sorted(batch.updated) == sorted(CRITICAL)
    # the budget was asked as a secondary caller: the time of the last critical call is unset
    stats = redis.Redis.from_url(REDIS_URL).hgetall(f"{pipeline.namespace}budget:{{polygon}}:stats")
    assert b"last_critical" not in stats and int(stats[b"total_calls"]) == 1


def test_a_symbol_that_finds_no_budget_slot_goes_back_to_its_place_unblamed(pipeline):
    # Every slot is taken until after the run's deadline: the queued symbols did nothing wrong.
    from assets_pipeline.budget.limiter import PolygonBudget
    from assets_pipeline.budget.redis_store import RedisBudgetStore
    from assets_pipeline.persistence.refresh_queue import RefreshQueue
    from assets_pipeline.rules.queue_rules import QUEUED
    from assets_pipeline.rules.run_kinds import run_tags
    from assets_pipeline.rules.taxonomy import Tier

    pipeline.monkeypatch.setenv("POLYGON_RATE_LIMIT_CALLS", "2")
    engine = get_engine(pipeline.database_url)
    queue = RefreshQueue(engine)
    queue.enqueue([("GBPUSD", Tier.HIGH), ("USDJPY", Tier.HIGH)])
    claimed = queue.claim(slots=2, per_call=1, batch_id="q-busy")
    registry = load_registry()
    for symbol in ("GBPUSD", "USDJPY"):  # refreshed fine earlier
        earlier = Quote(
            ticker="C:X",
            symbol=symbol,
            data_time=dt.datetime.now(dt.UTC),
            source="polygon:earlier",
            bid=1.0,
            ask=1.001,
            last_price=1.0005,
        )
        pipeline.store.write_quote(registry.get(symbol), earlier)
    before = {s: pipeline.store.sync_status(s) for s in ("GBPUSD", "USDJPY")}
    store = RedisBudgetStore(redis.Redis.from_url(REDIS_URL), namespace=pipeline.namespace)
    busy = PolygonBudget(store, 2, 60)
    busy.acquire(1)
    busy.acquire(1)  # both slots, for the next minute

    result = (
        pipeline.defs()
        .resolve_job_def("refresh_queue")
        .execute_in_process(
            instance=pipeline.instance,
            raise_on_error=False,
            asset_selection=[dg.AssetKey(["quotes", i.symbol]) for i in claimed],
            tags=run_tags("queue", "q-busy"),
            run_config={"resources": {"polygon": {"config": {"max_budget_wait_seconds": 0.5}}}},
        )
    )
    assert result.success  # nothing failed: the queue serves them later
    items = {i.symbol: i for i in queue.items()}
    for symbol in ("GBPUSD", "USDJPY"):
        assert (items[symbol].status, items[symbol].tier, items[symbol].attempts) == (
            QUEUED,
            Tier.HIGH,
            0,
        )
        after = pipeline.store.sync_status(symbol)
        for field in ("sync_status", "last_sync_timestamp", "error_message"):  # unchanged
            assert after[field] == before[symbol][field]
    assert pipeline.api_requests() == []


def test_the_spread_is_stored_at_the_symbols_precision_without_float_noise(pipeline):
    assert pipeline.run("refresh_critical").success
    for symbol, precision in (("EURUSD", 5), ("XAUUSD", 2)):
        with get_engine(pipeline.database_url).connect() as conn:
            meta = conn.execute(
                sa.select(symbols.c.meta).where(symbols.c.symbol == symbol)
            ).scalar_one()
        last = meta["last_update"]
        assert last["spread"] == round(last["ask"] - last["bid"], precision)
        assert len(repr(last["spread"]).split(".")[-1]) <= precision


def test_a_database_outage_mid_run_leaves_the_symbols_it_did_not_reach_in_progress(pipeline):
    # PostgreSQL goes away after the first symbol is stored (connections refused, existing ones
    # terminated: what a restart does to a run). The run fails; the symbols it did not reach
    # must not keep the `success` of an earlier run: their status says a refresh began.
    import threading

    from assets_pipeline_tests.conftest import _admin_engine

    assert pipeline.run("refresh_critical").success  # an earlier, successful run
    earlier = {s: pipeline.store.sync_status(s)["last_sync_timestamp"] for s in CRITICAL}
    pipeline.sim.add_fault(Fault("timeout", ticker="C:EURUSD", delay=3.0))  # slow, not too slow
    database = sa.engine.make_url(pipeline.database_url).database
    admin = _admin_engine()

    def restart_when_xauusd_is_stored():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = pipeline.store.sync_status("XAUUSD")
            if status["last_sync_timestamp"] != earlier["XAUUSD"]:
                break
            time.sleep(0.05)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            )

    outage = threading.Thread(target=restart_when_xauusd_is_stored)
    outage.start()
    try:
        result = pipeline.run("refresh_critical", mode="per_ticker")
    finally:
        outage.join()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        admin.dispose()
    assert not result.success
    statuses = {s: pipeline.store.sync_status(s) for s in CRITICAL}
    assert statuses["XAUUSD"]["sync_status"] == "success"  # stored before the outage
    for symbol in ("EURUSD", "BTCUSD"):  # not reached: not the earlier run's `success`
        assert statuses[symbol]["sync_status"] == "in_progress"
        assert statuses[symbol]["last_sync_timestamp"] == earlier[symbol]


# --- plans -----------------------------------------------------------------------------------


@pytest.fixture
def free_pipeline(monkeypatch, pg_url, redis_namespace):
    """A key on the free (Basic) plan: no snapshots at all, end-of-day aggregates only."""
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={SECRET}, plan="free") as sim:
        yield Pipeline(monkeypatch, sim, pg_url, redis_namespace)


def test_a_free_key_refreshes_all_nine_symbols_from_day_bars_without_a_403(free_pipeline):
    free_pipeline.monkeypatch.setenv("POLYGON_PLAN", "free")
    result = free_pipeline.run("refresh_quotes")
    assert result.success
    requests = free_pipeline.api_requests()
    assert [r.status for r in requests if r.status != 200] == []
    # grouped daily: one call for the seven forex pairs, one for the two crypto pairs
    assert sorted(r.path.rsplit("/", 2)[-2] for r in requests) == ["crypto", "fx"]
    for spec in load_registry():
        quote = free_pipeline.store.latest_quote(spec.symbol)
        assert quote.source == "polygon:v2-aggs-grouped-daily", spec.symbol
        assert quote.bid is None and quote.ask is None and quote.last_price > 0
        assert quote.data_time <= dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)  # not live
    # the UI shows each price at its symbol's precision, never binary float noise
    for materialization in result.asset_materializations_for_node("quotes"):
        precision = load_registry().get(materialization.asset_key.path[-1]).price_precision
        for key in ("last_price", "daily_high", "daily_low"):
            value = materialization.metadata[key].value
            assert value == round(value, precision), (materialization.asset_key, key, value)


#: What the critical tier's schedule puts on its runs.
CADENCE = run_tags("critical", tier="critical")


def test_a_free_key_two_refreshes_a_minute_apart_store_the_close_and_announce_it_once(
    free_pipeline, frozen_clock
):
    # Wednesday 2026-11-25 12:00Z on a free key: the newest day bars are Tuesday's, whose forex
    # and crypto sessions closed at midnight UTC. Two full refreshes a minute apart.
    free_pipeline.monkeypatch.setenv("POLYGON_PLAN", "free")
    first = free_pipeline.run("refresh_quotes")
    frozen_clock.advance(60)
    second = free_pipeline.run("refresh_quotes")
    assert first.success and second.success
    tuesday_close = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    store = free_pipeline.store
    for spec in load_registry():
        stored = store.latest_quote(spec.symbol)
        # the price is as of the session's close, not of either fetch
        assert stored.data_time == tuesday_close, spec.symbol
        assert stored.fetched_at == frozen_clock.now, spec.symbol  # the second look, recorded
        assert (stored.timeframe.value, stored.plan) == ("END-OF-DAY", "free")
        assert store.sync_status(spec.symbol)["sync_status"] == "success"
    # one event per symbol in all: the second refresh found nothing new
    with store.engine.connect() as conn:
        events = conn.execute(sa.select(event_outbox.c.symbol, event_outbox.c.payload)).all()
    assert sorted(e.symbol for e in events) == sorted(s.symbol for s in load_registry())
    data = json.loads(events[0].payload)["data"]
    assert (data["data_time"], data["timeframe"], data["plan"]) == (
        "2026-11-25T00:00:00.000000Z",
        "END-OF-DAY",
        "free",
    )
    # the quality check sees the same data again, not a problem
    quality = {e.asset_key.path[-1]: e for e in second.get_asset_check_evaluations()}
    assert all(e.passed for e in quality.values()) and len(quality) == 9
    # the checks say end-of-day, as new as the plan allows
    job = free_pipeline.defs().resolve_job_def("check_freshness")
    checked = job.execute_in_process(instance=free_pipeline.instance)
    checks = {
        (e.asset_key.path[-1], e.check_name): e for e in checked.get_asset_check_evaluations()
    }
    fresh = checks[("EURUSD", "fresh")]
    assert fresh.passed and checks[("EURUSD", "quote_age")].passed
    assert fresh.metadata["freshness"].text.startswith(
        "end-of-day plan: newest data is the close of 2026-11-24"
    )


def test_on_a_free_key_a_cadence_run_spends_no_call_until_a_new_bar_is_published(
    free_pipeline, frozen_clock
):
    free_pipeline.monkeypatch.setenv("POLYGON_PLAN", "free")
    assert free_pipeline.run("refresh_critical", tags=CADENCE).success
    calls = len(free_pipeline.api_requests())
    assert calls == 2  # grouped daily: forex (XAUUSD, EURUSD) and crypto (BTCUSD)
    # every 5 minutes until Thursday's publication: nothing new can exist, no call is made
    frozen_clock.advance(5 * 60)
    assert free_pipeline.run("refresh_critical", tags=CADENCE).success
    assert len(free_pipeline.api_requests()) == calls
    # Wednesday's bars close at midnight and are published 30 minutes later: one call each
    frozen_clock.move_to(dt.datetime(2026, 11, 26, 0, 31, tzinfo=dt.UTC))
    assert free_pipeline.run("refresh_critical", tags=CADENCE).success
    assert len(free_pipeline.api_requests()) == calls + 2
    wednesday_close = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    assert free_pipeline.store.latest_quote("XAUUSD").data_time == wednesday_close


def test_on_a_free_key_a_refresh_soon_after_another_waits_for_no_slot_it_does_not_need(
    free_pipeline, frozen_clock
):
    # 5 calls a minute; a full refresh costs 2 grouped calls. The critical symbols hold the
    # newest published close and the next is hours away: no reserve is kept for a critical
    # refresh that will spend nothing, so the second refresh takes 2 of the 3 free slots at
    # once (it waited about 55 s, the reserve sized for 3 per-ticker snapshots).
    free_pipeline.monkeypatch.setenv("POLYGON_PLAN", "free")
    free_pipeline.monkeypatch.setenv("POLYGON_RATE_LIMIT_CALLS", "5")
    assert free_pipeline.run("refresh_quotes").success
    frozen_clock.advance(30)
    second = free_pipeline.run("refresh_quotes")
    assert second.success
    waits = {
        m.metadata["budget_waits"].value for m in second.asset_materializations_for_node("quotes")
    }
    assert waits == {0}
    assert len(free_pipeline.api_requests()) == 4


def test_on_auto_a_free_key_is_learnt_from_its_first_403s_and_then_costs_none(free_pipeline):
    free_pipeline.monkeypatch.setenv("POLYGON_PLAN", "auto")
    started = dt.datetime.now(dt.UTC)
    first = free_pipeline.run("refresh_quotes")
    assert first.success
    refused = [r for r in free_pipeline.api_requests() if r.status == 403]
    # the batch call, then per market a ticker's own snapshot and, since one ticker's 403 is
    # only its own, the market's endpoint to confirm it: forex and crypto
    assert len(refused) == 5
    assert len({r.path for r in refused}) == 5  # no request asked twice
    free_pipeline.sim.reset_log()
    time.sleep(0.01)
    second = free_pipeline.run("refresh_quotes")
    assert second.success
    again = free_pipeline.api_requests()
    assert [r.status for r in again] == [200, 200]  # two grouped calls, no 403 any more
    # the same closes the second time: stored and announced once, each as end of day
    with free_pipeline.store.engine.connect() as conn:
        events = conn.execute(sa.select(event_outbox.c.symbol)).scalars().all()
    assert sorted(events) == sorted(s.symbol for s in load_registry())
    registry, now = load_registry(), dt.datetime.now(dt.UTC)
    for spec in registry:
        stored = free_pipeline.store.latest_quote(spec.symbol)
        assert (stored.timeframe.value, stored.plan) == ("END-OF-DAY", "free"), spec.symbol
        # the newest published session's close, not a fetch time (either side of a publication)
        newest = {registry.newest_bar(spec, at).close for at in (started, now)}
        assert stored.data_time in newest and stored.data_time < stored.fetched_at, spec.symbol


def test_a_backfill_running_never_delays_a_critical_refresh(pipeline):
    # 4 calls per 3 s. The backfill (9 range requests) takes what the critical reserve leaves;
    # a critical refresh started while it runs gets its call at once.
    import threading

    from assets_pipeline.persistence.batches import recent_batches

    pipeline.monkeypatch.setenv("POLYGON_RATE_LIMIT_CALLS", "4")
    pipeline.monkeypatch.setenv("POLYGON_RATE_LIMIT_WINDOW_SECONDS", "3")
    registry = load_registry()
    everything = [spec.symbol for spec in registry]
    defs = pipeline.defs()
    outcome = {}

    def backfill():
        outcome["backfill"] = pipeline.backfill(
            days_ago(5), days_ago(3), everything, instance=dg.DagsterInstance.ephemeral()
        )

    history = threading.Thread(target=backfill)
    history.start()
    deadline = time.monotonic() + 60
    while sum("/range/" in r.path for r in pipeline.api_requests()) < 3:  # a window's worth
        assert time.monotonic() < deadline and history.is_alive()
        time.sleep(0.05)
    critical = defs.resolve_job_def("refresh_critical").execute_in_process(
        instance=pipeline.instance,
        raise_on_error=False,
        tags=run_tags("critical", tier="critical"),
    )
    history.join()
    assert critical.success and outcome["backfill"].success
    (batch,) = recent_batches(get_engine(pipeline.database_url), 1, kind="critical")
    assert batch.budget_waits == 0  # the critical refresh never waited for the backfill
    assert sum("/range/" in r.path for r in pipeline.api_requests()) == 9


def test_each_backfilled_day_records_its_own_bars_and_a_day_without_trading_reads_none(
    monkeypatch, pg_url, redis_namespace
):
    # One run over Friday to Sunday. Forex does not trade on Saturday: that day is a success
    # with 0 bars, never the run's total; crypto trades every day.
    from assets_pipeline.defs.history import history_partitions

    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={SECRET}, market_hours=True) as sim:
        weekend = Pipeline(monkeypatch, sim, pg_url, redis_namespace)
        today = days_ago(0)
        saturday = today - dt.timedelta(days=(today.weekday() - 5) % 7 or 7)
        friday, sunday = saturday - dt.timedelta(days=1), saturday + dt.timedelta(days=1)
        if sunday >= today:  # the last history partition is yesterday's
            saturday, friday, sunday = (
                d - dt.timedelta(days=7) for d in (saturday, friday, sunday)
            )
        result = weekend.backfill(friday, sunday)
        assert result.success
        assert len(bars_of(weekend, "BTCUSD")) == 3 * 288
        days = {
            (e.asset_key.path[-1], dt.date.fromisoformat(e.partition)): {
                k: v.value for k, v in e.materialization.metadata.items()
            }
            for e in result.get_asset_materialization_events()
        }
        assert len(days) == 9  # one materialization per (symbol, day)
        assert days["EURUSD", saturday] == {
            "bars": 0,
            "bar_seconds": 300,
            "first_bar": None,
            "last_bar": None,
        }
        assert days["XAUUSD", saturday]["bars"] == 0
        assert {days["BTCUSD", d]["bars"] for d in (friday, saturday, sunday)} == {288}
        crypto_saturday = days["BTCUSD", saturday]
        assert crypto_saturday["first_bar"].startswith(saturday.isoformat() + "T00:00:00")
        assert crypto_saturday["last_bar"].startswith(saturday.isoformat() + "T23:55:00")
        friday_bars = days["EURUSD", friday]["bars"]
        assert 0 < friday_bars < 288 and friday_bars == len(
            [
                b
                for b in bars_of(weekend, "EURUSD")
                if b.bar_start.astimezone(dt.UTC).date() == friday
            ]
        )
        # what Dagster's storage, and so the UI, holds: each day's own record, all materialized
        key = dg.AssetKey(["history", "EURUSD"])
        stored = weekend.instance.fetch_materializations(key, limit=10).records
        assert {r.partition_key: r.asset_materialization.metadata["bars"].value for r in stored}[
            saturday.isoformat()
        ] == 0
        assert weekend.instance.get_materialized_partitions(key) == {
            d.isoformat() for d in (friday, saturday, sunday)
        }
        days = (friday, saturday, sunday)
        status = partition_status(weekend.instance, key, history_partitions(load_registry()), days)
        assert status == ({d.isoformat() for d in (friday, saturday, sunday)}, set())


def partition_status(instance, key, partitions_def, days):
    """(materialized, failed) among `days`, as the UI's partition bar reads them."""
    status = instance.get_status_by_partition(key, [d.isoformat() for d in days], partitions_def)
    return (
        {day for day, state in status.items() if state == dg.AssetPartitionStatus.MATERIALIZED},
        {day for day, state in status.items() if state == dg.AssetPartitionStatus.FAILED},
    )


def test_a_backfill_leaves_the_live_quotes_latest_materialization_and_checks_as_they_were(
    pipeline,
):
    # The live quote, its quality check (with the refresh) and its freshness checks (their job),
    # then a backfill of the same symbol's history: quotes/EURUSD looks exactly as before.
    assert pipeline.run("refresh_critical").success
    assert pipeline.run("check_freshness").success
    key = dg.AssetKey(["quotes", "EURUSD"])
    checks = [dg.AssetCheckKey(key, name) for name in ("quote_quality", "fresh", "quote_age")]

    def live_state():
        (latest,) = pipeline.instance.fetch_materializations(key, limit=1).records
        evaluations = {
            check.name: [
                (r.run_id, r.status)
                for r in pipeline.instance.event_log_storage.get_asset_check_execution_history(
                    check, limit=10
                )
            ]
            for check in checks
        }
        return latest.storage_id, latest.run_id, evaluations

    before = live_state()
    assert all(before[2].values())  # each check evaluated
    status_before = pipeline.store.sync_status("EURUSD")
    result = pipeline.backfill(days_ago(30), days_ago(1), ["EURUSD"])
    assert result.success
    assert live_state() == before
    assert pipeline.store.sync_status("EURUSD") == status_before
    # the live asset has no partitions for a backfill to fill, and history has its own
    assert pipeline.instance.get_materialized_partitions(key) == set()
    assert (
        len(pipeline.instance.get_materialized_partitions(dg.AssetKey(["history", "EURUSD"]))) == 30
    )


def test_a_past_day_that_cannot_be_fetched_stays_missing_without_failing_the_run(pipeline):
    day = days_ago(2)
    pipeline.sim.add_fault(Fault("forbidden", ticker="C:EURUSD"))
    result = pipeline.backfill(day, day)
    assert result.success  # the other symbols' days are stored
    done = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert done == {"XAUUSD", "BTCUSD"}  # EURUSD's day stays missing, to be asked again
    assert bars_of(pipeline, "EURUSD") == []
    tags = pipeline.instance.get_run_by_id(result.run_id).tags
    assert tags["history/missing"] == "EURUSD"


def test_over_250_symbols_a_run_is_one_step_and_one_batch_call_per_250(pipeline, tmp_path):
    """600 symbols are three multi-assets of at most 250 (`quotes`, `quotes_2`, `quotes_3`, in
    priority order): Dagster's step pays, for each output, for every output of the step, so a
    step's size is bounded, not the file's. Refreshing them all is three steps in the run's one
    process, one `batch` call each, every quote stored, one batch recorded per step."""
    tickers = [f"C:{b}{q}" for b in ("EUR", "GBP", "USD", "JPY") for q in ("CHF", "CAD", "NZD")]
    entries = [
        symbol_entry(
            symbol=f"S{i:03d}",
            polygon_ticker=tickers[i % len(tickers)],
            base_asset=tickers[i % len(tickers)][2:5],
            quote_asset=tickers[i % len(tickers)][5:],
            tier="critical" if i < 3 else "low",
        )
        for i in range(600)
    ]
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump({"symbols": entries, "queue": {"max_size": 600}}))
    defs = pipeline.defs(path)
    sizes = {a.node_def.name: len(a.keys) for a in defs.resolve_asset_graph().assets_defs}
    assert sizes == {
        **{"quotes": 250, "quotes_2": 250, "quotes_3": 100},
        **{"history": 250, "history_2": 250, "history_3": 100},  # the same steps, past days
    }
    result = pipeline.run("refresh_quotes", symbols_file=path, mode="batch")
    assert result.success
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    assert steps == {"quotes", "quotes_2", "quotes_3"}
    assert len(pipeline.api_requests()) == 3
    stored = pipeline.store.last_syncs()
    assert len([s for s in stored if s.startswith("S")]) == 600
    with pipeline.store.engine.connect() as conn:
        ids = set(
            conn.execute(sa.text("SELECT batch_id FROM data_sources.refresh_batches")).scalars()
        )
    run_id = result.run_id
    assert ids == {run_id, f"{run_id}/quotes_2", f"{run_id}/quotes_3"}


def test_a_refresh_that_outlives_its_deadline_settles_every_status(pipeline):
    # The attack: a server that never answers in time made a refresh outlive any bound with
    # every status `in_progress`. A run's refresh stops asking at 80% of its maximum runtime
    # (here 2 s), cuts the request in flight, and records each symbol's failure.
    pipeline.sim.add_fault(Fault("timeout", delay=30.0))
    tags = {**run_tags("critical"), "dagster/max_runtime": "2"}
    result = pipeline.run("refresh_critical", mode="per_ticker", tags=tags)
    assert not result.success
    statuses = pipeline.store.sync_statuses(CRITICAL)
    assert sorted(statuses) == sorted(CRITICAL)
    assert {row["sync_status"] for row in statuses.values()} == {"failed"}, statuses
    assert len(pipeline.api_requests()) <= 1  # the tickers after the deadline were not asked


def test_a_step_of_many_symbols_relays_its_events_once_after_every_write(pipeline, monkeypatch):
    """One owner: each quote is written by the refresh in its own transaction as Dagster hands
    its output to the IO manager, and the step's events go out in one relay at the end, not one
    relay per output (which was 250 relays in a full step)."""
    import assets_pipeline.defs.io_manager as io_manager
    import assets_pipeline.refresh as refresh_module
    from assets_pipeline.persistence import outbox

    relays = []

    def counted(engine, client, max_events=500):
        relays.append(pending_count(engine))  # what waited when the relay started
        return outbox.relay_pending(engine, client, max_events)

    # wherever the step relays from (the IO manager used to, after each output)
    for module in (refresh_module, io_manager):
        monkeypatch.setattr(module, "relay_pending", counted, raising=False)
    symbols = [spec.symbol for spec in load_registry()]
    channels = [f"{pipeline.namespace}asset:update:{s}" for s in symbols]
    subscriber = Subscriber(channels)
    try:
        result = pipeline.run("refresh_quotes")
        messages = subscriber.wait_for(len(symbols))
    finally:
        subscriber.close()
    assert result.success
    assert len(symbols) == 9 and relays == [9]  # one relay, after all nine writes
    assert pending_count(get_engine(pipeline.database_url)) == 0
    assert sorted(m["symbol"] for _, m in messages) == sorted(symbols)  # each once
    materialized = result.asset_materializations_for_node("quotes")
    assert len(materialized) == 9 and all(m.metadata["written"].value for m in materialized)
    assert all(pipeline.store.sync_status(s)["sync_status"] == "success" for s in symbols)
