"""Pruning by age, on SQLite and PostgreSQL: old delivered events, batches and quote history go;
an undelivered event, each symbol's newest quote and each kind's newest batch stay whatever
their age; a dry run counts exactly what the prune then deletes."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from assets_pipeline.persistence.batches import BatchResult, recent_batches, record_batch
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.retention import prune
from assets_pipeline.persistence.schema import event_outbox, price_bars, quote_history
from assets_pipeline.rules import clock
from assets_pipeline_tests.conftest import get_engine, quote

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
CUTOFF = NOW - dt.timedelta(days=30)


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


@pytest.fixture
def engine(database_url, registry):
    """Quote history of EURUSD 40, 35 and 1 days ago, and of GBPUSD 45 days ago only; every
    event delivered when written except EURUSD's 35-day-old one (Redis was down, still owed);
    critical batches that ended 40 and 31 days ago, and a queue batch 50 days ago."""
    engine = get_engine(database_url)
    store = QuoteStore(engine)
    for symbol, age, delivered in [
        ("EURUSD", 40, True),
        ("EURUSD", 35, False),
        ("EURUSD", 1, True),
        ("GBPUSD", 45, True),
    ]:
        spec = registry.get(symbol)
        with clock.frozen_at(days_ago(age)):
            written = store.write_quote(spec, quote(symbol, spec.polygon_ticker, at=days_ago(age)))
        if delivered:
            with engine.begin() as conn:
                conn.execute(
                    sa.update(event_outbox)
                    .where(event_outbox.c.event_id == written.event_id)
                    .values(sent_at=days_ago(age))
                )
    for batch_id, kind, age in [
        ("c-40", "critical", 40),
        ("c-31", "critical", 31),
        ("q-50", "queue", 50),
    ]:
        record_batch(engine, BatchResult(batch_id, kind, None, days_ago(age), days_ago(age)))
    return engine


def history(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.select(quote_history.c.symbol, quote_history.c.quote_time))
        return sorted((symbol, round((NOW - clock_aware(t)).days)) for symbol, t in rows)


def clock_aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def events(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.select(event_outbox.c.symbol, event_outbox.c.sent_at))
        return sorted((symbol, sent is not None) for symbol, sent in rows)


def test_prune_deletes_old_rows_and_keeps_undelivered_events_and_the_newest_of_each(engine):
    report = prune(engine, CUTOFF)

    assert report.rows == {
        "data_sources.event_outbox": 2,  # EURUSD 40 days, GBPUSD 45 days: delivered
        "data_sources.refresh_batches": 1,  # the older critical batch
        "trading.quote_history": 2,  # EURUSD 40 and 35 days
    }
    # GBPUSD's only quote is 45 days old: still its newest, so it stays
    assert history(engine) == [("EURUSD", 1), ("GBPUSD", 45)]
    # the event Redis never got is kept however old: the relay still owes it
    assert events(engine) == [("EURUSD", False), ("EURUSD", True)]
    # status still has a last critical batch and a last queue batch to report
    assert [b.batch_id for b in recent_batches(engine, 5)] == ["c-31", "q-50"]


def test_a_dry_run_counts_what_the_prune_then_deletes_and_deletes_nothing(engine):
    before = (history(engine), events(engine), len(recent_batches(engine, 10)))

    counted = prune(engine, CUTOFF, dry_run=True)

    assert (history(engine), events(engine), len(recent_batches(engine, 10))) == before
    assert counted.dry_run and counted.summary().startswith("would delete 5 row(s)")
    assert prune(engine, CUTOFF).rows == counted.rows
    assert prune(engine, CUTOFF).total == 0  # nothing left to prune at that age


def test_backfilled_price_bars_are_never_pruned(engine):
    with engine.begin() as conn:
        conn.execute(
            sa.insert(price_bars).values(
                symbol="EURUSD",
                bar_start=days_ago(400),
                bar_seconds=300,
                open=1.0,
                high=1.1,
                low=0.9,
                close=1.05,
                source="polygon:test",
                fetched_at=days_ago(400),
            )
        )
    prune(engine, NOW)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(price_bars)).scalar_one() == 1


def test_a_cutoff_without_a_time_zone_is_refused(engine):
    with pytest.raises(ValueError, match="the cutoff needs a time zone"):
        prune(engine, CUTOFF.replace(tzinfo=None))
