"""Sensors. They never call Polygon: only the database and Redis."""

import dagster as dg

from assets_pipeline.events import relay_pending
from assets_pipeline.resources import RedisResource, TradingDatabase


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
    return dg.SkipReason(
        f"published {result.sent} event(s); {result.pending} pending"
        + (f"; Redis error: {result.error}" if result.error else "")
    )
