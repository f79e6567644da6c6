"""The sensors, evaluated as the daemon would, against the real PostgreSQL: the queue drain (what its
run will claim, with what the critical reserve leaves), claims whose run is gone, and the outbox
relay. The ticks write nothing: the runs they request claim and publish.

None of them calls Polygon. The clock is frozen (`frozen_clock`): today's partition and claim ages
are read from it; the budget still counts on its store's clock.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import redis
import sqlalchemy as sa

from assets_pipeline.defs.resources import (
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.defs.runs import ORPHAN_CLAIM_SECONDS, reconcile_claims
from assets_pipeline.defs.sensors import event_outbox_relay, relay_outbox
from assets_pipeline.persistence.database import db_epoch_seconds
from assets_pipeline.persistence.outbox import pending_count
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.persistence.schema import api_budget_calls, api_budget_state
from assets_pipeline.polygon.client import MULTI_TICKER_SNAPSHOT, snapshot_feature
from assets_pipeline.rules import clock
from assets_pipeline.rules.queue_rules import FAILED, IN_FLIGHT, QUEUED
from assets_pipeline.rules.taxonomy import AssetType, Tier
from assets_pipeline_tests.conftest import REDIS_URL, get_engine, quote
from assets_pipeline_tests.defs.conftest import create_run_for_test

# --- the drain -----------------------------------------------------------------------------------


def test_the_drain_refreshes_in_priority_order_with_what_the_critical_reserve_leaves(deployment):
    deployment.enqueue("enqueue_medium_every_30m")
    deployment.enqueue("enqueue_high_every_30m")
    # per_ticker: 5 calls a minute, 3 kept for the next critical refresh -> 2 symbols now
    request = deployment.sensor("refresh_queue_drain")
    assert isinstance(request, dg.RunRequest)
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT", "GBPUSD"]
    assert request.partition_key is None  # the live quote has no partitions
    assert request.tags["dagster/priority"] == "0"
    batch = request.tags["assets_pipeline/batch"]
    assert request.run_key == batch
    assert request.tags["assets_pipeline/claim"] == "2"
    # the tick claims nothing: its run does, as it starts
    assert all(i.status == QUEUED for i in deployment.queue.items())


def test_the_queue_run_claims_its_batch_as_it_starts_and_refreshes_what_it_claimed(deployment):
    from assets_pipeline.simulator import PolygonSimulator

    deployment.enqueue("enqueue_high_every_30m")
    request = deployment.sensor("refresh_queue_drain")
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT", "GBPUSD"]
    # between the tick and the run, another batch took GBPUSD: the run claims what is left
    deployment.queue.claim(1, 1, "q-other", eligible={"GBPUSD"})
    # the simulator reads the same (frozen) clock, from its server's threads
    now = clock.reader()
    with PolygonSimulator(port=0, clock=lambda: now().timestamp()) as simulator:
        env = {"POLYGON_BASE_URL": simulator.url, "POLYGON_API_KEY": "k"}
        result = deployment.execute(request, **env)
    assert result.success
    done = {m.asset_key.path[-1] for m in result.asset_materializations_for_node("quotes")}
    assert done == {"ETHUSDT"}
    left = {i.symbol: (i.status, i.batch_id) for i in deployment.queue.items()}
    assert left == {"GBPUSD": (IN_FLIGHT, "q-other"), "USDJPY": (QUEUED, None)}


def test_a_run_that_may_wait_a_window_claims_a_window_more(deployment):
    deployment.enqueue("enqueue_medium_every_30m")
    deployment.enqueue("enqueue_high_every_30m")
    deployment.max_wait = 180  # the default: three windows
    request = deployment.sensor("refresh_queue_drain")
    # 2 free now + 5 more the run waits for inside the budget (which keeps the reserve)
    assert [k.path[-1] for k in request.asset_selection] == [
        "ETHUSDT",
        "GBPUSD",
        "USDJPY",
        "AUDUSD",
        "USDCAD",
        "XAGUSD",
    ]


def test_in_batch_mode_one_call_takes_the_whole_queue(deployment):
    deployment.enqueue("enqueue_medium_every_30m")
    deployment.enqueue("enqueue_high_every_30m")
    request = deployment.sensor("refresh_queue_drain", mode="batch")
    assert [k.path[-1] for k in request.asset_selection] == [
        "ETHUSDT",
        "GBPUSD",
        "USDJPY",
        "AUDUSD",
        "USDCAD",
        "XAGUSD",
    ]


def test_the_drain_never_touches_the_critical_reserve(deployment):
    deployment.enqueue("enqueue_high_every_30m")
    deployment.spend(2)  # 3 left, and per_ticker critical needs 3
    result = deployment.sensor("refresh_queue_drain")
    assert isinstance(result, dg.SkipReason)
    assert "budget has 3 of 5 calls left and 3 are kept for the next critical refresh" in (
        result.skip_message
    )
    assert all(i.status == QUEUED for i in deployment.queue.items())


def test_after_a_critical_refresh_the_drain_uses_what_it_left(deployment, pg_url):
    deployment.enqueue("enqueue_high_every_30m")
    deployment.spend(1, critical=True)  # creates the budget's state row
    # the critical tier refreshed (3 calls) 20 seconds ago, by the store's own clock
    engine = get_engine(pg_url)
    with engine.begin() as conn:
        ago = db_epoch_seconds(conn) - 20
        conn.execute(sa.delete(api_budget_calls))
        conn.execute(sa.insert(api_budget_calls), [{"name": "polygon", "at": ago}] * 3)
        conn.execute(sa.update(api_budget_state).values(last_critical_at=ago))
    # the next is due in about 4 minutes: calls made now expire long before, so the 2 slots
    # the critical calls left are free for the queue (the old every-window reserve gave 0)
    request = deployment.sensor("refresh_queue_drain")
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT", "GBPUSD"]


def test_right_after_a_critical_call_its_refresh_may_still_need_the_reserve(deployment):
    deployment.enqueue("enqueue_high_every_30m")
    deployment.spend(1, critical=True)  # the first call of a critical refresh, just now
    # 4 slots are free, and 3 stay kept while that refresh may still be making calls
    request = deployment.sensor("refresh_queue_drain")
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT"]


def store_secondaries(pg_url, registry, ages_minutes):
    """Each secondary symbol's stored price, this many minutes old (default: just now)."""
    store, now = QuoteStore(get_engine(pg_url)), clock.utcnow()
    for spec in registry.queued():
        at = now - dt.timedelta(minutes=ages_minutes.get(spec.symbol, 0))
        store.write_quote(spec, quote(spec.symbol, spec.polygon_ticker, at))


def test_with_the_queue_empty_the_budget_left_refreshes_the_stalest_secondaries_first(
    deployment, registry, pg_url
):
    # every secondary fetched a moment ago, but USDJPY's price is 20 minutes old and XAGUSD's
    # 40 (half a 30-minute cadence is the bar); the queue is empty, 5 of 5 calls are free
    store_secondaries(pg_url, registry, {"USDJPY": 20, "XAGUSD": 40})
    request = deployment.sensor("refresh_queue_drain")
    assert [k.path[-1] for k in request.asset_selection] == ["XAGUSD", "USDJPY"]
    assert request.tags["assets_pipeline/kind"] == "queue"
    assert request.tags["assets_pipeline/top_up"] == "stalest first"
    # nothing is written: the tick only decides (the queue stays empty)
    assert deployment.queue.items() == []
    # with no slot left beyond the critical reserve, nothing is spent
    deployment.spend(3)  # 2 left, and the critical tier's 3 calls are kept free
    assert deployment.sensor("refresh_queue_drain").skip_message == "the queue is empty"


def test_the_drain_waits_while_a_batch_is_in_flight_and_when_the_queue_is_empty(
    deployment, registry, pg_url
):
    store_secondaries(pg_url, registry, {})  # nothing older than half its cadence
    assert deployment.sensor("refresh_queue_drain").skip_message == "the queue is empty"
    deployment.enqueue("enqueue_high_every_30m")
    create_run_for_test(
        deployment.instance, job_name="refresh_queue", status=dg.DagsterRunStatus.STARTED
    )
    result = deployment.sensor("refresh_queue_drain")
    assert "a queue batch is still started" in result.skip_message


# --- claims whose run is gone --------------------------------------------------------------------


def test_a_batch_whose_run_was_canceled_gives_its_items_back_in_their_place(deployment):
    deployment.enqueue("enqueue_high_every_30m")
    batch = "q-canceled"
    deployment.queue.claim(2, 1, batch)  # as its run did when it started
    create_run_for_test(
        deployment.instance,
        job_name="refresh_queue",
        status=dg.DagsterRunStatus.CANCELED,
        tags={"assets_pipeline/batch": batch},
    )
    again = deployment.sensor("refresh_queue_drain")
    assert isinstance(again, dg.RunRequest)
    # the two items the next run gives back are taken again, first, by its batch
    assert [k.path[-1] for k in again.asset_selection] == ["ETHUSDT", "GBPUSD"]
    assert reconcile_claims(deployment.instance, deployment.queue, deployment.clock.now).released
    assert all(i.status == QUEUED for i in deployment.queue.items())


def test_a_symbol_whose_run_keeps_crashing_is_demoted_then_failed_not_retried_forever(
    deployment, registry
):
    queue, instance = deployment.queue, deployment.instance
    queue.enqueue([("GBPUSD", Tier.HIGH)])
    now = dt.datetime.now(dt.UTC)
    seen = []
    for crash in range(1, registry.queue.max_retries + 2):
        batch = f"q-crash-{crash}"
        assert [i.symbol for i in queue.claim(1, 1, batch)] == ["GBPUSD"]
        # the run claimed it, then died (FAILURE) before settling it
        run = create_run_for_test(
            instance,
            job_name="refresh_queue",
            status=dg.DagsterRunStatus.FAILURE,
            tags={"assets_pipeline/batch": batch},
        )
        reconcile_claims(instance, queue, now)
        (item,) = queue.items()
        assert item.last_error == f"run {run.run_id[:8]} died before settling it"
        seen.append((item.status, item.tier, item.attempts))
    assert seen == [
        (QUEUED, Tier.MEDIUM, 1),
        (QUEUED, Tier.LOW, 2),
        (QUEUED, Tier.LOW, 3),
        (FAILED, Tier.LOW, 4),  # after max_retries (3) retries
    ]
    assert queue.claim(5, 1, "q-after") == []  # no longer claimable
    reconcile_claims(instance, queue, now)  # and nothing more happens to it
    assert queue.items()[0].attempts == 4


@pytest.mark.parametrize("ended", ["never appeared", "CANCELED", "SUCCESS"])
def test_a_batch_whose_run_did_not_crash_goes_back_without_an_attempt(deployment, ended):
    queue, instance = deployment.queue, deployment.instance
    queue.enqueue([("GBPUSD", Tier.HIGH)])
    queue.claim(1, 1, "q-1")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ORPHAN_CLAIM_SECONDS + 1)
    if ended != "never appeared":
        create_run_for_test(
            instance,
            job_name="refresh_queue",
            status=dg.DagsterRunStatus[ended],
            tags={"assets_pipeline/batch": "q-1"},
        )
    reconcile_claims(instance, queue, later)
    (item,) = queue.items()
    assert (item.status, item.tier, item.attempts, item.batch_id) == (QUEUED, Tier.HIGH, 0, None)


def test_the_queue_survives_a_new_instance_and_orphaned_claims_come_back(deployment):
    deployment.enqueue("enqueue_high_every_30m")
    deployment.queue.claim(2, 1, "q-lost")  # a run claimed 2; then the daemon "restarts"
    fresh_instance = dg.DagsterInstance.ephemeral()  # a new daemon: nothing in common but the DB
    queue = RefreshQueue(deployment.queue.engine)
    assert sorted(i.symbol for i in queue.items()) == ["ETHUSDT", "GBPUSD", "USDJPY"]
    # claimed at the frozen time; given back once no run has appeared for ORPHAN_CLAIM_SECONDS
    claimed_at = deployment.clock.now
    not_yet = claimed_at + dt.timedelta(seconds=ORPHAN_CLAIM_SECONDS)
    assert reconcile_claims(fresh_instance, queue, not_yet).released == 0
    later = claimed_at + dt.timedelta(seconds=ORPHAN_CLAIM_SECONDS + 1)
    assert reconcile_claims(fresh_instance, queue, later).released == 2
    assert all(i.status == QUEUED for i in queue.items())
    request = deployment.sensor("refresh_queue_drain", instance=fresh_instance)
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT", "GBPUSD"]


# --- what a plan refuses -------------------------------------------------------------------------


def test_once_batch_snapshots_are_refused_the_reserve_and_the_drain_count_per_ticker(deployment):
    # In batch mode one call refreshes the critical tier, so the reserve is 1 call; a plan
    # that refuses batch snapshots makes it 3 (one per ticker), and the drain plans with that.
    deployment.enqueue("enqueue_high_every_30m")
    deployment.spend(1)  # 4 left
    before = deployment.sensor("refresh_queue_drain", mode="batch")
    assert len(before.asset_selection) == 3  # one batch call takes the whole tier
    polygon = deployment.resources("batch")["polygon"]
    polygon.budget.budget().refuse(MULTI_TICKER_SNAPSHOT, "403 NOT_AUTHORIZED")
    assert polygon.effective_mode() == "per_ticker"
    after = deployment.sensor("refresh_queue_drain", mode="batch")
    # 4 left, 3 kept for the critical tier's three calls: one symbol now
    assert [k.path[-1] for k in after.asset_selection] == ["ETHUSDT"]


# --- the outbox relay ----------------------------------------------------------------------------


def test_the_relay_sensor_publishes_what_waits_in_the_outbox(pg_url, redis_namespace, registry):
    store = QuoteStore(get_engine(pg_url), redis_namespace)
    store.write_quote(registry.get("EURUSD"), quote())
    assert pending_count(store.engine) == 1
    listener = redis.Redis.from_url(REDIS_URL).pubsub()
    listener.subscribe(f"{redis_namespace}asset:update:EURUSD")
    listener.get_message(timeout=1)

    resources = {
        "database": TradingDatabase(url=pg_url),
        "redis": RedisResource(url=REDIS_URL, namespace=redis_namespace),
    }
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources=resources
    ) as context:
        request = event_outbox_relay(context)
    assert isinstance(request, dg.RunRequest)
    assert pending_count(store.engine) == 1  # the tick publishes nothing: its run does

    result = relay_outbox.execute_in_process(resources=resources, tags=request.tags)
    assert result.success
    assert result.output_for_node("relay_pending_events") == 1
    message = listener.get_message(timeout=2)
    assert message and b'"type": "price_update"' in message["data"]
    assert pending_count(store.engine) == 0
    listener.close()


def test_the_relay_sensor_waits_politely_without_redis(sqlite_url, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    # the Redis resource closes its client when the tick ends: its context is a `with`
    with dg.build_sensor_context(
        resources={"database": TradingDatabase(url=sqlite_url), "redis": RedisResource()}
    ) as context:
        result = event_outbox_relay(context)
    assert "REDIS_URL is not set" in result.skip_message


def test_on_day_bars_the_drain_claims_a_whole_market_for_one_grouped_call(deployment):
    # a key whose forex and crypto snapshots were refused: one grouped-daily call serves every
    # pair of a market, so the drain claims the queue as a batch, not one symbol per free slot
    deployment.enqueue("enqueue_high_every_30m")
    budget = deployment.resources()["polygon"].budget.budget()
    for kind in (AssetType.FOREX, AssetType.CRYPTO):
        budget.refuse(snapshot_feature(kind), "403 NOT_AUTHORIZED")
    deployment.spend(2)  # 3 left, 2 kept for the critical tier's two grouped calls
    request = deployment.sensor("refresh_queue_drain")
    assert sorted(k.path[-1] for k in request.asset_selection) == ["ETHUSDT", "GBPUSD", "USDJPY"]
