"""The durable secondary queue: `queue_rules` applied to `data_sources.refresh_queue`.

Every change is one transaction holding the queue's lock (a transaction-scoped advisory lock on
PostgreSQL; SQLite's `BEGIN IMMEDIATE`), so enqueue, queue and refresh runs touching it at once
never lose or double an item; the schedules and sensors only read it. The table is in the trading
database, so it outlives restarts of the daemon and the webserver."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from assets_pipeline.persistence.quote_store import MAX_ERROR_LENGTH, as_utc
from assets_pipeline.persistence.schema import refresh_queue
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import QueuePolicy
from assets_pipeline.rules.excerpts import clip
from assets_pipeline.rules.queue_rules import (
    FAILED,
    IN_FLIGHT,
    QUEUED,
    EnqueuePlan,
    QueueItem,
    after_failure,
    leaves_on_refresh,
    next_batch,
    on_failure,
    plan_enqueue,
    requeued,
)
from assets_pipeline.rules.taxonomy import Tier

_LOCK_KEY = 724_311_905  # any constant; names the queue's advisory lock


class QueueOperationError(ValueError):
    """An operator's change the queue refuses (a symbol not on it, or one being refreshed);
    the message names every symbol at fault, and nothing was changed."""


@dataclass(frozen=True)
class QueueStats:
    waiting_by_tier: dict[str, int]
    in_flight: int
    failed: int
    oldest_enqueued_at: dt.datetime | None

    @property
    def waiting(self) -> int:
        return sum(self.waiting_by_tier.values())


def _row_values(item: QueueItem) -> dict[str, object]:
    return {
        "symbol": item.symbol,
        "tier": item.tier.value,
        "base_tier": item.base_tier.value,
        "tier_rank": item.tier.rank,
        "enqueued_at": item.enqueued_at,
        "attempts": item.attempts,
        "status": item.status,
        "last_error": item.last_error,
        "batch_id": item.batch_id,
        "claimed_at": item.claimed_at,
    }


def _item(row: sa.Row) -> QueueItem:
    return QueueItem(
        symbol=row.symbol,
        tier=Tier(row.tier),
        base_tier=Tier(row.base_tier),
        enqueued_at=as_utc(row.enqueued_at),  # type: ignore[arg-type]
        attempts=row.attempts,
        status=row.status,
        last_error=row.last_error,
        batch_id=row.batch_id,
        claimed_at=as_utc(row.claimed_at),
    )


class RefreshQueue:
    def __init__(self, engine: sa.Engine, policy: QueuePolicy | None = None) -> None:
        self.engine = engine
        self.policy = policy or QueuePolicy()

    def _locked(self, conn: sa.Connection) -> list[QueueItem]:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        return [_item(row) for row in conn.execute(sa.select(refresh_queue))]

    def _save(self, conn: sa.Connection, items: Iterable[QueueItem], insert: bool) -> None:
        for item in items:
            values = _row_values(item)
            if insert:
                conn.execute(sa.insert(refresh_queue).values(values))
            else:
                conn.execute(
                    sa.update(refresh_queue)
                    .where(refresh_queue.c.symbol == item.symbol)
                    .values(values)
                )

    def items(self) -> list[QueueItem]:
        with self.engine.connect() as conn:
            return [_item(row) for row in conn.execute(sa.select(refresh_queue))]

    def enqueue(
        self, arrivals: Iterable[tuple[str, Tier]], now: dt.datetime | None = None
    ) -> EnqueuePlan:
        """Add symbols (each at most once); the plan says what was added and what dropped. A full
        queue deletes the waiting items it evicts for better arrivals (never one in flight)."""
        with self.engine.begin() as conn:
            plan = plan_enqueue(
                self._locked(conn), arrivals, now or clock.utcnow(), self.policy.max_size
            )
            if plan.evicted:
                conn.execute(
                    sa.delete(refresh_queue).where(
                        refresh_queue.c.symbol.in_(plan.evicted), refresh_queue.c.status == QUEUED
                    )
                )
            self._save(conn, plan.insert, insert=True)
            self._save(conn, plan.update, insert=False)
        return plan

    def claim(
        self,
        slots: int,
        per_call: int,
        batch_id: str,
        now: dt.datetime | None = None,
        eligible: set[str] | None = None,
        step_of: Callable[[str], int] | None = None,
    ) -> list[QueueItem]:
        """Take the next items for `slots` API calls and mark them in flight for `batch_id`.
        Items outside `eligible` (their market is closed) keep their place in the queue; with
        `step_of`, the batch keeps to the step of its first item (`queue_rules.next_batch`)."""
        now = now or clock.utcnow()
        with self.engine.begin() as conn:
            items = self._locked(conn)
            if eligible is not None:
                items = [i for i in items if i.symbol in eligible]
            chosen = next_batch(items, slots, per_call, step_of)
            claimed = [
                dataclasses.replace(item, status=IN_FLIGHT, batch_id=batch_id, claimed_at=now)
                for item in chosen
            ]
            self._save(conn, claimed, insert=False)
        return claimed

    def complete(self, symbols: Iterable[str]) -> int:
        """Refreshed: the symbols leave the queue (`queue_rules.leaves_on_refresh`)."""
        wanted = set(symbols)
        if not wanted:
            return 0
        with self.engine.begin() as conn:
            leaving = [
                i.symbol for i in self._locked(conn) if i.symbol in wanted and leaves_on_refresh(i)
            ]
            if not leaving:
                return 0
            return conn.execute(
                sa.delete(refresh_queue).where(refresh_queue.c.symbol.in_(leaving))
            ).rowcount

    def fail(
        self,
        symbol: str,
        tier: Tier,
        error: str,
        retryable: bool,
        now: dt.datetime | None = None,
    ) -> QueueItem | None:
        """Apply the failure rules (`queue_rules.on_failure`); the error is stored cut short and
        safe (no NUL, no lone surrogate)."""
        now = now or clock.utcnow()
        error = clip(error, MAX_ERROR_LENGTH)
        with self.engine.begin() as conn:
            current = {item.symbol: item for item in self._locked(conn)}
            item = current.get(symbol)
            updated = on_failure(item, symbol, tier, error, retryable, self.policy.max_retries, now)
            if updated is not None:
                self._save(conn, [updated], insert=item is None)
            return updated

    def fail_batch(
        self, batch_id: str, error: str, now: dt.datetime | None = None
    ) -> list[QueueItem]:
        """A batch's run died after claiming: each item it still holds counts one failed attempt
        (`after_failure`: one tier lower at the back of the queue, `failed` after `max_retries`),
        so a symbol that crashes its run cannot be retried forever."""
        now = now or clock.utcnow()
        error = clip(error, MAX_ERROR_LENGTH)
        with self.engine.begin() as conn:
            held = [
                item
                for item in self._locked(conn)
                if item.status == IN_FLIGHT and item.batch_id == batch_id
            ]
            failed = [
                after_failure(item, error, True, self.policy.max_retries, now) for item in held
            ]
            self._save(conn, failed, insert=False)
        return failed

    def _unclaim(self, which: sa.ColumnElement[bool]) -> int:
        """Claimed items back to waiting, in their old place, without counting an attempt."""
        with self.engine.begin() as conn:
            self._locked(conn)
            return conn.execute(
                sa.update(refresh_queue)
                .where(which, refresh_queue.c.status == IN_FLIGHT)
                .values(status=QUEUED, batch_id=None, claimed_at=None)
            ).rowcount

    def release(self, batch_id: str) -> int:
        """Put a batch's claimed items back (its run never appeared, or ended without settling
        them through no fault of theirs, e.g. canceled)."""
        return self._unclaim(refresh_queue.c.batch_id == batch_id)

    def release_symbols(self, symbols: Iterable[str]) -> int:
        """Put claimed symbols back (their market is closed)."""
        symbols = list(symbols)
        return self._unclaim(refresh_queue.c.symbol.in_(symbols)) if symbols else 0

    def stats(self) -> QueueStats:
        items = self.items()
        waiting = [i for i in items if i.status == QUEUED]
        counts = Counter(i.tier.value for i in waiting)
        return QueueStats(
            waiting_by_tier={t.value: counts.get(t.value, 0) for t in Tier},
            in_flight=sum(1 for i in items if i.status == IN_FLIGHT),
            failed=sum(1 for i in items if i.status == FAILED),
            oldest_enqueued_at=min((i.enqueued_at for i in waiting), default=None),
        )

    def _operable(
        self, conn: sa.Connection, symbols: Iterable[str], configured: Container[str] | None
    ) -> list[QueueItem]:
        """The items of `symbols`, locked, if an operator may change every one of them: each
        must be on the queue, not in flight (a batch holds it: it is being refreshed now) and,
        if `configured` is given, in it. Otherwise nothing is changed and the error names each
        symbol at fault."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            raise QueueOperationError("no symbol given")
        current = {item.symbol: item for item in self._locked(conn)}
        missing = [s for s in wanted if s not in current]
        busy = [current[s] for s in wanted if s in current and current[s].status == IN_FLIGHT]
        gone = [s for s in wanted if configured is not None and s not in configured]
        problems = []
        if missing:
            problems.append(f"not on the queue: {', '.join(missing)}")
        if gone := [s for s in gone if s not in missing]:
            problems.append(f"no longer in the symbols file (clear it instead): {', '.join(gone)}")
        if busy:
            held = ", ".join(f"{i.symbol} (batch {i.batch_id})" for i in busy)
            problems.append(f"in flight, being refreshed now: {held}")
        if problems:
            raise QueueOperationError("; ".join(problems) + "; nothing was changed")
        return [current[s] for s in wanted]

    def requeue(
        self,
        symbols: Iterable[str],
        now: dt.datetime | None = None,
        configured: Container[str] | None = None,
    ) -> list[QueueItem]:
        """Put failed or demoted symbols back as due now (`queue_rules.requeued`): at their own
        tier, back of it, attempts reset. A symbol missing from `configured` (removed from the
        symbols file) is refused: no drain would ever refresh it. All or nothing
        (`QueueOperationError`)."""
        now = now or clock.utcnow()
        with self.engine.begin() as conn:
            items = [requeued(item, now) for item in self._operable(conn, symbols, configured)]
            self._save(conn, items, insert=False)
        return items

    def clear(self, symbols: Iterable[str]) -> list[QueueItem]:
        """Take symbols off the queue, failure and all; returns the items as they were. The next
        scheduled enqueue of their tier (or the start-up sensor, if their refresh is overdue)
        brings a still-configured symbol back with no attempt counted. All or nothing."""
        with self.engine.begin() as conn:
            items = self._operable(conn, symbols, None)
            gone = [item.symbol for item in items]
            conn.execute(sa.delete(refresh_queue).where(refresh_queue.c.symbol.in_(gone)))
        return items
