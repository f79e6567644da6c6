"""Sensors. They never call Polygon: only the database, Redis and the budget's bookkeeping."""

import datetime as dt
import uuid
from dataclasses import dataclass

import dagster as dg

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.config.registry import Registry
from assets_pipeline.defs.keys import quote_asset_key
from assets_pipeline.defs.resources import PolygonResource, RedisResource, TradingDatabase
from assets_pipeline.defs.runs import IN_FLIGHT_STATUSES, QUEUE_JOB, runs_in_flight, today
from assets_pipeline.persistence.outbox import relay_pending
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.polygon.bars import GROUPED_MARKETS
from assets_pipeline.rules import clock
from assets_pipeline.rules.queue_rules import claim_size, stalest_first
from assets_pipeline.rules.run_kinds import BATCH_TAG, QUEUE, run_tags

#: A claimed batch with no run after this long (its request was never launched) goes back.
ORPHAN_CLAIM_SECONDS = 120.0
#: A run that ended without settling its batch: a crash counts an attempt, the others do not.
GIVE_BACK = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED}


@dg.sensor(
    name="event_outbox_relay",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publish quote events still waiting in the outbox (Redis was down or unset).",
)
def event_outbox_relay(
    context: dg.SensorEvaluationContext, database: TradingDatabase, redis: RedisResource
) -> dg.SkipReason:
    client = redis.client()
    if client is None:
        return dg.SkipReason("REDIS_URL is not set: events wait in the outbox")
    result = relay_pending(database.engine(), client)
    if result.error:
        context.log.warning(f"relay stopped: {result.error}")
    if result.parked:
        context.log.warning(f"outbox: {result.parked} event(s) parked, see their last_error")
    return dg.SkipReason(
        result.summary() + (f"; Redis error: {result.error}" if result.error else "")
    )


@dataclass(frozen=True)
class Reconciled:
    """What `reconcile_claims` did with the items of batches no run is working on."""

    released: int = 0  # back in their place, no attempt counted
    failed: int = 0  # their run crashed: one failed attempt each

    def note(self) -> str:
        parts = []
        if self.released:
            parts.append(f"released {self.released} item(s) of a finished batch")
        if self.failed:
            parts.append(f"counted a failed attempt for {self.failed} item(s) of a crashed run")
        return f" ({'; '.join(parts)})" if parts else ""


def reconcile_claims(
    instance: dg.DagsterInstance, queue: RefreshQueue, now: dt.datetime
) -> Reconciled:
    """Settle items claimed by batches whose run ended without settling them, or whose run never
    appeared: the queue never loses an item, and never retries a crashing one forever.

    A run that FAILED died after claiming (a crash in the run, or in a symbol): each item it still
    held counts one failed attempt (one tier lower, back of the queue, `failed` after the retries).
    A run that was canceled (or, harmlessly, succeeded) gives its items back as they were, and so
    does a batch whose run never appeared within `ORPHAN_CLAIM_SECONDS`.
    """
    released = failed = 0
    for batch_id, claimed_at in queue.in_flight_batches().items():
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch_id}), limit=1)
        if runs and runs[0].status == dg.DagsterRunStatus.FAILURE:
            error = f"run {runs[0].run_id[:8]} died before settling it"
            failed += len(queue.fail_batch(batch_id, error, now))
        elif runs and runs[0].status in GIVE_BACK:
            released += queue.release(batch_id)
        elif not runs and (now - claimed_at).total_seconds() > ORPHAN_CLAIM_SECONDS:
            released += queue.release(batch_id)
    return Reconciled(released, failed)


def drain_tick(
    context: dg.SensorEvaluationContext,
    registry: Registry,
    polygon: PolygonResource,
    database: TradingDatabase,
) -> dg.RunRequest | dg.SkipReason:
    now = clock.utcnow()
    queue = RefreshQueue(database.engine(), registry.queue)
    note = reconcile_claims(context.instance, queue, now).note()
    busy = runs_in_flight(context.instance, QUEUE_JOB)
    if busy:
        return dg.SkipReason(f"a queue batch is still {busy[0].status.value.lower()}{note}")
    waiting = queue.stats().waiting
    learnt = polygon.learnt()
    caller = polygon.secondary_caller(registry, database, learnt)
    # on day bars, one grouped call serves a whole market: claim as a batch does, not per ticker
    mode = "batch" if GROUPED_MARKETS.keys() <= learnt.bars else learnt.mode
    budget = polygon.budget.budget(caller)
    if not waiting:
        return _top_up(registry, database, budget, polygon, mode, now) or dg.SkipReason(
            f"the queue is empty{note}"
        )
    slots = budget.free_slots()
    if slots <= 0:
        stats = budget.stats()
        return dg.SkipReason(
            f"{waiting} waiting; budget has {stats.remaining} of {stats.limit} calls left and"
            f" {caller.reserve} are kept for the next critical refresh{note}"
        )
    calls, per_call = claim_size(
        mode, slots, budget.limit, budget.window_seconds, polygon.max_budget_wait_seconds
    )
    batch_id = f"q-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    trading = {s.symbol for s in registry.trading(registry, now)}
    claimed = queue.claim(calls, per_call, batch_id, eligible=trading, step_of=registry.step_of)
    if not claimed:
        return dg.SkipReason(f"{waiting} waiting, none whose market is open{note}")
    return dg.RunRequest(
        run_key=batch_id,
        partition_key=today(),
        asset_selection=[quote_asset_key(item.symbol) for item in claimed],
        tags=run_tags(QUEUE, batch_id),
    )


def _top_up(
    registry: Registry,
    database: TradingDatabase,
    budget: PolygonBudget,
    polygon: PolygonResource,
    mode: str,
    now: dt.datetime,
) -> dg.RunRequest | None:
    """With the queue empty, the budget left after the critical reserve refreshes the stalest
    secondary symbols first: those whose price is older than half their tier's cadence, whose
    market trades and for which a newer price can exist. Only what is free now is spent, so a
    critical refresh is never delayed. None when nothing is worth a call or no slot is free."""
    trading = registry.trading(registry.queued(), now)
    if not trading:
        return None
    stored = database.quote_store().latest_quotes(s.symbol for s in trading)
    due = [s for s in trading if registry.due(s, stored.get(s.symbol), now)]
    stalest = stalest_first(
        {s.symbol: stored[s.symbol].data_time if s.symbol in stored else None for s in due},
        {s.symbol: registry.tiers[s.tier].every_seconds / 2 for s in due},
        now,
    )
    slots = budget.free_slots() if stalest else 0
    if slots <= 0:
        return None
    calls, per_call = claim_size(mode, slots, budget.limit, budget.window_seconds, 0.0)
    step = registry.step_of(stalest[0])
    chosen = [s for s in stalest if registry.step_of(s) == step][: calls * per_call]
    batch_id = f"t-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return dg.RunRequest(
        run_key=batch_id,
        partition_key=today(),
        asset_selection=[quote_asset_key(symbol) for symbol in chosen],
        tags=run_tags(QUEUE, batch_id, **{"assets_pipeline/top_up": "stalest first"}),
    )


def build_drain_sensor(registry: Registry) -> dg.SensorDefinition:
    @dg.sensor(
        name="refresh_queue_drain",
        job_name=QUEUE_JOB,
        minimum_interval_seconds=max(1, int(registry.queue.drain_every_seconds)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Refresh the next symbols on the queue (tier first, then oldest), as many as the"
            " budget allows after keeping the next critical refresh's calls free; with the"
            " queue empty, spend what is free on the stalest secondary symbols first."
        ),
    )
    def refresh_queue_drain(
        context: dg.SensorEvaluationContext, polygon: PolygonResource, database: TradingDatabase
    ) -> dg.RunRequest | dg.SkipReason:
        return drain_tick(context, registry, polygon, database)

    return refresh_queue_drain


__all__ = ["IN_FLIGHT_STATUSES", "build_drain_sensor", "event_outbox_relay"]
