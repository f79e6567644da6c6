"""Schedules and sensors, evaluated as the daemon would, against the real PostgreSQL.

They decide when runs happen and what the queue holds; none of them calls Polygon. The clock is
frozen (`frozen_clock`): today's partition, claim ages and market hours are read from it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_run_id

from assets_pipeline.definitions import build_definitions
from assets_pipeline.defs.resources import (
    PolygonBudgetResource,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.defs.schedules import CATCH_UP_GRACE_SECONDS, enqueue_tick
from assets_pipeline.defs.sensors import ORPHAN_CLAIM_SECONDS, reconcile_claims
from assets_pipeline.polygon.client import MULTI_TICKER_SNAPSHOT
from assets_pipeline.rules import clock
from assets_pipeline.rules.queue_rules import FAILED, IN_FLIGHT, QUEUED
from assets_pipeline.rules.run_kinds import CRITICAL, MAX_RUNTIME_TAG, run_tags
from assets_pipeline.rules.taxonomy import Tier
from assets_pipeline.storage.budget import Caller, PolygonBudget, SqlBudgetStore
from assets_pipeline.storage.database import db_epoch_seconds, get_engine
from assets_pipeline.storage.refresh_queue import RefreshQueue
from assets_pipeline.storage.schema import api_budget_calls, api_budget_state
from assets_pipeline_tests.conftest import REPO


def create_run_for_test(instance, job_name, status, tags=None):
    """A run record as the daemon would find it (queued ones included)."""
    origin = RemoteRepositoryOrigin(
        InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name="assets_pipeline.definitions")
        ),
        "__repository__",
    ).get_job_origin(job_name)
    run = DagsterRun(
        job_name=job_name,
        run_id=make_new_run_id(),
        status=status,
        tags=tags or {},
        remote_job_origin=origin,
    )
    return instance.run_storage.add_run(run)


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def deployment(pg_url, monkeypatch, registry, instance, frozen_clock):
    """Resources as the daemon builds them, on a database of the test's own, no Redis, and the
    package's clock frozen (the budget still counts on its store's clock)."""
    for name in ("REDIS_URL", "POLYGON_BASE_URL", "TRADING_DATABASE_URL", "POLYGON_SNAPSHOT_MODE"):
        monkeypatch.delenv(name, raising=False)

    class Deployment:
        max_wait = 60.0  # one window: the drain claims only what is free now
        defs = build_definitions(registry)
        queue = RefreshQueue(get_engine(pg_url), registry.queue)

        def resources(self, mode="per_ticker"):
            database = TradingDatabase(url=pg_url)
            budget = PolygonBudgetResource(
                calls=5,
                window_seconds=60,
                store="database",
                redis=RedisResource(),
                database=database,
            )
            polygon = PolygonResource(
                base_url="http://127.0.0.1:9",
                api_key="unused",
                snapshot_mode=mode,
                budget=budget,
                max_budget_wait_seconds=self.max_wait,
            )
            return {"database": database, "polygon": polygon}

        def schedule(self, name, mode="per_ticker"):
            with dg.build_schedule_context(
                instance=self.instance, resources=self.resources(mode)
            ) as context:
                return self.defs.resolve_schedule_def(name)(context)

        def sensor(self, name, mode="per_ticker", instance=None):
            with dg.build_sensor_context(
                instance=instance or self.instance, resources=self.resources(mode)
            ) as context:
                return self.defs.resolve_sensor_def(name)(context)

        def spend(self, calls, critical=False):
            caller = Caller(critical=critical)
            budget = PolygonBudget(SqlBudgetStore(get_engine(pg_url)), 5, 60, caller=caller)
            for _ in range(calls):
                budget.acquire(1)

    deployment = Deployment()
    deployment.instance = instance
    deployment.clock = frozen_clock
    return deployment


# --- the critical tier ---------------------------------------------------------------------------


def test_the_critical_schedule_refreshes_today_at_critical_priority(deployment):
    request = deployment.schedule("refresh_critical_every_5m")
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == deployment.clock.today.isoformat()
    assert request.tags["dagster/priority"] == "10"
    assert request.tags["assets_pipeline/kind"] == "critical"
    schedule = deployment.defs.resolve_schedule_def("refresh_critical_every_5m")
    assert (schedule.cron_schedule, schedule.job_name) == ("*/5 * * * *", "refresh_critical")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED])
def test_the_critical_schedule_skips_while_a_refresh_is_queued_or_running(deployment, status):
    run = create_run_for_test(deployment.instance, job_name="refresh_critical", status=status)
    result = deployment.schedule("refresh_critical_every_5m")
    assert isinstance(result, dg.SkipReason)
    assert f"a refresh_critical run is still {status.value.lower()} ({run.run_id[:8]})" in (
        result.skip_message
    )


def test_the_critical_tier_is_refreshed_at_start_up_and_after_the_daemon_was_down(
    deployment, registry
):
    first = deployment.sensor("refresh_critical_at_start_up")
    assert isinstance(first, dg.RunRequest) and first.tags["dagster/priority"] == "10"
    run = create_run_for_test(
        deployment.instance, job_name="refresh_critical", status=dg.DagsterRunStatus.SUCCESS
    )
    # Dagster records the run's time on the real clock; the sensor measures from it
    record = deployment.instance.get_run_record_by_id(run.run_id)
    started = record.start_time or record.create_timestamp.timestamp()
    every = registry.tiers[Tier.CRITICAL].every_seconds

    def at(seconds_after_the_run):
        deployment.clock.move_to(dt.datetime.fromtimestamp(started + seconds_after_the_run, dt.UTC))
        return deployment.sensor("refresh_critical_at_start_up")

    on_time = at(every + CATCH_UP_GRACE_SECONDS - 1)
    assert isinstance(on_time, dg.SkipReason)
    assert on_time.skip_message == (
        f"refresh_critical ran {every + CATCH_UP_GRACE_SECONDS - 1:.0f}s ago: on schedule"
    )
    # a tick was missed (the daemon was down): refreshed at once
    assert isinstance(at(every + CATCH_UP_GRACE_SECONDS + 1), dg.RunRequest)


# --- the queue -----------------------------------------------------------------------------------


def test_enqueueing_a_tier_fills_the_queue_once_and_launches_nothing(deployment):
    first = deployment.schedule("enqueue_high_every_30m")
    again = deployment.schedule("enqueue_high_every_30m")
    assert isinstance(first, dg.SkipReason) and isinstance(again, dg.SkipReason)
    assert first.skip_message == "enqueued 3 high symbol(s); 0 already waiting"
    assert again.skip_message == "enqueued 0 high symbol(s); 3 already waiting"
    assert sorted(i.symbol for i in deployment.queue.items()) == ["ETHUSDT", "GBPUSD", "USDJPY"]


def test_at_start_up_overdue_secondaries_are_queued_at_once_and_only_once(
    deployment, pg_url, registry
):
    from assets_pipeline.rules.quotes import Quote
    from assets_pipeline.storage.quote_store import QuoteStore

    now = deployment.clock.now
    fresh = Quote(
        ticker="C:GBPUSD",
        symbol="GBPUSD",
        quote_time=now,
        source="t",
        bid=1.27,
        ask=1.2701,
        last_price=1.27005,
    )
    QuoteStore(get_engine(pg_url)).write_quote(registry.get("GBPUSD"), fresh, now.date())
    first = deployment.sensor("enqueue_overdue_at_start_up")
    # GBPUSD was refreshed just now; the other five secondaries have never been
    assert first.skip_message.startswith("enqueued 5 overdue symbol(s)")
    assert sorted(i.symbol for i in deployment.queue.items()) == [
        "AUDUSD",
        "ETHUSDT",
        "USDCAD",
        "USDJPY",
        "XAGUSD",
    ]
    again = deployment.sensor("enqueue_overdue_at_start_up")
    assert again.skip_message == "no queued-tier symbol is overdue"


def test_a_full_queue_says_what_it_dropped(deployment, registry, pg_url):
    small = RefreshQueue(get_engine(pg_url), type(registry.queue)(max_size=2))
    plan = small.enqueue([(s.symbol, s.tier) for s in registry.in_tier(Tier.HIGH)])
    assert len(plan.insert) == 2 and plan.dropped == ["USDJPY"]


def test_a_full_queue_evicts_its_worst_waiting_item_for_a_better_arrival(registry, pg_url):
    small = RefreshQueue(get_engine(pg_url), type(registry.queue)(max_size=3))
    t0 = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
    minutes = [t0 + dt.timedelta(minutes=n) for n in range(4)]
    small.enqueue([("XAGUSD", Tier.LOW)], minutes[0])
    small.enqueue([("USDCAD", Tier.MEDIUM)], minutes[1])
    small.enqueue([("AUDUSD", Tier.MEDIUM)], minutes[2])
    small.claim(1, 1, "batch-1", eligible={"XAGUSD"})  # the low item is in flight: it stays
    plan = small.enqueue([("GBPUSD", Tier.HIGH)], minutes[3])
    assert [i.symbol for i in plan.insert] == ["GBPUSD"]
    assert plan.dropped == plan.evicted == ["AUDUSD"]  # the worst tier waiting, its newest
    rows = {i.symbol: i.status for i in small.items()}
    assert rows == {"XAGUSD": IN_FLIGHT, "USDCAD": QUEUED, "GBPUSD": QUEUED}


def test_the_enqueue_tick_names_what_a_full_queue_dropped_and_evicted(registry, pg_url):
    small = dataclasses.replace(registry, queue=dataclasses.replace(registry.queue, max_size=2))
    database = TradingDatabase(url=pg_url)
    assert enqueue_tick(small, small.tiers[Tier.MEDIUM], database) == (
        "enqueued 2 medium symbol(s); 0 already waiting; QUEUE FULL (2): dropped XAGUSD"
    )
    # each high symbol is better than the medium ones waiting, until only high ones wait
    assert enqueue_tick(small, small.tiers[Tier.HIGH], database) == (
        "enqueued 2 high symbol(s); 0 already waiting; QUEUE FULL (2): dropped USDCAD, AUDUSD,"
        " USDJPY (evicted from the queue for a better tier: USDCAD, AUDUSD)"
    )
    assert sorted(i.symbol for i in RefreshQueue(get_engine(pg_url)).items()) == [
        "ETHUSDT",
        "GBPUSD",
    ]


def test_the_drain_refreshes_in_priority_order_with_what_the_critical_reserve_leaves(deployment):
    deployment.schedule("enqueue_medium_every_30m")
    deployment.schedule("enqueue_high_every_30m")
    # per_ticker: 5 calls a minute, 3 kept for the next critical refresh -> 2 symbols now
    request = deployment.sensor("refresh_queue_drain")
    assert isinstance(request, dg.RunRequest)
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT", "GBPUSD"]
    assert request.partition_key == deployment.clock.today.isoformat()
    assert request.tags["dagster/priority"] == "0"
    batch = request.tags["assets_pipeline/batch"]
    assert request.run_key == batch
    claimed = [i for i in deployment.queue.items() if i.status == IN_FLIGHT]
    assert sorted(i.symbol for i in claimed) == ["ETHUSDT", "GBPUSD"]
    assert {i.batch_id for i in claimed} == {batch}


def test_a_run_that_may_wait_a_window_claims_a_window_more(deployment):
    deployment.schedule("enqueue_medium_every_30m")
    deployment.schedule("enqueue_high_every_30m")
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
    deployment.schedule("enqueue_medium_every_30m")
    deployment.schedule("enqueue_high_every_30m")
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
    deployment.schedule("enqueue_high_every_30m")
    deployment.spend(2)  # 3 left, and per_ticker critical needs 3
    result = deployment.sensor("refresh_queue_drain")
    assert isinstance(result, dg.SkipReason)
    assert "budget has 3 of 5 calls left and 3 are kept for the next critical refresh" in (
        result.skip_message
    )
    assert all(i.status == QUEUED for i in deployment.queue.items())


def test_after_a_critical_refresh_the_drain_uses_what_it_left(deployment, pg_url):
    deployment.schedule("enqueue_high_every_30m")
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
    deployment.schedule("enqueue_high_every_30m")
    deployment.spend(1, critical=True)  # the first call of a critical refresh, just now
    # 4 slots are free, and 3 stay kept while that refresh may still be making calls
    request = deployment.sensor("refresh_queue_drain")
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT"]


def test_the_drain_waits_while_a_batch_is_in_flight_and_when_the_queue_is_empty(deployment):
    assert deployment.sensor("refresh_queue_drain").skip_message == "the queue is empty"
    deployment.schedule("enqueue_high_every_30m")
    create_run_for_test(
        deployment.instance, job_name="refresh_queue", status=dg.DagsterRunStatus.STARTED
    )
    result = deployment.sensor("refresh_queue_drain")
    assert "a queue batch is still started" in result.skip_message


def test_a_batch_whose_run_was_canceled_gives_its_items_back_in_their_place(deployment):
    deployment.schedule("enqueue_high_every_30m")
    request = deployment.sensor("refresh_queue_drain")
    batch = request.tags["assets_pipeline/batch"]
    create_run_for_test(
        deployment.instance,
        job_name="refresh_queue",
        status=dg.DagsterRunStatus.CANCELED,
        tags={"assets_pipeline/batch": batch},
    )
    again = deployment.sensor("refresh_queue_drain")
    assert isinstance(again, dg.RunRequest)
    # the two released items are taken again, first, by the next batch
    assert [k.path[-1] for k in again.asset_selection] == ["ETHUSDT", "GBPUSD"]


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
    deployment.schedule("enqueue_high_every_30m")
    deployment.sensor("refresh_queue_drain")  # claims 2; then the daemon "restarts"
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


def test_queue_failures_are_demoted_retried_and_finally_failed(deployment, pg_url):
    queue = deployment.queue
    queue.enqueue([("GBPUSD", Tier.HIGH), ("ETHUSDT", Tier.HIGH)])
    # a permanent error is not requeued
    assert queue.fail("ETHUSDT", Tier.HIGH, "404 NOT_FOUND", retryable=False).status == FAILED
    tiers = [queue.fail("GBPUSD", Tier.HIGH, f"503 #{n}", retryable=True).tier for n in range(3)]
    assert tiers == [Tier.MEDIUM, Tier.LOW, Tier.LOW]
    last = queue.fail("GBPUSD", Tier.HIGH, "503 #4", retryable=True)
    assert (last.status, last.attempts, last.last_error) == (FAILED, 4, "503 #4")
    # a failed critical symbol (not queued) comes back through the queue one tier lower
    assert queue.fail("EURUSD", Tier.CRITICAL, "timeout", retryable=True).tier == Tier.HIGH
    assert queue.fail("XAUUSD", Tier.CRITICAL, "403", retryable=False) is None


# --- market hours --------------------------------------------------------------------------------

SATURDAY = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
#: Ten seconds after forex opens, Sunday 17:00 New York: 22:00 UTC in winter (EST), 21:00 UTC in
#: summer (EDT).
SUNDAY_OPEN_WINTER = dt.datetime(2026, 11, 22, 22, 0, 10, tzinfo=dt.UTC)
SUNDAY_OPEN_SUMMER = dt.datetime(2026, 7, 19, 21, 0, 10, tzinfo=dt.UTC)


@pytest.fixture
def weekend(deployment):
    """The deployment with real market hours, its clock on Saturday until the test moves it."""
    from pathlib import Path

    import yaml

    from assets_pipeline.config.registry import load_registry, parse_registry

    document = yaml.safe_load(Path(load_registry().source).read_text())
    # the production rule (not the test default, always open): Sun 17:00 to Fri 17:00 New York
    document["market_hours"] = {
        "forex": {"timezone": "America/New_York", "opens": "Sun 17:00", "closes": "Fri 17:00"}
    }
    registry = parse_registry(document, "symbols.yaml")
    deployment.defs = build_definitions(registry)
    deployment.clock.move_to(SATURDAY)
    return deployment


def test_on_saturday_the_critical_refresh_spends_calls_on_crypto_only(weekend):
    request = weekend.schedule("refresh_critical_every_5m")
    assert [k.path[-1] for k in request.asset_selection] == ["BTCUSD"]


def test_on_saturday_closed_forex_is_not_enqueued_nor_drained(weekend):
    result = weekend.schedule("enqueue_high_every_30m")
    assert result.skip_message == (
        "enqueued 1 high symbol(s); 0 already waiting; market closed: GBPUSD, USDJPY"
    )
    weekend.queue.enqueue([("AUDUSD", Tier.MEDIUM)])  # queued on Friday, before the close
    request = weekend.sensor("refresh_queue_drain")
    assert [k.path[-1] for k in request.asset_selection] == ["ETHUSDT"]
    assert {i.symbol: i.status for i in weekend.queue.items()}[
        "AUDUSD"
    ] == QUEUED  # keeps its place


@pytest.mark.parametrize("sunday_open", [SUNDAY_OPEN_WINTER, SUNDAY_OPEN_SUMMER])
def test_when_forex_opens_its_critical_symbols_are_refreshed_at_once_and_the_rest_queued(
    weekend, sunday_open
):
    weekend.clock.move_to(sunday_open - dt.timedelta(seconds=20))
    with dg.build_sensor_context(
        instance=weekend.instance, resources=weekend.resources()
    ) as context:
        sensor = weekend.defs.resolve_sensor_def("refresh_at_market_open")
        assert "watching" in sensor(context).skip_message
        assert "no market opened" in sensor(context).skip_message
        weekend.clock.move_to(sunday_open)
        request = sensor(context)
    assert [k.path[-1] for k in request.asset_selection] == ["XAUUSD", "EURUSD"]
    assert request.tags["dagster/priority"] == "10"
    assert sorted(i.symbol for i in weekend.queue.items()) == [
        "AUDUSD",
        "GBPUSD",
        "USDCAD",
        "USDJPY",
        "XAGUSD",
    ]


def test_a_cadence_run_on_saturday_does_not_fetch_closed_markets(weekend, pg_url, monkeypatch):
    from assets_pipeline.simulator import PolygonSimulator

    # the simulator reads the same (frozen) clock, so its quotes are Saturday's
    with PolygonSimulator(
        host="127.0.0.1", port=0, clock=lambda: clock.utcnow().timestamp()
    ) as sim:
        for name, value in {
            "POLYGON_API_KEY": "k",
            "POLYGON_BASE_URL": sim.url,
            "TRADING_DATABASE_URL": pg_url,
        }.items():
            monkeypatch.setenv(name, value)
        # the job as the schedule launches it, but selecting all three (a stale request), on
        # the frozen Saturday's partition
        result = weekend.defs.resolve_job_def("refresh_critical").execute_in_process(
            partition_key=clock.today().isoformat(),
            instance=weekend.instance,
            tags=run_tags(CRITICAL, tier="critical"),
        )
        asked = [r.query.get("ticker.any_of") for r in sim.requests if r.path == "/v3/snapshot"]
    assert result.success
    assert asked == ["X:BTCUSD"]
    done = {m.asset_key.path[-1] for m in result.asset_materializations_for_node("quotes")}
    assert done == {"BTCUSD"}


def test_a_market_open_waits_for_a_critical_refresh_in_flight_and_is_not_forgotten(weekend):
    # A critical refresh still running when forex opens: a second critical run would only
    # queue behind it (one run of each kind at a time). The sensor waits, and keeps the open
    # in view: once the run is over, the next evaluation refreshes the symbols that opened.
    weekend.clock.move_to(SUNDAY_OPEN_WINTER - dt.timedelta(seconds=20))
    with dg.build_sensor_context(
        instance=weekend.instance, resources=weekend.resources()
    ) as context:
        sensor = weekend.defs.resolve_sensor_def("refresh_at_market_open")
        sensor(context)  # starts watching
        run = create_run_for_test(
            weekend.instance, "refresh_critical", dg.DagsterRunStatus.STARTED, run_tags(CRITICAL)
        )
        weekend.clock.move_to(SUNDAY_OPEN_WINTER)
        waiting = sensor(context)
        assert isinstance(waiting, dg.SkipReason)
        assert f"still started ({run.run_id[:8]})" in waiting.skip_message
        weekend.instance.report_run_canceled(run)  # the run is over
        weekend.clock.move_to(SUNDAY_OPEN_WINTER + dt.timedelta(seconds=30))
        request = sensor(context)
    assert [k.path[-1] for k in request.asset_selection] == ["XAUUSD", "EURUSD"]


# --- dead runs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "cadence", "kind"),
    [
        # the critical schedule, which skips while a critical refresh is in flight
        ("refresh_critical", "refresh_critical_every_5m", CRITICAL),
        # the queue drain, which skips while a queue batch is in flight
        ("refresh_queue", "refresh_queue_drain", "queue"),
    ],
)
def test_a_run_in_flight_past_its_maximum_runtime_no_longer_holds_its_cadence(
    deployment, job, cadence, kind
):
    deployment.schedule("enqueue_high_every_30m")
    run = create_run_for_test(deployment.instance, job, dg.DagsterRunStatus.STARTED, run_tags(kind))
    created = deployment.instance.get_run_record_by_id(run.run_id).create_timestamp
    limit = float(run.tags[MAX_RUNTIME_TAG])
    tick = deployment.schedule if cadence.endswith("5m") else deployment.sensor
    with clock.frozen_at(created + dt.timedelta(seconds=limit - 1)):
        assert isinstance(tick(cadence), dg.SkipReason)  # alive: wait for it
    with clock.frozen_at(created + dt.timedelta(seconds=limit + 1)):
        assert isinstance(tick(cadence), dg.RunRequest)  # dead: refresh again


@pytest.mark.slow
def test_after_a_refresh_runs_process_is_killed_the_next_tick_refreshes(deployment, tmp_path):
    # A critical refresh run whose process is killed mid-call stays STARTED in Dagster's storage.
    # Until its maximum runtime the schedule waits for it; after it, the next tick refreshes.
    import os
    import signal
    import subprocess
    import sys
    import time

    from assets_pipeline.simulator import Fault, PolygonSimulator

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    script = (
        "import dagster as dg\n"
        "from assets_pipeline.definitions import defs\n"
        "from assets_pipeline.rules.run_kinds import CRITICAL, run_tags\n"
        "from assets_pipeline.rules import clock\n"
        "defs.resolve_job_def('refresh_critical').execute_in_process(\n"
        "    partition_key=clock.today().isoformat(), instance=dg.DagsterInstance.get(),\n"
        "    tags=run_tags(CRITICAL))\n"
    )
    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        sim.add_fault(Fault("timeout", delay=60))  # the call hangs: the run is in flight
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "POLYGON_BASE_URL": sim.url,
            "POLYGON_API_KEY": "k",
            "ASSETS_PIPELINE_HOME": str(tmp_path / "embedded"),
        }
        for name in ("TRADING_DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        worker = subprocess.Popen([sys.executable, "-c", script], env=env)
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                deadline = time.monotonic() + 120
                while not any(r.path.startswith("/v3/snapshot") for r in sim.requests):
                    assert worker.poll() is None and time.monotonic() < deadline
                    time.sleep(0.2)
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()
                (run,) = instance.get_runs()
                assert run.status == dg.DagsterRunStatus.STARTED  # nobody will ever finish it
                deployment.instance = instance
                record = instance.get_run_record_by_id(run.run_id)
                started = dt.datetime.fromtimestamp(record.start_time, dt.UTC)
                with clock.frozen_at(started + dt.timedelta(seconds=60)):
                    assert isinstance(
                        deployment.schedule("refresh_critical_every_5m"), dg.SkipReason
                    )
                with clock.frozen_at(started + dt.timedelta(seconds=301)):
                    request = deployment.schedule("refresh_critical_every_5m")
        finally:
            if worker.poll() is None:
                worker.kill()
    assert isinstance(request, dg.RunRequest)
    assert [k.path[-1] for k in request.asset_selection] == ["XAUUSD", "EURUSD", "BTCUSD"]


def test_the_instance_settings_fail_dead_runs_and_limit_backfills():
    import yaml

    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=settings) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 3600
    limits = settings["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "dagster/backfill", "limit": 1} in limits


# --- what a plan refuses -------------------------------------------------------------------------


def test_once_batch_snapshots_are_refused_the_reserve_and_the_drain_count_per_ticker(deployment):
    # In batch mode one call refreshes the critical tier, so the reserve is 1 call; a plan
    # that refuses batch snapshots makes it 3 (one per ticker), and the drain plans with that.
    deployment.schedule("enqueue_high_every_30m")
    deployment.spend(1)  # 4 left
    before = deployment.sensor("refresh_queue_drain", mode="batch")
    assert len(before.asset_selection) == 3  # one batch call takes the whole tier
    deployment.queue.release(before.tags["assets_pipeline/batch"])
    polygon = deployment.resources("batch")["polygon"]
    polygon.budget.budget().refuse(MULTI_TICKER_SNAPSHOT, "403 NOT_AUTHORIZED")
    assert polygon.effective_mode() == "per_ticker"
    after = deployment.sensor("refresh_queue_drain", mode="batch")
    # 4 left, 3 kept for the critical tier's three calls: one symbol now
    assert [k.path[-1] for k in after.asset_selection] == ["ETHUSDT"]
