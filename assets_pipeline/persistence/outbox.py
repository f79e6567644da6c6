"""The transactional outbox: each stored quote's event is written in the quote's transaction and
published to Redis after the commit (Pub/Sub and a bounded stream, in one Lua step), at least
once, oldest first, never twice to consumers; a Redis outage stops the relay, a bad row is parked
after `MAX_FAILURES` failures of its own. Why, and the details: docs/design/outbox.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy as sa

from assets_pipeline.events import SCHEMA_VERSION
from assets_pipeline.persistence.schema import event_outbox
from assets_pipeline.rules import clock
from assets_pipeline.rules.excerpts import clip

#: A row whose publishing failed this many times in a row (Redis up) is parked.
MAX_FAILURES = 5
_PARKED = "parked after "
#: A Redis outage, not the row's fault: stop and keep the event for the next relay.
_OUTAGE = (redis.ConnectionError, redis.TimeoutError, OSError)
#: How many events the stream keeps (approximately: trimming is by whole nodes).
STREAM_MAX_EVENTS = 100_000
#: After a Redis outage, how long a writer skips publishing straight after its write (the relay
#: delivers the events later), so an outage costs one timeout per run, not one per quote.
BREAKER_SECONDS = 30.0

# KEYS: last event per symbol (hash), sequence per symbol (hash), the stream.
# ARGV: channel, symbol, event id, payload (a JSON object), stream max length.
_ANNOUNCE_LUA = """
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then return 0 end
local seq = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local body = string.sub(ARGV[4], 1, -2) .. ', "sequence": ' .. seq .. '}'
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
           'symbol', ARGV[2], 'sequence', seq, 'event', body)
redis.call('PUBLISH', ARGV[1], body)
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return seq
"""


@dataclass(frozen=True)
class RelayResult:
    """`error`: the Redis outage that stopped the relay. `failed`: rows that failed on their own
    this time (left behind, retried later). `parked`: rows no relay tries any more."""

    sent: int
    pending: int
    error: str | None = None
    failed: int = 0
    parked: int = 0

    def summary(self) -> str:
        """One line for a tick's reason or the command's output (the outage is not in it)."""
        text = f"published {self.sent} event(s); {self.pending} pending"
        if self.failed:
            text += f"; {self.failed} failed on their own (retried by the next relay)"
        if self.parked:
            text += (
                f"; {self.parked} parked after {MAX_FAILURES} failures, skipped"
                " (see event_outbox.last_error)"
            )
        return text


def _parked() -> sa.ColumnElement[bool]:
    return sa.and_(event_outbox.c.sent_at.is_(None), event_outbox.c.parked_at.is_not(None))


def _waiting() -> sa.ColumnElement[bool]:
    return sa.and_(event_outbox.c.sent_at.is_(None), event_outbox.c.parked_at.is_(None))


def pending_count(engine: sa.Engine) -> int:
    """Events still to be published (parked ones are not: no relay tries them)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(_waiting())).scalar_one()


def parked_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(_parked())).scalar_one()


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {clip(str(exc), 200)}"


def _failure(failures: int, exc: BaseException) -> dict[str, Any]:
    """The row's columns after one more failure of its own (`failures` is the count before):
    parked at `MAX_FAILURES`; `last_error` says what happened, for people only."""
    failures += 1
    if failures >= MAX_FAILURES:
        text = f"{_PARKED}{failures} failures: {_describe(exc)}"
        return {"failures": failures, "parked_at": clock.utcnow(), "last_error": text}
    return {
        "failures": failures,
        "last_error": f"failed {failures} of {MAX_FAILURES}: {_describe(exc)}",
    }


def _event(row: sa.Row) -> dict[str, Any]:
    """The row's event, or an error if it is not a publishable one."""
    event = json.loads(row.payload)
    if not isinstance(event, dict):
        raise ValueError("the payload is not a JSON object")
    if not row.channel or ":asset:update:" not in f":{row.channel}":
        raise ValueError(f"the event's channel {row.channel!r} is not asset:update:{{SYMBOL}}")
    return event


def announce(redis_client: Any, channel: str, event: dict[str, Any]) -> int:
    """Publish one event on its channel and append it to the stream, atomically; return its
    sequence number for its symbol (0: it was already announced)."""
    namespace, symbol = channel.rsplit("asset:update:", 1)
    # one hash tag ({updates}) for the script's keys, so it runs on Redis Cluster too
    stream = f"{namespace}asset:{{updates}}"
    keys = [f"{stream}:last_event", f"{stream}:sequence", stream]
    body = json.dumps({**event, "schema_version": SCHEMA_VERSION})
    script = redis_client.register_script(_ANNOUNCE_LUA)
    args = [channel, symbol, str(event.get("event_id", "")), body, STREAM_MAX_EVENTS]
    return int(script(keys=keys, args=args))


class PublishingBreaker:
    """Until when writers leave publishing to the relay, after their Redis was seen down. The
    state of one Redis client (`redis_client.Client` holds one), so of one server for as long
    as the client's owner keeps it: the Redis resource for its run, whose steps share it."""

    def __init__(self) -> None:
        self.open_until = 0.0

    def paused(self) -> bool:
        return clock.utcnow().timestamp() < self.open_until

    def trip(self) -> None:
        self.open_until = clock.utcnow().timestamp() + BREAKER_SECONDS


def _breaker(redis_client: Any) -> PublishingBreaker | None:
    """The client's breaker (a client made by `redis_client.connect` has one; another: none)."""
    breaker = getattr(redis_client, "breaker", None)
    return breaker if isinstance(breaker, PublishingBreaker) else None


def publishing_paused(redis_client: Any | None) -> bool:
    """This client saw its Redis down a moment ago: writers leave the events to the relay."""
    breaker = _breaker(redis_client)
    return breaker is not None and breaker.paused()


def relay_pending(
    engine: sa.Engine, redis_client: Any | None, max_events: int = 500
) -> RelayResult:
    """Publish up to `max_events` pending events oldest first, one transaction each; skip rows
    that fail on their own; stop at a Redis outage.

    Without a Redis client nothing is sent: the events wait in the outbox.
    """
    if redis_client is None:
        return RelayResult(
            sent=0,
            pending=pending_count(engine),
            error="REDIS_URL is not set",
            parked=parked_count(engine),
        )
    sent = failed = 0
    error: str | None = None
    after = 0  # rows that failed on their own in this pass are not tried again until the next
    for _ in range(max_events):
        with engine.begin() as conn:
            row = _oldest_waiting(conn, after)
            if row is None:
                break
            after = row.id
            attempt = _publish_one(conn, row, redis_client)
        if attempt.outage is not None:
            error = attempt.outage
            break
        sent += attempt.sent
        failed += not attempt.sent
    return RelayResult(
        sent=sent,
        pending=pending_count(engine),
        error=error,
        failed=failed,
        parked=parked_count(engine),
    )


def _oldest_waiting(conn: sa.Connection, after: int) -> sa.Row | None:
    """The oldest waiting event after row `after`, locked on PostgreSQL."""
    query = (
        sa.select(
            event_outbox.c.id,
            event_outbox.c.channel,
            event_outbox.c.payload,
            event_outbox.c.failures,
        )
        .where(_waiting(), event_outbox.c.id > after)
        .order_by(event_outbox.c.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        # Plain FOR UPDATE, not SKIP LOCKED: a second relay waits, then sees the row
        # sent, so events leave in order and once.
        query = query.with_for_update()
    return conn.execute(query).one_or_none()


@dataclass(frozen=True)
class _Attempt:
    """One publish: sent, stopped by a Redis `outage`, or else failed on its own."""

    sent: bool = False
    outage: str | None = None


def _publish_one(conn: sa.Connection, row: sa.Row, redis_client: Any) -> _Attempt:
    """Publish one event and record the attempt on its row (a failure of its own counts towards
    parking it; an outage does not)."""
    done = sa.update(event_outbox).where(event_outbox.c.id == row.id)
    try:
        announce(redis_client, row.channel, _event(row))
    except _OUTAGE as exc:
        error = _describe(exc)
        if (breaker := _breaker(redis_client)) is not None:
            breaker.trip()
        conn.execute(done.values(attempts=event_outbox.c.attempts + 1, last_error=error))
        return _Attempt(outage=error)
    except Exception as exc:  # noqa: BLE001 - this row alone: record it and go on
        conn.execute(
            done.values(attempts=event_outbox.c.attempts + 1, **_failure(row.failures, exc))
        )
        return _Attempt()
    conn.execute(done.values(sent_at=clock.utcnow(), attempts=event_outbox.c.attempts + 1))
    return _Attempt(sent=True)
