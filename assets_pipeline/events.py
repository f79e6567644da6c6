"""Announcing stored quotes on Redis through the transactional outbox.

The event row is written in the quote's own transaction, so a quote is never stored without its
event, and published only after the commit, so no event announces a quote that was rolled back.
Publishing then happens at least once: straight after the write, and again by the relay (the
`assets-pipeline relay` command and the `event_outbox_relay` sensor) for whatever is still pending
because Redis was down or unset. The relay locks the pending rows it publishes, oldest first, so
two relays never send the same event twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from assets_pipeline import clock
from assets_pipeline.schema import event_outbox


@dataclass(frozen=True)
class RelayResult:
    sent: int
    pending: int
    error: str | None = None


def pending_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(event_outbox.c.sent_at.is_(None))
        ).scalar_one()


def relay_pending(
    engine: sa.Engine, redis_client: Any | None, batch_size: int = 500
) -> RelayResult:
    """Publish pending events oldest first and mark each sent; stop at the first Redis error.

    Without a Redis client nothing is sent: the events wait in the outbox.
    """
    if redis_client is None:
        return RelayResult(sent=0, pending=pending_count(engine), error="REDIS_URL is not set")
    sent = 0
    error: str | None = None
    while error is None:
        with engine.begin() as conn:
            query = (
                sa.select(event_outbox.c.id, event_outbox.c.channel, event_outbox.c.payload)
                .where(event_outbox.c.sent_at.is_(None))
                .order_by(event_outbox.c.id)
                .limit(batch_size)
            )
            if conn.dialect.name == "postgresql":
                # Plain FOR UPDATE, not SKIP LOCKED: a second relay waits, then sees the rows
                # sent, so events leave in order and once.
                query = query.with_for_update()
            rows = conn.execute(query).all()
            if not rows:
                break
            for row in rows:
                try:
                    redis_client.publish(row.channel, row.payload)
                except Exception as exc:  # noqa: BLE001 - any Redis failure keeps the event
                    error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
                    conn.execute(
                        sa.update(event_outbox)
                        .where(event_outbox.c.id == row.id)
                        .values(attempts=event_outbox.c.attempts + 1, last_error=error)
                    )
                    break
                conn.execute(
                    sa.update(event_outbox)
                    .where(event_outbox.c.id == row.id)
                    .values(sent_at=clock.utcnow(), attempts=event_outbox.c.attempts + 1)
                )
                sent += 1
            if len(rows) < batch_size:
                break
    return RelayResult(sent=sent, pending=pending_count(engine), error=error)
