"""Sensors. Ticks decide, runs act: they read the database, Redis and the budget, never write
them, and never call Polygon. The queue run claims its batch, the relay run publishes."""

import datetime as dt
import uuid

import dagster as dg
from redis import exceptions as redis_errors

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.config.registry import Registry
from assets_pipeline.defs.keys import quote_asset_key
from assets_pipeline.defs.resources import PolygonResource, RedisResource, TradingDatabase
from assets_pipeline.defs.runs import (
    CLAIM_TAG,
    IN_FLIGHT_STATUSES,
    QUEUE_JOB,
    in_flight,
    settled_view,
    settlements,
)
from assets_pipeline.persistence.outbox import pending_count, relay_pending
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.polygon.bars import GROUPED_MARKETS
from assets_pipeline.rules import clock
from assets_pipeline.rules.plans import SnapshotMode
from assets_pipeline.rules.queue_rules import QUEUED, claim_size, next_batch, stalest_first
from assets_pipeline.rules.run_kinds import QUEUE, UPKEEP, may_start, run_tags

RELAY_JOB = "relay_outbox"


@dg.op(name="relay_pending_events")
def relay_pending_events(
    context: dg.OpExecutionContext, database: TradingDatabase, redis: RedisResource
) -> dg.Output[int]:
    """Publish the events waiting in the outbox, oldest first, until Redis fails."""
    result = relay_pending(database.engine(), redis.client())
    if result.error:
        context.log.warning(f"relay stopped: {result.error}")
    if result.parked:
        context.log.warning(f"outbox: {result.parked} event(s) parked, see their last_error")
    context.log.info(result.summary())
    return dg.Output(result.sent, metadata={"relay": result.summary()})


@dg.job(
    name=RELAY_JOB,
    description="Publish quote events still waiting in the outbox (Redis was down or unset).",
)
def relay_outbox() -> None:
    relay_pending_events()


@dg.sensor(
    name="event_outbox_relay",
    job_name=RELAY_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publish quote events still waiting in the outbox (Redis was down or unset):"
    " a relay_outbox run when some wait and Redis is set.",
)
def event_outbox_relay(
    context: dg.SensorEvaluationContext, database: TradingDatabase, redis: RedisResource
) -> dg.RunRequest | dg.SkipReason:
    client = redis.client()
    if client is None:
        return dg.SkipReason("REDIS_URL is not set: events wait in the outbox")
    waiting = pending_count(database.engine())
    if not waiting:
        return dg.SkipReason("no event waits in the outbox")
    try:
        client.ping()
    except redis_errors.RedisError as exc:  # the run would only fail the same way
        return dg.SkipReason(
            f"{waiting} event(s) wait; Redis does not answer: {type(exc).__name__}"
        )
    start = may_start(UPKEEP, in_flight(context.instance, RELAY_JOB))
    if not start.allowed:
        return dg.SkipReason(f"{waiting} event(s) wait; a relay run is {start.why}")
    return dg.RunRequest(tags=run_tags(UPKEEP))


def drain_tick(
    context: dg.SensorEvaluationContext,
    registry: Registry,
    polygon: PolygonResource,
    database: TradingDatabase,
) -> dg.RunRequest | dg.SkipReason:
    """The next batch to refresh, from a read-only view of the queue as the run will find it
    (claims of ended runs settled) and of the budget's free slots. The run claims the batch when
    it starts: those still waiting then, so fewer if another process took some."""
    now = clock.utcnow()
    items = RefreshQueue(database.engine(), registry.queue).items()
    items, settled = settled_view(
        items, settlements(context.instance, items, now), registry.queue.max_retries, now
    )
    note = settled.note()
    start = may_start(QUEUE, in_flight(context.instance, QUEUE_JOB))
    if not start.allowed:
        return dg.SkipReason(f"a queue batch is {start.why}{note}")
    waiting = sum(1 for item in items if item.status == QUEUED)
    learnt = polygon.learnt()
    caller = polygon.secondary_caller(registry, database, learnt)
    # on day bars, one grouped call serves a whole market: claim as a batch does, not per ticker
    mode = SnapshotMode.BATCH if GROUPED_MARKETS.keys() <= learnt.bars else learnt.mode
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
    trading = {s.symbol for s in registry.trading(registry, now)}
    eligible = [item for item in items if item.symbol in trading]
    chosen = next_batch(eligible, calls, per_call, registry.step_of)
    if not chosen:
        return dg.SkipReason(f"{waiting} waiting, none whose market is open{note}")
    batch_id = f"q-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return dg.RunRequest(
        run_key=batch_id,
        asset_selection=[quote_asset_key(item.symbol) for item in chosen],
        tags=run_tags(QUEUE, batch_id, **{CLAIM_TAG: str(len(chosen))}),
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
            " budget allows after keeping the next critical refresh's calls free (the"
            " refresh_queue run claims them as it starts); with the queue empty, spend what is"
            " free on the stalest secondary symbols first."
        ),
    )
    def refresh_queue_drain(
        context: dg.SensorEvaluationContext, polygon: PolygonResource, database: TradingDatabase
    ) -> dg.RunRequest | dg.SkipReason:
        return drain_tick(context, registry, polygon, database)

    return refresh_queue_drain


def sensor_definitions(registry: Registry) -> dg.Definitions:
    """This area's definitions: the queue's drain, and the outbox's relay (its sensor and job)."""
    return dg.Definitions(
        jobs=[relay_outbox], sensors=[build_drain_sensor(registry), event_outbox_relay]
    )


__all__ = [
    "IN_FLIGHT_STATUSES",
    "build_drain_sensor",
    "event_outbox_relay",
    "relay_outbox",
    "sensor_definitions",
]
