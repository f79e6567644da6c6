"""The cadences, evaluated as the daemon would, against the real PostgreSQL: the critical schedule
and its catch-up at start-up, the enqueue schedules and their catch-up, and the market-open sensor.

They decide when runs happen and what the queue will hold, and write nothing: the enqueue runs
they request fill the queue. None of them calls Polygon (one test runs the job they launch, on a
Saturday, against the simulator). The clock is frozen (`frozen_clock`):
today's partition and market hours are read from it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import pytest

from assets_pipeline.definitions import build_definitions
from assets_pipeline.defs.jobs import enqueue_message
from assets_pipeline.defs.runs import IN_FLIGHT_STATUSES
from assets_pipeline.defs.schedules import CATCH_UP_GRACE_SECONDS
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.rules import clock
from assets_pipeline.rules.queue_rules import QUEUED
from assets_pipeline.rules.quotes import Timeframe
from assets_pipeline.rules.run_kinds import CRITICAL, run_tags
from assets_pipeline.rules.taxonomy import Tier
from assets_pipeline_tests.conftest import get_engine, quote
from assets_pipeline_tests.defs.conftest import create_run_for_test, enqueued

# --- the critical tier ---------------------------------------------------------------------------


def test_the_critical_schedule_refreshes_at_critical_priority(deployment):
    request = deployment.schedule("refresh_critical_every_5m")
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key is None  # the live quote has no partitions
    assert request.tags["dagster/priority"] == "10"
    assert request.tags["assets_pipeline/kind"] == "critical"
    schedule = deployment.defs.resolve_schedule_def("refresh_critical_every_5m")
    assert (schedule.cron_schedule, schedule.job_name) == ("*/5 * * * *", "refresh_critical")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


# A queued run cannot be made without Dagster's private code-location origin (a QUEUED run needs
# one): STARTING stands for the statuses before STARTED, and QUEUED is asserted to be among them.
@pytest.mark.parametrize("status", [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
def test_the_critical_schedule_skips_while_a_refresh_is_queued_or_running(deployment, status):
    assert dg.DagsterRunStatus.QUEUED in IN_FLIGHT_STATUSES
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


# --- enqueueing ----------------------------------------------------------------------------------


def test_an_enqueue_tick_launches_an_enqueue_run_which_fills_the_queue_once(deployment):
    schedule = deployment.defs.resolve_schedule_def("enqueue_high_every_30m")
    assert schedule.job_name == "enqueue_refreshes"
    first = deployment.schedule("enqueue_high_every_30m")
    assert isinstance(first, dg.RunRequest) and first.job_name == "enqueue_refreshes"
    assert first.tags["assets_pipeline/enqueue"] == "high"
    assert deployment.queue.items() == []  # the tick decided; the run acts
    result = deployment.execute(first)
    assert enqueued(result) == 3
    assert sorted(i.symbol for i in deployment.queue.items()) == ["ETHUSDT", "GBPUSD", "USDJPY"]
    again = deployment.schedule("enqueue_high_every_30m")
    assert isinstance(again, dg.SkipReason)
    assert again.skip_message == "3 high symbol(s) due, all already waiting"


def test_at_start_up_overdue_secondaries_are_queued_at_once_and_only_once(
    deployment, pg_url, registry
):
    from assets_pipeline.persistence.quote_store import QuoteStore
    from assets_pipeline.rules.quotes import Quote

    now = deployment.clock.now
    fresh = Quote(
        ticker="C:GBPUSD",
        symbol="GBPUSD",
        data_time=now,
        source="polygon:test",
        bid=1.27,
        ask=1.2701,
        last_price=1.27005,
    )
    QuoteStore(get_engine(pg_url)).write_quote(registry.get("GBPUSD"), fresh)
    first = deployment.sensor("enqueue_overdue_at_start_up")
    # GBPUSD was refreshed just now; the other five secondaries have never been
    assert deployment.queue.items() == []
    assert enqueued(deployment.execute(first)) == 5
    assert sorted(i.symbol for i in deployment.queue.items()) == [
        "AUDUSD",
        "ETHUSDT",
        "USDCAD",
        "USDJPY",
        "XAGUSD",
    ]
    again = deployment.sensor("enqueue_overdue_at_start_up")
    assert again.skip_message == "no queued-tier symbol is overdue"


def test_the_enqueue_run_names_what_a_full_queue_dropped_and_evicted(registry, pg_url):
    small = dataclasses.replace(registry, queue=dataclasses.replace(registry.queue, max_size=2))
    queue = RefreshQueue(get_engine(pg_url), small.queue)

    def enqueue(tier):
        arrivals = [(s.symbol, s.tier) for s in small.in_tier(tier)]
        return enqueue_message(queue.enqueue(arrivals), len(arrivals), tier.value, 2)

    assert enqueue(Tier.MEDIUM) == (
        "enqueued 2 medium symbol(s); 0 already waiting; QUEUE FULL (2): dropped XAGUSD"
    )
    # each high symbol is better than the medium ones waiting, until only high ones wait
    assert enqueue(Tier.HIGH) == (
        "enqueued 2 high symbol(s); 0 already waiting; QUEUE FULL (2): dropped USDCAD, AUDUSD,"
        " USDJPY (evicted from the queue for a better tier: USDCAD, AUDUSD)"
    )
    assert sorted(i.symbol for i in queue.items()) == ["ETHUSDT", "GBPUSD"]


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
    deployment.symbols = registry
    deployment.clock.move_to(SATURDAY)
    return deployment


def test_on_saturday_the_critical_refresh_spends_calls_on_crypto_only(weekend):
    request = weekend.schedule("refresh_critical_every_5m")
    assert [k.path[-1] for k in request.asset_selection] == ["BTCUSD"]


def test_on_saturday_closed_forex_is_not_enqueued_nor_drained(weekend):
    request = weekend.schedule("enqueue_high_every_30m")
    assert request.run_config["ops"]["enqueue_symbols"]["config"]["symbols"] == ["ETHUSDT"]
    assert request.run_config["ops"]["enqueue_symbols"]["config"]["note"] == (
        "market closed: GBPUSD, USDJPY"
    )
    assert enqueued(weekend.execute(request)) == 1
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
        enqueue, request = sensor(context)
    assert [k.path[-1] for k in request.asset_selection] == ["XAUUSD", "EURUSD"]
    assert (request.job_name, request.tags["dagster/priority"]) == ("refresh_critical", "10")
    assert weekend.queue.items() == []  # the enqueue run queues the others
    assert enqueue.job_name == "enqueue_refreshes"
    assert weekend.execute(enqueue).success
    assert sorted(i.symbol for i in weekend.queue.items()) == [
        "AUDUSD",
        "GBPUSD",
        "USDCAD",
        "USDJPY",
        "XAGUSD",
    ]


def test_a_cadence_run_on_saturday_does_not_fetch_closed_markets(weekend, pg_url, monkeypatch):
    from assets_pipeline.simulator import PolygonSimulator

    # the simulator reads the same (frozen) clock from its server's threads, so its quotes are
    # Saturday's
    now = clock.reader()
    with PolygonSimulator(host="127.0.0.1", port=0, clock=lambda: now().timestamp()) as sim:
        for name, value in {
            "POLYGON_API_KEY": "k",
            "POLYGON_BASE_URL": sim.url,
            "TRADING_DATABASE_URL": pg_url,
        }.items():
            monkeypatch.setenv(name, value)
        # the job as the schedule launches it (the location loaded with these settings), but
        # selecting all three (a stale request), on the frozen Saturday
        defs = build_definitions(weekend.symbols)
        result = defs.resolve_job_def("refresh_critical").execute_in_process(
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
        _enqueue, request = sensor(context)
    assert [k.path[-1] for k in request.asset_selection] == ["XAUUSD", "EURUSD"]


# --- an end-of-day plan --------------------------------------------------------------------------


def test_on_an_end_of_day_plan_the_critical_schedule_waits_for_a_new_bar(
    deployment, registry, pg_url
):
    # Wednesday 12:00Z on a free key, each critical symbol holding Tuesday's close (midnight
    # UTC): nothing newer can exist until Wednesday's bar is published, so no run, and why
    # Polygon alone: no live provider configured to serve them
    free = dataclasses.replace(registry, plan="free", live_providers=frozenset())
    store = QuoteStore(get_engine(pg_url))
    tuesday_close = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    for spec in free.in_tier(Tier.CRITICAL):
        bar = quote(
            spec.symbol,
            spec.polygon_ticker,
            tuesday_close,
            bid=None,
            ask=None,
            last_price=100.0,
            timeframe=Timeframe.END_OF_DAY,
            plan="free",
        )
        store.write_quote(spec, bar)
    schedule = build_definitions(free).resolve_schedule_def("refresh_critical_every_5m")

    def tick():
        resources = deployment.resources()
        with dg.build_schedule_context(instance=deployment.instance, resources=resources) as ctx:
            return schedule(ctx)

    waiting = tick()
    assert isinstance(waiting, dg.SkipReason)
    assert waiting.skip_message == (
        "no critical symbol is due: end-of-day plan, the newest close already stored:"
        " XAUUSD, EURUSD, BTCUSD (next bar after 2026-11-26T00:30Z)"
    )
    # Wednesday's bars close at midnight and are published 30 minutes later
    deployment.clock.move_to(dt.datetime(2026, 11, 26, 0, 31, tzinfo=dt.UTC))
    due = tick()
    assert isinstance(due, dg.RunRequest)
    assert sorted(k.path[-1] for k in due.asset_selection) == ["BTCUSD", "EURUSD", "XAUUSD"]
