"""The queue's rules: order, de-duplication, eviction, demotion, retries, overdue (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from assets_pipeline.rules.queue_rules import (
    FAILED,
    IN_FLIGHT,
    QUEUED,
    QueueItem,
    after_failure,
    demote,
    next_batch,
    overdue,
    plan_enqueue,
)
from assets_pipeline.rules.taxonomy import Tier

T0 = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def item(symbol, tier, seconds=0, **kw):
    return QueueItem(symbol=symbol, tier=tier, base_tier=tier, enqueued_at=at(seconds), **kw)


def test_next_batch_takes_tier_first_then_oldest():
    items = [
        item("LOW1", Tier.LOW, 0),
        item("MED2", Tier.MEDIUM, 20),
        item("HIGH2", Tier.HIGH, 30),
        item("MED1", Tier.MEDIUM, 10),
        item("HIGH1", Tier.HIGH, 25),
    ]
    assert [i.symbol for i in next_batch(items, slots=4, per_call=1)] == [
        "HIGH1",
        "HIGH2",
        "MED1",
        "MED2",
    ]
    # batch mode: one call covers everything
    assert len(next_batch(items, slots=1, per_call=250)) == 5
    assert next_batch(items, slots=0, per_call=1) == []


def test_a_symbol_is_queued_at_most_once_and_a_demoted_one_is_promoted_back():
    existing = [item("GBPUSD", Tier.MEDIUM, 0, attempts=1)]  # demoted from HIGH
    plan = plan_enqueue(
        existing,
        [("GBPUSD", Tier.HIGH), ("GBPUSD", Tier.HIGH), ("AUDUSD", Tier.MEDIUM)],
        at(60),
        10,
    )
    assert [i.symbol for i in plan.insert] == ["AUDUSD"]
    (promoted,) = plan.update
    assert (promoted.tier, promoted.enqueued_at, promoted.attempts) == (Tier.HIGH, at(0), 1)
    assert plan.dropped == []


def test_a_full_queue_drops_arrivals_lowest_priority_first():
    existing = [item(f"S{i}", Tier.HIGH) for i in range(3)]
    plan = plan_enqueue(existing, [("LOWX", Tier.LOW), ("HIGHX", Tier.HIGH)], at(1), max_size=4)
    assert [i.symbol for i in plan.insert] == ["HIGHX"]
    assert plan.dropped == ["LOWX"]


H, M, L = Tier.HIGH, Tier.MEDIUM, Tier.LOW


@pytest.mark.parametrize(
    ("existing", "arrivals", "max_size", "inserted", "dropped", "evicted"),
    [
        # a better arrival evicts the worst waiting item, which is reported as dropped
        ([item("H1", H), item("L1", L)], [("HX", H)], 2, ["HX"], ["L1"], ["L1"]),
        # the worst tier goes first, and within it the newest arrival
        (
            [item("L_OLD", L, 0), item("L_NEW", L, 30), item("M1", M, 60)],
            [("HX", H)],
            3,
            ["HX"],
            ["L_NEW"],
            ["L_NEW"],
        ),
        # an item in flight is never evicted: the worst item still waiting goes instead
        (
            [item("L1", L, status=IN_FLIGHT), item("M1", M)],
            [("HX", H)],
            2,
            ["HX"],
            ["M1"],
            ["M1"],
        ),
        # only items in flight are worse: nothing waiting to evict, so the arrival is dropped
        ([item("L1", L, status=IN_FLIGHT), item("H1", H)], [("HX", H)], 2, [], ["HX"], []),
        # an arrival no better than the worst waiting item is dropped, as it would be served last
        ([item("M1", M), item("M2", M)], [("MX", M), ("LX", L)], 2, [], ["MX", "LX"], []),
        # each better arrival evicts one, worst first, until nothing worse is waiting
        (
            [item("L1", L, 0), item("L2", L, 10), item("M1", M, 20)],
            [("HX", H), ("HY", H), ("HZ", H), ("MX", M)],
            3,
            ["HX", "HY", "HZ"],
            ["L2", "L1", "M1", "MX"],
            ["L2", "L1", "M1"],
        ),
        # a symbol failed for good is not waiting: it takes no room and is never evicted
        ([item("L1", L, status=FAILED), item("M1", M)], [("HX", H)], 2, ["HX"], [], []),
        # room left: nothing is evicted
        ([item("L1", L)], [("HX", H)], 2, ["HX"], [], []),
    ],
    ids=[
        "evicts the worst",
        "worst tier, newest",
        "never in flight",
        "only in flight is worse",
        "no better: dropped",
        "one eviction per arrival",
        "failed takes no room",
        "room left",
    ],
)
def test_a_full_queue_evicts_its_worst_waiting_item_for_a_better_arrival(
    existing, arrivals, max_size, inserted, dropped, evicted
):
    plan = plan_enqueue(existing, arrivals, at(120), max_size)
    assert [i.symbol for i in plan.insert] == inserted
    assert plan.dropped == dropped
    assert plan.evicted == evicted
    waiting = {i.symbol for i in existing if i.status != FAILED} - set(evicted) | set(inserted)
    assert len(waiting) <= max_size


def test_a_failed_symbol_starts_afresh_when_enqueued_again():
    failed = item("AUDUSD", Tier.LOW, 0, attempts=4, status=FAILED, last_error="boom")
    plan = plan_enqueue([failed], [("AUDUSD", Tier.MEDIUM)], at(1800), 10)
    (fresh,) = plan.update
    assert (fresh.status, fresh.tier, fresh.attempts, fresh.last_error) == (
        QUEUED,
        Tier.MEDIUM,
        0,
        None,
    )


def test_demotion_goes_one_tier_down_and_stops_at_low():
    assert [demote(t) for t in Tier] == [Tier.HIGH, Tier.MEDIUM, Tier.LOW, Tier.LOW]


def test_retryable_failures_are_requeued_demoted_then_failed_after_three_retries():
    current = item("GBPUSD", Tier.HIGH, 0)
    tiers = []
    for n in range(1, 4):
        current = after_failure(current, f"503 #{n}", retryable=True, max_retries=3, now=at(n))
        tiers.append(current.tier)
        assert current.status == QUEUED and current.enqueued_at == at(n)  # back of its new tier
    assert tiers == [Tier.MEDIUM, Tier.LOW, Tier.LOW]
    final = after_failure(current, "503 #4", retryable=True, max_retries=3, now=at(4))
    assert (final.status, final.attempts, final.last_error) == (FAILED, 4, "503 #4")


def test_a_permanent_failure_is_never_requeued():
    final = after_failure(
        item("ETHUSDT", Tier.HIGH), "404 NOT_FOUND", retryable=False, max_retries=3, now=at(1)
    )
    assert final.status == FAILED and final.attempts == 1


def test_overdue_symbols_are_those_not_refreshed_within_their_cadence_nor_queued():
    candidates = [
        ("GBPUSD", Tier.HIGH, 1800),
        ("USDJPY", Tier.HIGH, 1800),
        ("AUDUSD", Tier.MEDIUM, 1800),
        ("USDCAD", Tier.MEDIUM, 1800),
    ]
    last_sync = {
        "GBPUSD": at(0),  # refreshed 10 minutes before: not due
        "USDJPY": at(-3600),  # an hour ago: overdue
        "AUDUSD": None,  # never: overdue, but already on the queue (perhaps failed)
    }
    owed = overdue(candidates, last_sync, {"AUDUSD"}, at(600))
    assert owed == [("USDJPY", Tier.HIGH), ("USDCAD", Tier.MEDIUM)]  # USDCAD: never synced


def test_a_batch_keeps_to_the_step_of_its_first_symbol():
    """With more than 250 symbols the quotes are several multi-assets (steps); a queue batch that
    spanned two would be two steps and two calls where the drain counted one. It takes only the
    first item's step, and the rest keep their place for the next batch."""
    items = [item("HIGH1", Tier.HIGH, 0), item("MED1", Tier.MEDIUM, 0), item("HIGH2", Tier.HIGH, 9)]
    steps = {"HIGH1": 0, "HIGH2": 0, "MED1": 1}
    batch = next_batch(items, slots=1, per_call=250, step_of=steps.__getitem__)
    assert [i.symbol for i in batch] == ["HIGH1", "HIGH2"]
