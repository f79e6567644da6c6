"""Ticks decide, runs act: evaluating any schedule or sensor (as the daemon or the UI's Test button
does) writes nothing to the trading database, Redis or the budget.

Every schedule and sensor of the definitions is evaluated twice against the real PostgreSQL (and
Redis, where the budget lives there too) holding queue rows in every state, stored quotes, pending
outbox events and budget calls (an expired one included); every table and every key of the
namespace is byte-identical afterwards. The alert webhook is set (a receiver on loopback), so the
check alert judges the stale symbols and posts, as it does in production.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import redis
import sqlalchemy as sa

from assets_pipeline.defs.resources import (
    AlertWebhook,
    PolygonApi,
    PolygonBudgetResource,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.schema import api_budget_calls, metadata
from assets_pipeline.rules.taxonomy import Tier
from assets_pipeline_tests.conftest import REDIS_URL, get_engine, quote
from assets_pipeline_tests.defs.conftest import create_run_for_test
from assets_pipeline_tests.defs.test_alerts import Receiver


def snapshot(pg_url: str, namespace: str) -> dict[str, object]:
    """Every row of every table of the trading database, and every key of the Redis namespace
    with its value (`DUMP`), in a stable order."""
    engine = get_engine(pg_url)
    tables: dict[str, object] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(sa.select(table).order_by(*table.columns)).all()
            tables[table.fullname] = [tuple(row) for row in rows]
    client = redis.Redis.from_url(REDIS_URL)
    keys = sorted(client.scan_iter(match=f"{namespace}*"))
    tables["redis"] = [(key, client.dump(key)) for key in keys]
    client.close()
    return tables


def resources(pg_url: str, namespace: str, store: str, webhook: str) -> dict[str, object]:
    database = TradingDatabase(url=pg_url)
    redis_resource = RedisResource(url=REDIS_URL, namespace=namespace)
    budget = PolygonBudgetResource(
        calls=5, window_seconds=60, store=store, redis=redis_resource, database=database
    )
    polygon = PolygonResource(
        api=PolygonApi(base_url="http://127.0.0.1:9", api_key="unused"),
        snapshot_mode="per_ticker",
        budget=budget,
    )
    return {
        "database": database,
        "redis": redis_resource,
        "polygon": polygon,
        "alert_webhook": AlertWebhook(url=webhook),
    }


def fill(deployment, pg_url: str, namespace: str, registry, budget) -> None:
    """Queue rows in every state, stored quotes with their events still in the outbox, and budget
    calls, one of them long expired; a queue batch whose run crashed, one whose run was
    canceled."""
    queue = deployment.queue
    queue.enqueue([("GBPUSD", Tier.HIGH), ("AUDUSD", Tier.MEDIUM), ("USDJPY", Tier.HIGH)])
    queue.enqueue([("XAGUSD", Tier.MEDIUM), ("USDCAD", Tier.MEDIUM)])
    queue.claim(1, 1, "q-crashed", eligible={"USDJPY"})
    queue.claim(1, 1, "q-canceled", eligible={"XAGUSD"})
    for batch, status in (("q-crashed", "FAILURE"), ("q-canceled", "CANCELED")):
        create_run_for_test(
            deployment.instance,
            "refresh_queue",
            dg.DagsterRunStatus[status],
            tags={"assets_pipeline/batch": batch},
        )
    store = QuoteStore(get_engine(pg_url), namespace)  # no Redis: the events wait in the outbox
    old = deployment.clock.now - dt.timedelta(hours=2)
    for symbol in ("EURUSD", "ETHUSDT"):
        spec = registry.get(symbol)
        store.write_quote(spec, quote(symbol, spec.polygon_ticker, old))
    budget.acquire(1)
    with get_engine(pg_url).begin() as conn:  # a call of an hour ago: pruned by any write
        conn.execute(sa.insert(api_budget_calls).values(name="polygon", at=1.0))
    client = redis.Redis.from_url(REDIS_URL)
    client.zadd(f"{namespace}budget:{{polygon}}:calls", {"long-ago": 1.0})
    client.close()


def evaluate_everything(defs: dg.Definitions, instance, resources_) -> list[str]:
    """Every schedule's and sensor's tick, evaluated as the daemon evaluates it."""
    seen = []
    repository = defs.get_repository_def()
    for schedule in repository.schedule_defs:
        with dg.build_schedule_context(
            instance=instance, resources=resources_, repository_def=repository
        ) as context:
            schedule.evaluate_tick(context)
        seen.append(schedule.name)
    for sensor in repository.sensor_defs:
        with dg.build_sensor_context(
            instance=instance,
            resources=resources_,
            repository_def=repository,
            cursor=str(dt.datetime(2026, 11, 25, tzinfo=dt.UTC).timestamp()),
        ) as context:
            sensor.evaluate_tick(context)
        seen.append(sensor.name)
    return seen


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.mark.parametrize("store", ["database", "redis"])
def test_evaluating_every_schedule_and_sensor_twice_writes_nothing(
    deployment, pg_url, redis_namespace, registry, store, receiver
):
    resources_ = resources(pg_url, redis_namespace, store, receiver.url)
    fill(deployment, pg_url, redis_namespace, registry, resources_["polygon"].budget.budget())
    before = snapshot(pg_url, redis_namespace)
    assert before["data_sources.refresh_queue"] and before["data_sources.event_outbox"]

    first = evaluate_everything(deployment.defs, deployment.instance, resources_)
    second = evaluate_everything(deployment.defs, deployment.instance, resources_)

    assert first == second
    assert {"refresh_queue_drain", "enqueue_high_every_30m", "event_outbox_relay"} <= set(first)
    assert "alert_on_failed_check" in first
    after = snapshot(pg_url, redis_namespace)
    changed = [name for name in before if before[name] != after[name]]
    assert changed == [], f"a tick wrote to {changed}"
    # the check alert judged and posted (each evaluation starts from no cursor: it posts again)
    assert [body["alert"] for body in receiver.bodies] == ["checks_failed"] * 2
