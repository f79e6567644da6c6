"""Pruning the tables that grow with every refresh, by age, keeping what is still needed.

- `data_sources.event_outbox`: an event delivered (`sent_at`) before the cutoff. Every
  undelivered event stays, parked ones too: the relay still owes it, or someone must look at it.
- `data_sources.refresh_batches`: a batch that ended before the cutoff, except the newest of
  each kind (`status` reports the last batch and the last critical one).
- `trading.quote_history`: a quote whose time is before the cutoff, except each symbol's newest
  (`trading.symbols` itself is never pruned).

Not pruned: `trading.price_bars` (history a user backfilled on purpose; Dagster shows those days
as materialized, so deleting the rows would leave the UI claiming data that is gone),
`data_sources.api_refusals` and `api_budget_state` (a row per feature or budget, not growing),
`api_budget_calls` (the budget deletes calls older than its window itself), the queue and the
sync status (a row per symbol).

Everything happens in one transaction, so a prune stopped half-way deletes nothing, and a dry
run counts exactly what a prune at the same moment would delete.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from assets_pipeline.persistence.schema import event_outbox, quote_history, refresh_batches


@dataclass(frozen=True)
class PruneReport:
    """Rows deleted per table (or, on a dry run, the rows a prune would delete)."""

    cutoff: dt.datetime
    dry_run: bool
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        counts = ", ".join(f"{table} {n}" for table, n in self.rows.items())
        return f"{verb} {self.total} row(s) older than {self.cutoff.isoformat()}: {counts}"


def _name(table: sa.Table) -> str:
    return f"{table.schema}.{table.name}"


def _delivered_events(cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(event_outbox.c.sent_at.is_not(None), event_outbox.c.sent_at < cutoff)


def _old_batches(cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    newer = refresh_batches.alias("newer")
    has_newer = sa.exists().where(
        newer.c.kind == refresh_batches.c.kind, newer.c.ended_at > refresh_batches.c.ended_at
    )
    return sa.and_(refresh_batches.c.ended_at < cutoff, has_newer)


def _old_quotes(cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    newer = quote_history.alias("newer")
    has_newer = sa.exists().where(
        newer.c.symbol_id == quote_history.c.symbol_id,
        newer.c.quote_time > quote_history.c.quote_time,
    )
    return sa.and_(quote_history.c.quote_time < cutoff, has_newer)


#: Each pruned table with what makes its row prunable at a cutoff.
RULES = (
    (event_outbox, _delivered_events),
    (refresh_batches, _old_batches),
    (quote_history, _old_quotes),
)


def prune(engine: sa.Engine, cutoff: dt.datetime, dry_run: bool = False) -> PruneReport:
    """Delete (or, with `dry_run`, count) the rows older than `cutoff` that no rule keeps."""
    if cutoff.tzinfo is None:
        raise ValueError("the cutoff needs a time zone")
    rows: dict[str, int] = {}
    with engine.begin() as conn:
        for table, prunable in RULES:
            where = prunable(cutoff)
            if dry_run:
                count = sa.select(sa.func.count()).select_from(table).where(where)
                rows[_name(table)] = conn.execute(count).scalar_one()
            else:
                rows[_name(table)] = conn.execute(sa.delete(table).where(where)).rowcount
    return PruneReport(cutoff, dry_run, rows)
