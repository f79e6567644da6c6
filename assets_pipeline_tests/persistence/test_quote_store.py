"""The database writer, on both the embedded SQLite and the real PostgreSQL.

What the platform relies on: one transaction per quote, `metadata.last_update` merged into
`trading.symbols` with the other metadata kept, sync status, history and outbox written together,
older quotes never winning, failures recorded without touching the stored price.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from assets_pipeline.persistence import quote_store
from assets_pipeline.persistence.database import migrate_database
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.schema import (
    data_sync_status,
    event_outbox,
    quote_history,
    symbols,
)
from assets_pipeline.rules import clock
from assets_pipeline_tests.conftest import DAY, T0, get_engine, quote


@pytest.fixture
def store(database_url) -> QuoteStore:
    return QuoteStore(get_engine(database_url), namespace="ns:")


def symbol_row(store, symbol):
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(symbols).where(symbols.c.symbol == symbol)).one()
    meta = row.meta if not isinstance(row.meta, str) else json.loads(row.meta)
    return row, meta


def count(store, table):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_registers_configured_symbols_once_with_pending_status(store, registry):
    assert store.register_symbols(registry) == 9
    assert store.register_symbols(registry) == 0
    assert count(store, symbols) == 9
    row, meta = symbol_row(store, "XAUUSD")
    assert (row.name, row.asset_type, row.base_asset, row.quote_asset, row.price_precision) == (
        "Gold / US Dollar",
        "forex",
        "XAU",
        "USD",
        2,
    )
    assert meta["polygon_ticker"] == "C:XAUUSD"
    assert store.sync_status("XAUUSD")["sync_status"] == "pending"


def test_a_quote_lands_in_one_transaction_with_status_history_and_event(store, registry):
    spec = registry.get("EURUSD")
    outcome = store.write_quote(spec, quote(), run_id="run-1")
    assert outcome.written and outcome.event_id

    row, meta = symbol_row(store, "EURUSD")
    assert meta["last_update"] == {
        "bid": 1.08,
        "ask": 1.0802,
        "spread": pytest.approx(0.0002),
        "last_price": pytest.approx(1.0801),
        "daily_open": 1.07,
        "daily_high": 1.09,
        "daily_low": 1.06,
        "daily_close": 1.0801,
        "timestamp": "2026-11-24T10:00:00.000000Z",
        "data_time": "2026-11-24T10:00:00.000000Z",
        "fetched_at": "2026-11-24T10:00:02.000000Z",
        "source": "polygon:test",
        "provider": "polygon",
        "plan": "paid",
        "timeframe": "REAL-TIME",
    }
    assert row.updated_at is not None
    status = store.sync_status("EURUSD")
    assert status["sync_status"] == "success" and status["error_message"] is None
    assert status["last_sync_timestamp"] is not None

    with store.engine.connect() as conn:
        history = conn.execute(sa.select(quote_history)).one()
        event = conn.execute(sa.select(event_outbox)).one()
    assert (history.symbol, history.partition_date, history.bid, history.run_id) == (
        "EURUSD",
        DAY,
        1.08,
        "run-1",
    )
    assert event.channel == "ns:asset:update:EURUSD" and event.sent_at is None
    assert json.loads(event.payload) == {
        "type": "price_update",
        "symbol": "EURUSD",
        "data": {
            "bid": 1.08,
            "ask": 1.0802,
            "spread": pytest.approx(0.0002),
            "last_price": pytest.approx(1.0801),
            "timestamp": "2026-11-24T10:00:00.000000Z",
            "data_time": "2026-11-24T10:00:00.000000Z",
            "fetched_at": "2026-11-24T10:00:02.000000Z",
            "source": "polygon:test",
            "provider": "polygon",
            "plan": "paid",
            "timeframe": "REAL-TIME",
        },
        "event_id": outcome.event_id,
    }


def test_other_metadata_keys_are_kept(store, registry):
    spec = registry.get("EURUSD")
    store.register_symbols([spec])
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(symbols)
            .where(symbols.c.symbol == "EURUSD")
            .values(meta={"trading_hours": "24x5", "margin": 0.02})
        )
    store.write_quote(spec, quote())
    _, meta = symbol_row(store, "EURUSD")
    assert meta["trading_hours"] == "24x5" and meta["margin"] == 0.02
    assert meta["last_update"]["bid"] == 1.08


def test_an_older_quote_never_overwrites_a_newer_one(store, registry):
    spec = registry.get("EURUSD")
    store.write_quote(spec, quote(at=T0, bid=1.1, ask=1.1002))
    older = store.write_quote(spec, quote(at=T0 - dt.timedelta(minutes=1), bid=1.0, ask=1.0002))
    assert not older.written and "newer" in older.reason
    _, meta = symbol_row(store, "EURUSD")
    assert meta["last_update"]["bid"] == 1.1
    assert count(store, quote_history) == 1 and count(store, event_outbox) == 1
    newer = store.write_quote(spec, quote(at=T0 + dt.timedelta(seconds=1), bid=1.3, ask=1.3002))
    assert newer.written
    assert symbol_row(store, "EURUSD")[1]["last_update"]["bid"] == 1.3


def test_the_same_price_again_records_the_sync_but_is_no_news(store, registry, frozen_clock):
    # an end-of-day plan fetches yesterday's close again: same data time, same price
    spec = registry.get("EURUSD")
    first = store.write_quote(spec, quote(at=T0))
    synced = store.sync_status("EURUSD")["last_sync_timestamp"]
    frozen_clock.advance(300)
    again = quote(at=T0, fetched_at=T0 + dt.timedelta(minutes=5))
    outcome = store.write_quote(spec, again)

    assert first.written and not outcome.written and outcome.reason.startswith("unchanged")
    assert outcome.event_id is None
    # the sync is recorded: when we last looked, in the status and beside the stored price
    assert store.sync_status("EURUSD")["last_sync_timestamp"] > synced
    _, meta = symbol_row(store, "EURUSD")
    assert meta["last_update"]["fetched_at"] == "2026-11-24T10:05:00.000000Z"
    assert meta["last_update"]["data_time"] == "2026-11-24T10:00:00.000000Z"
    # but nothing new is written or announced
    assert count(store, quote_history) == 1 and count(store, event_outbox) == 1


def test_the_same_data_time_with_another_price_is_a_correction_stored_and_announced(
    store, registry
):
    # the vendor corrects a day bar: same close time, another price
    spec = registry.get("EURUSD")
    store.write_quote(spec, quote(at=T0, bid=1.1, ask=1.1002))
    corrected = store.write_quote(spec, quote(at=T0, bid=1.2, ask=1.2002))
    assert corrected.written and corrected.event_id
    _, meta = symbol_row(store, "EURUSD")
    assert meta["last_update"]["bid"] == 1.2
    # one history row for that data time, now holding the corrected price; both announced
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(quote_history.c.bid)).scalars().all() == [1.2]
    assert count(store, event_outbox) == 2


def test_crypto_quote_stores_null_bid_and_ask_not_zero(store, registry):
    spec = registry.get("BTCUSD")
    store.write_quote(spec, quote("BTCUSD", "X:BTCUSD", bid=None, ask=None, last_price=60000.0))
    _, meta = symbol_row(store, "BTCUSD")
    assert meta["last_update"]["bid"] is None and meta["last_update"]["ask"] is None
    assert meta["last_update"]["spread"] is None and meta["last_update"]["last_price"] == 60000.0


def test_a_failure_records_its_error_and_keeps_the_stored_quote(store, registry):
    spec = registry.get("EURUSD")
    store.write_quote(spec, quote())
    store.record_failure(spec, "Polygon answered 403 NOT_AUTHORIZED: not entitled")
    status = store.sync_status("EURUSD")
    assert status["sync_status"] == "failed"
    assert "NOT_AUTHORIZED" in status["error_message"]
    assert status["last_sync_timestamp"] is not None  # the last success is still known
    assert symbol_row(store, "EURUSD")[1]["last_update"]["bid"] == 1.08
    store.write_quote(spec, quote(at=T0 + dt.timedelta(minutes=1)))
    assert store.sync_status("EURUSD")["sync_status"] == "success"
    assert store.sync_status("EURUSD")["error_message"] is None


def test_a_failure_with_a_nul_a_lone_surrogate_or_a_huge_text_is_recorded_safely(store, registry):
    spec = registry.get("EURUSD")
    store.record_failure(spec, "Polygon said \x00 and \ud800 and \x1b[31m" + "x" * 100_000)
    status = store.sync_status("EURUSD")
    assert status["sync_status"] == "failed"
    assert status["error_message"].startswith("Polygon said ? and ? and ?[31mxxx")
    assert len(status["error_message"]) == quote_store.MAX_ERROR_LENGTH


def test_a_failed_write_leaves_the_old_row_intact(store, registry, monkeypatch):
    spec = registry.get("EURUSD")
    store.write_quote(spec, quote())

    # Fail at the last step of the transaction, after the row, status and history were written.
    def broken_event(*_args):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(quote_store, "price_update_event", broken_event)
    newer = quote(at=T0 + dt.timedelta(minutes=1), bid=1.5, ask=1.5002)
    with pytest.raises(RuntimeError, match="outbox unavailable"):
        store.write_quote(spec, newer)
    _, meta = symbol_row(store, "EURUSD")
    assert meta["last_update"]["bid"] == 1.08
    assert count(store, quote_history) == 1 and count(store, event_outbox) == 1


def test_load_reads_the_latest_quote_back(store, registry):
    spec = registry.get("EURUSD")
    assert store.latest_quote("EURUSD") is None
    store.write_quote(spec, quote())
    latest = store.latest_quote("EURUSD")
    assert (latest.symbol, latest.bid, latest.ask, latest.data_time) == (
        "EURUSD",
        1.08,
        1.0802,
        T0,
    )


PLATFORM_DDL = """
CREATE SCHEMA trading;
CREATE TABLE trading.symbols (
    id serial PRIMARY KEY,
    symbol varchar(20) NOT NULL UNIQUE,
    name varchar(200), asset_type varchar(20), base_asset varchar(20), quote_asset varchar(20),
    price_precision int, metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
    exchange varchar(20) NOT NULL DEFAULT 'OTC', is_tradable boolean DEFAULT true
);
INSERT INTO trading.symbols (symbol, name, metadata, exchange)
VALUES ('EURUSD', 'Euro', '{"desk": "fx"}', 'EBS');
"""


def test_works_on_the_platforms_own_tables_with_extra_columns(empty_pg_url, registry):
    raw = sa.create_engine(empty_pg_url, poolclass=sa.NullPool)
    with raw.begin() as conn:
        conn.exec_driver_sql(PLATFORM_DDL)
    migrate_database(empty_pg_url)  # the owner adopts the platform's table, creates the rest
    store = QuoteStore(get_engine(empty_pg_url))
    store.register_symbols(registry)
    store.write_quote(registry.get("EURUSD"), quote())
    with raw.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT symbol, exchange, is_tradable, metadata FROM trading.symbols ORDER BY id"
        ).all()
        columns = conn.exec_driver_sql(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = 'trading' AND table_name = 'symbols'"
        ).scalar_one()
    raw.dispose()
    assert columns == 12  # nothing added, nothing dropped
    assert rows[0].symbol == "EURUSD" and rows[0].exchange == "EBS"
    assert rows[0].metadata["desk"] == "fx" and rows[0].metadata["last_update"]["bid"] == 1.08
    assert len(rows) == 9 and all(r.exchange for r in rows)


# --- marking stale -------------------------------------------------------------------------------


def test_mark_stale_marks_a_symbol_whose_sync_is_still_the_one_the_check_saw(store, registry):
    eur, aud = registry.get("EURUSD"), registry.get("AUDUSD")
    store.register_symbols([eur, aud])
    with clock.frozen_at(T0) as move:
        store.write_quote(eur, quote())
        move(T0 + dt.timedelta(minutes=20))
        seen = {
            eur: store.sync_status("EURUSD")["last_sync_timestamp"],
            aud: store.sync_status("AUDUSD")["last_sync_timestamp"],  # never synced: None
        }
        assert seen[aud] is None
        assert store.mark_stale(seen) == 2
    assert store.sync_status("EURUSD")["sync_status"] == "stale"
    assert store.sync_status("EURUSD")["last_sync_timestamp"] == T0
    assert store.sync_status("AUDUSD")["sync_status"] == "stale"


def test_a_quote_written_after_the_check_read_its_status_is_not_marked_stale(
    database_url, registry
):
    eur, aud = registry.get("EURUSD"), registry.get("AUDUSD")
    checker = QuoteStore(get_engine(database_url))  # the freshness check's
    writer = QuoteStore(get_engine(database_url))  # a refresh run's
    checker.register_symbols([eur, aud])
    later = T0 + dt.timedelta(minutes=20)
    with clock.frozen_at(T0) as move:
        checker.write_quote(eur, quote())
        move(later)
        # the check reads each status and finds both stale ...
        seen = {
            eur: checker.sync_status("EURUSD")["last_sync_timestamp"],
            aud: checker.sync_status("AUDUSD")["last_sync_timestamp"],
        }
        # ... then a refresh run commits fresh quotes for both ...
        writer.write_quote(eur, quote(at=later))
        writer.write_quote(aud, quote("AUDUSD", "C:AUDUSD", at=later, bid=0.65, ask=0.6502))
        # ... before the check marks what it saw
        assert checker.mark_stale(seen) == 0
    for symbol in ("EURUSD", "AUDUSD"):
        status = checker.sync_status(symbol)
        assert (status["sync_status"], status["last_sync_timestamp"]) == ("success", later)


def many_symbols(count):
    from assets_pipeline.config.registry import AssetType, SymbolSpec, Tier

    return [
        SymbolSpec(
            symbol=f"S{i:05d}",
            polygon_ticker="C:EURUSD",
            asset_type=AssetType.FOREX,
            tier=Tier.LOW,
            name=f"Symbol {i}",
            base_asset="EUR",
            quote_asset="USD",
            price_precision=5,
        )
        for i in range(count)
    ]


def test_a_run_over_thousands_of_symbols_starts_and_reads_in_a_few_statements(store):
    """Starting a refresh of 2,500 registered symbols, and reading their stored quotes and
    statuses, takes a few statements per thousand symbols: none per symbol, so a run over 5,000
    symbols does not pay a round trip per symbol before its first call."""
    specs = many_symbols(2500)
    store.register_symbols(specs)
    statements = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    before = store.start_refresh(specs)
    store.latest_quotes(s.symbol for s in specs)
    store.sync_statuses(s.symbol for s in specs)
    assert before == {s.symbol: "pending" for s in specs}
    assert store.sync_status("S02499")["sync_status"] == "in_progress"
    assert len(statements) < 30, len(statements)


def test_a_symbol_row_deleted_after_a_write_is_registered_again_on_the_next(store, registry):
    """The writer remembers each symbol's id for the process; a row the platform deleted
    meanwhile is found missing and made again, and the quote lands."""
    spec = registry.get("EURUSD")
    store.write_quote(spec, quote())
    with store.engine.begin() as conn:
        symbol_id = conn.execute(sa.select(symbols.c.id).where(symbols.c.symbol == "EURUSD"))
        symbol_id = symbol_id.scalar_one()
        for table in (quote_history, data_sync_status):
            column = table.c.symbol_id if table is quote_history else table.c.ticker_id
            conn.execute(sa.delete(table).where(column == symbol_id))
        conn.execute(sa.delete(symbols).where(symbols.c.id == symbol_id))
    later = T0 + dt.timedelta(minutes=1)
    outcome = store.write_quote(spec, quote(at=later))
    assert outcome.written
    assert store.latest_quote("EURUSD").data_time == later


def test_a_batch_log_line_names_fifty_symbols_and_counts_the_rest():
    """A run over 5,000 symbols logs one readable line, not 5,000 names (the batch row and the
    run's metadata keep them all)."""
    from assets_pipeline.persistence.batches import BatchResult

    updated = [f"S{i:05d}" for i in range(5000)]
    line = BatchResult("b", "manual", None, T0, T0, updated=updated).log_line()
    assert "S00049 and 4950 more" in line and "S00050" not in line
