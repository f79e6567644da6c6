"""The durable queue table, on the real PostgreSQL: a full queue drops or evicts (never an item in
flight), and failures are demoted, retried and finally failed."""

from __future__ import annotations

import datetime as dt

from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.rules.queue_rules import FAILED, IN_FLIGHT, QUEUED
from assets_pipeline.rules.taxonomy import Tier
from assets_pipeline_tests.conftest import get_engine


def test_a_full_queue_says_what_it_dropped(registry, pg_url):
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


def test_queue_failures_are_demoted_retried_and_finally_failed(registry, pg_url):
    queue = RefreshQueue(get_engine(pg_url), registry.queue)
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
