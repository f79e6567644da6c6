"""The secondary queue's rules, with no storage: ordering, de-duplication, size, retries.

By tier then enqueue time, a symbol at most once; when full, a better arrival evicts the item that
would be served last (never one in flight), else it is dropped; a retryable failure is requeued a
tier lower up to `max_retries` times, a permanent one never. `refresh_queue.py` applies them to the
durable table (docs/plans.md, "The queue")."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from assets_pipeline.rules.cadence import BATCH_TICKERS
from assets_pipeline.rules.plans import SnapshotMode
from assets_pipeline.rules.taxonomy import Tier

QUEUED = "queued"
IN_FLIGHT = "in_flight"
FAILED = "failed"


@dataclass(frozen=True)
class QueueItem:
    """A symbol waiting for a refresh. `tier` is its current (possibly demoted) priority."""

    symbol: str
    tier: Tier
    base_tier: Tier
    enqueued_at: dt.datetime
    attempts: int = 0
    status: str = QUEUED
    last_error: str | None = None
    batch_id: str | None = None
    claimed_at: dt.datetime | None = None


def order_key(item: QueueItem) -> tuple[int, dt.datetime, str]:
    """Tier first, then first come first served; the symbol breaks exact ties."""
    return (item.tier.rank, item.enqueued_at, item.symbol)


def demote(tier: Tier) -> Tier:
    """One tier lower, and never below LOW."""
    tiers = list(Tier)
    return tiers[min(tier.rank + 1, len(tiers) - 1)]


@dataclass(frozen=True)
class EnqueuePlan:
    """What an enqueue does: new items, items to refresh in place, and the symbols the size limit
    left out (`dropped`): arrivals turned away, and waiting items `evicted` (their rows deleted)
    to make room for better ones."""

    insert: list[QueueItem]
    update: list[QueueItem]
    dropped: list[str]
    evicted: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[str]:
        """The arrivals that were dropped (not the evicted items)."""
        return [symbol for symbol in self.dropped if symbol not in self.evicted]


def plan_enqueue(
    existing: Iterable[QueueItem],
    arrivals: Iterable[tuple[str, Tier]],
    now: dt.datetime,
    max_size: int,
) -> EnqueuePlan:
    """Add arrivals, a symbol at most once.

    A symbol already waiting keeps its place; if it arrives at a better tier than it now has
    (it was demoted), it is promoted back. A symbol that had failed for good starts afresh.
    At `max_size` waiting items (queued or in flight), an arrival of a better tier than the last
    item in the queue's order evicts it (the worst tier's newest arrival, never an item in
    flight); an arrival no better than that is dropped. Arrivals are taken best tier first.
    """
    current = {item.symbol: item for item in existing}
    before = set(current)
    waiting = sum(1 for item in current.values() if item.status != FAILED)
    changed: dict[str, QueueItem] = {}
    dropped: list[str] = []
    evicted: list[str] = []
    for symbol, tier in sorted(set(arrivals), key=lambda a: (a[1].rank, a[0])):
        item = current.get(symbol)
        if item is not None and item.status != FAILED:
            if tier.rank < item.tier.rank and item.status == QUEUED:
                current[symbol] = changed[symbol] = dataclasses.replace(item, tier=tier)
            continue
        if waiting >= max_size:
            last = max(
                (i for i in current.values() if i.status == QUEUED), key=order_key, default=None
            )
            if last is None or last.tier.rank <= tier.rank:
                if symbol not in dropped:  # it may have been evicted by a better arrival
                    dropped.append(symbol)
                continue
            del current[last.symbol]
            changed.pop(last.symbol, None)
            dropped.append(last.symbol)
            evicted.append(last.symbol)
            waiting -= 1
        fresh = QueueItem(symbol=symbol, tier=tier, base_tier=tier, enqueued_at=now)
        current[symbol] = changed[symbol] = fresh
        waiting += 1
    inserts = [item for symbol, item in changed.items() if symbol not in before]
    updates = [item for symbol, item in changed.items() if symbol in before]
    return EnqueuePlan(inserts, updates, dropped, evicted)


def after_failure(
    item: QueueItem, error: str, retryable: bool, max_retries: int, now: dt.datetime
) -> QueueItem:
    """A retryable failure goes back, one tier lower, at the back of its new tier; after
    `max_retries` retries, or on a permanent error, it is marked failed with the error."""
    attempts = item.attempts + 1
    if not retryable or attempts > max_retries:
        return dataclasses.replace(
            item, status=FAILED, attempts=attempts, last_error=error, batch_id=None
        )
    return dataclasses.replace(
        item,
        status=QUEUED,
        tier=demote(item.tier),
        attempts=attempts,
        last_error=error,
        enqueued_at=now,
        batch_id=None,
        claimed_at=None,
    )


def on_failure(
    item: QueueItem | None,
    symbol: str,
    tier: Tier,
    error: str,
    retryable: bool,
    max_retries: int,
    now: dt.datetime,
) -> QueueItem | None:
    """What a failed refresh does to a symbol's queue item. A symbol that was not queued (a
    direct tier's refresh) is queued one tier lower if the error is retryable; a permanent
    error queues nothing. A queued one follows `after_failure`."""
    if item is not None:
        return after_failure(item, error, retryable, max_retries, now)
    if not retryable:
        return None
    return QueueItem(
        symbol=symbol,
        tier=demote(tier),
        base_tier=tier,
        enqueued_at=now,
        attempts=1,
        last_error=error,
    )


def claimed_batches(items: Iterable[QueueItem]) -> dict[str, dt.datetime]:
    """Batch id -> when it was first claimed, for the batches still marked in flight."""
    out: dict[str, dt.datetime] = {}
    for item in items:
        if item.status == IN_FLIGHT and item.batch_id and item.claimed_at:
            out[item.batch_id] = min(out.get(item.batch_id, item.claimed_at), item.claimed_at)
    return out


def leaves_on_refresh(item: QueueItem) -> bool:
    """A refreshed symbol leaves the queue, claimed or waiting, unless it failed for good
    (it stays `failed` until the next scheduled enqueue, so it is not retried in a loop)."""
    return item.status != FAILED


def stalest_first(
    data_times: Mapping[str, dt.datetime | None],
    min_age_seconds: Mapping[str, float],
    now: dt.datetime,
) -> list[str]:
    """The symbols worth a refresh with the budget the queue leaves over: those whose price is
    older than their `min_age_seconds` (or have none), the stalest first (none before any)."""
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    worth = [
        symbol
        for symbol, at in data_times.items()
        if at is None or (now - at).total_seconds() > min_age_seconds[symbol]
    ]
    return sorted(worth, key=lambda symbol: data_times[symbol] or floor)


def claim_size(
    mode: str, free_slots: int, limit: int, window_seconds: float, max_wait_seconds: float
) -> tuple[int, int]:
    """(calls, symbols per call) a queue batch claims. `batch`: one call of up to 250 symbols.
    `per_ticker`: the free slots plus one window more, when a run may wait that long for them
    inside the budget (which keeps the critical reserve at every call), instead of paying a
    run's start-up for every two symbols."""
    if mode == SnapshotMode.BATCH:
        return 1, BATCH_TICKERS
    lookahead = limit if max_wait_seconds > 2 * window_seconds else 0
    return free_slots + lookahead, 1


def next_batch(
    items: Iterable[QueueItem],
    slots: int,
    per_call: int,
    step_of: Callable[[str], int] | None = None,
) -> list[QueueItem]:
    """The next items to refresh: `slots` API calls, each covering `per_call` symbols. With
    `step_of`, only items of the first one's step (the multi-asset that holds it): a batch that
    spanned two would be two steps, and two calls where one was counted."""
    if slots <= 0:
        return []
    waiting = sorted((i for i in items if i.status == QUEUED), key=order_key)
    if step_of is not None and waiting:
        first = step_of(waiting[0].symbol)
        waiting = [i for i in waiting if step_of(i.symbol) == first]
    return waiting[: slots * per_call]


def overdue(
    candidates: Iterable[tuple[str, Tier, float]],
    last_sync: dict[str, dt.datetime | None],
    on_queue: set[str],
    now: dt.datetime,
) -> list[tuple[str, Tier]]:
    """Symbols (with their cadence in seconds) not refreshed within their cadence and not on the
    queue in any state: what a daemon that was down, or just started, owes the queue. A symbol
    that failed for good stays on the queue as `failed`, so it is not retried in a loop here."""
    out = []
    for symbol, tier, every in candidates:
        if symbol in on_queue:
            continue
        synced = last_sync.get(symbol)
        if synced is None or (now - synced).total_seconds() >= every:
            out.append((symbol, tier))
    return out


def requeued(item: QueueItem, now: dt.datetime) -> QueueItem:
    """An operator's retry: the item waits again at its own (configured) tier, at the back of
    that tier, with its attempts and error forgotten, so the retry rules start afresh. Whatever
    demoted it or marked it failed is undone; an item in flight is not this rule's to change."""
    return dataclasses.replace(
        item,
        tier=item.base_tier,
        status=QUEUED,
        attempts=0,
        last_error=None,
        enqueued_at=now,
        batch_id=None,
        claimed_at=None,
    )


def drain_order(items: Iterable[QueueItem]) -> list[QueueItem]:
    """Every item as an operator reads the queue: the waiting ones in the order the drain takes
    them, then those in flight, then the failed ones."""
    by_status = {QUEUED: 0, IN_FLIGHT: 1, FAILED: 2}
    return sorted(items, key=lambda i: (by_status.get(i.status, 3), *order_key(i)))
