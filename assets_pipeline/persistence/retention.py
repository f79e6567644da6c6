"""Pruning the tables that grow with every refresh, by age, keeping what is still needed: every
undelivered event, the newest batch of each kind, each symbol's newest quote.

`prune` deletes (or, on a dry run, counts) in one transaction: stopped half-way it deletes nothing,
and a dry run counts what a prune at that moment would delete. Which tables, what each keeps and
what is never pruned: docs/operations.md, "Pruning"."""

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
