"""The result of one refresh run ("batch"): reported as metadata, a log line and a table row.

The row in `data_sources.refresh_batches` is what `assets-pipeline status` reads for the last
batch and the totals, without asking Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from assets_pipeline.persistence.quote_store import as_utc
from assets_pipeline.persistence.schema import refresh_batches
from assets_pipeline.rules.quotes import iso_utc

#: The one run tag a batch adds: how it ended, at a glance in the Runs list.
RESULT_TAG = "assets_pipeline/result"


@dataclass
class BatchResult:
    batch_id: str
    kind: str
    run_id: str | None
    started_at: dt.datetime
    ended_at: dt.datetime
    updated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: Not fetched for want of a budget slot: back in the queue, not counted as failures.
    deferred: list[str] = field(default_factory=list)
    queue_processed: int = 0
    queue_remaining: int = 0
    api_calls: int = 0
    budget_waits: int = 0

    @property
    def duration_ms(self) -> int:
        return int((self.ended_at - self.started_at).total_seconds() * 1000)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "kind": self.kind,
            "run_id": self.run_id,
            "start": iso_utc(self.started_at),
            "end": iso_utc(self.ended_at),
            "duration_ms": self.duration_ms,
            "symbols_updated": self.updated,
            "symbols_failed": self.failed,
            "symbols_deferred": self.deferred,
            "queue_processed": self.queue_processed,
            "queue_remaining": self.queue_remaining,
            "api_calls": self.api_calls,
            "budget_waits": self.budget_waits,
        }

    def log_line(self) -> str:
        failed = (
            "; ".join(f"{s}: {e}" for s, e in sorted(self.failed.items()))
            if self.failed
            else "none"
        )
        return (
            f"batch {self.batch_id} ({self.kind}) {iso_utc(self.started_at)} ->"
            f" {iso_utc(self.ended_at)} in {self.duration_ms} ms: updated"
            f" {len(self.updated)} [{_names(self.updated)}], failed {len(self.failed)}"
            f" [{failed}], deferred {len(self.deferred)}, queue processed"
            f" {self.queue_processed} remaining {self.queue_remaining},"
            f" API calls {self.api_calls}, budget waits {self.budget_waits}"
        )

    def tags(self) -> dict[str, str]:
        """One run tag, short enough for a row of the Runs list: how the batch ended. The rest
        (duration, waits, the queue) is in the log line and the materializations' metadata."""
        calls = f"{self.api_calls} call{'' if self.api_calls == 1 else 's'}"
        return {RESULT_TAG: f"{len(self.updated)} updated, {len(self.failed)} failed, {calls}"}


def record_batch(engine: sa.Engine, result: BatchResult) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(refresh_batches).values(
                batch_id=result.batch_id,
                kind=result.kind,
                run_id=result.run_id,
                started_at=result.started_at,
                ended_at=result.ended_at,
                duration_ms=result.duration_ms,
                updated=json.dumps(result.updated),
                failed=json.dumps(result.failed),
                queue_processed=result.queue_processed,
                queue_remaining=result.queue_remaining,
                api_calls=result.api_calls,
                budget_waits=result.budget_waits,
            )
        )


def _from_row(row: sa.Row) -> BatchResult:
    return BatchResult(
        batch_id=row.batch_id,
        kind=row.kind,
        run_id=row.run_id,
        started_at=as_utc(row.started_at),  # type: ignore[arg-type]
        ended_at=as_utc(row.ended_at),  # type: ignore[arg-type]
        updated=json.loads(row.updated),
        failed=json.loads(row.failed),
        queue_processed=row.queue_processed,
        queue_remaining=row.queue_remaining,
        api_calls=row.api_calls,
        budget_waits=row.budget_waits,
    )


def recent_batches(engine: sa.Engine, limit: int = 1, kind: str | None = None) -> list[BatchResult]:
    query = sa.select(refresh_batches).order_by(refresh_batches.c.ended_at.desc()).limit(limit)
    if kind:
        query = query.where(refresh_batches.c.kind == kind)
    with engine.connect() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def batches_of_run(engine: sa.Engine, run_id: str) -> list[BatchResult]:
    """The batches a run recorded (one per step), in the order they ended."""
    query = (
        sa.select(refresh_batches)
        .where(refresh_batches.c.run_id == run_id)
        .order_by(refresh_batches.c.ended_at)
    )
    with engine.connect() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def batch_totals(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                refresh_batches.c.updated,
                refresh_batches.c.failed,
                refresh_batches.c.api_calls,
                refresh_batches.c.budget_waits,
            )
        ).all()
    return {
        "batches": len(rows),
        "symbols_updated": sum(len(json.loads(r.updated)) for r in rows),
        "symbols_failed": sum(len(json.loads(r.failed)) for r in rows),
        "api_calls": sum(r.api_calls for r in rows),
        "budget_waits": sum(r.budget_waits for r in rows),
    }


#: How many symbols a batch's log line names; the rest are counted (the batch row has them all).
LOGGED_NAMES = 50


def _names(symbols: list[str]) -> str:
    shown = ", ".join(symbols[:LOGGED_NAMES])
    more = len(symbols) - LOGGED_NAMES
    return f"{shown} and {more} more" if more > 0 else shown
