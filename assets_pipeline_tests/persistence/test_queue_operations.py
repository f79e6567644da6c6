"""An operator's repairs of the queue, on the real PostgreSQL: requeue a failed or demoted symbol,
clear one off the queue, and refuse, changing nothing, a symbol that is not on it or is being
refreshed now."""

from __future__ import annotations

import datetime as dt

import pytest

from assets_pipeline.persistence.refresh_queue import QueueOperationError, RefreshQueue
from assets_pipeline.rules.queue_rules import FAILED, IN_FLIGHT, QUEUED
from assets_pipeline.rules.taxonomy import Tier
from assets_pipeline_tests.conftest import get_engine

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def queue(registry, pg_url):
    """GBPUSD failed for good (4 retryable failures), USDJPY demoted once, AUDUSD waiting and
    XAGUSD in flight."""
    queue = RefreshQueue(get_engine(pg_url), registry.queue)
    queue.enqueue([("GBPUSD", Tier.HIGH), ("USDJPY", Tier.HIGH), ("AUDUSD", Tier.MEDIUM)], T0)
    queue.enqueue([("XAGUSD", Tier.LOW)], T0)
    queue.claim(1, 1, "batch-7", T0, eligible={"XAGUSD"})
    for n in range(4):
        queue.fail("GBPUSD", Tier.HIGH, f"503 #{n}", retryable=True, now=T0)
    queue.fail("USDJPY", Tier.HIGH, "timeout", retryable=True, now=T0)
    return queue


def state(queue):
    return {i.symbol: (i.status, i.tier, i.attempts, i.last_error) for i in queue.items()}


def test_requeue_puts_a_failed_or_demoted_symbol_back_at_its_own_tier_with_attempts_reset(queue):
    assert state(queue)["GBPUSD"] == (FAILED, Tier.LOW, 4, "503 #3")
    later = T0 + dt.timedelta(minutes=5)

    done = queue.requeue(["GBPUSD", "USDJPY"], now=later)

    assert [i.symbol for i in done] == ["GBPUSD", "USDJPY"]
    after = {i.symbol: i for i in queue.items()}
    for symbol in ("GBPUSD", "USDJPY"):
        item = after[symbol]
        assert (item.status, item.tier, item.attempts, item.last_error) == (
            QUEUED,
            Tier.HIGH,
            0,
            None,
        )
        assert item.enqueued_at == later  # due now, behind those already waiting in its tier
    # the drain takes them next, at their own tier: ahead of the medium item
    claimed = queue.claim(3, 1, "batch-8", later)
    assert [i.symbol for i in claimed] == ["GBPUSD", "USDJPY", "AUDUSD"]
    # and the retry rules start afresh: one failure is a demotion again, not `failed`
    assert queue.fail("GBPUSD", Tier.HIGH, "503", retryable=True).status == QUEUED


def test_a_symbol_removed_from_the_symbols_file_can_be_cleared_but_not_requeued(queue):
    configured = {"USDJPY", "AUDUSD", "XAGUSD"}  # GBPUSD was taken out of the file
    before = state(queue)
    with pytest.raises(
        QueueOperationError,
        match=r"no longer in the symbols file \(clear it instead\): GBPUSD; nothing was changed",
    ):
        queue.requeue(["USDJPY", "GBPUSD"], configured=configured)
    assert state(queue) == before
    assert [i.symbol for i in queue.clear(["GBPUSD"])] == ["GBPUSD"]


def test_clear_takes_a_symbol_off_the_queue_failure_and_all(queue):
    cleared = queue.clear(["GBPUSD", "AUDUSD"])

    assert [(i.symbol, i.status) for i in cleared] == [("GBPUSD", FAILED), ("AUDUSD", QUEUED)]
    assert set(state(queue)) == {"USDJPY", "XAGUSD"}
    # the next scheduled enqueue brings it back with no attempt counted
    queue.enqueue([("GBPUSD", Tier.HIGH)])
    assert state(queue)["GBPUSD"] == (QUEUED, Tier.HIGH, 0, None)


@pytest.mark.parametrize(
    "symbols, message",
    [
        # a typo among good symbols: none of them is changed
        (["GBPUSD", "GBPUDS"], "not on the queue: GBPUDS; nothing was changed"),
        (["NOPE", "GBPUSD", "ZZZ"], "not on the queue: NOPE, ZZZ; nothing was changed"),
        # a batch holds it: requeueing would let two runs refresh it
        (["XAGUSD", "USDJPY"], "in flight, being refreshed now: XAGUSD (batch batch-7)"),
        ([], "no symbol given"),
    ],
)
@pytest.mark.parametrize("action", ["requeue", "clear"])
def test_a_symbol_not_on_the_queue_or_in_flight_is_refused_and_nothing_changes(
    queue, action, symbols, message
):
    before = state(queue)
    with pytest.raises(QueueOperationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        getattr(queue, action)(symbols)
    assert state(queue) == before
    assert before["XAGUSD"][0] == IN_FLIGHT
