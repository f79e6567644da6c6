"""The tables this project reads and writes, as SQLAlchemy Core: what the code queries.

Three of them (`trading.symbols`, `data_sources.api_providers`, `data_sources.data_sync_status`)
are the platform's and may have more columns than ours. The migrations in `migrations/` create
the tables, never the writer; a change here needs a new revision there (a test compares the two).
On SQLite (the embedded default) there are no schemas: the tables live flat in one file."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from assets_pipeline.rules.providers import ProviderName

metadata = sa.MetaData()

TRADING = "trading"
DATA_SOURCES = "data_sources"
SYNC_STATUSES = ("pending", "in_progress", "success", "failed", "stale")
#: Alembic's version table, in `data_sources`: the platform's own Alembic keeps `alembic_version`.
VERSION_TABLE = "assets_pipeline_alembic_version"

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def _provider() -> sa.Column:
    """Who served a history row (`rules/providers.py`); rows from before there were several
    providers were all Polygon's (revision 0003 backfills them)."""
    return sa.Column(
        "provider", sa.String(50), nullable=False, server_default=ProviderName.POLYGON.value
    )


symbols = sa.Table(
    "symbols",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(20), nullable=False, unique=True),
    sa.Column("name", sa.String(200)),
    sa.Column("asset_type", sa.String(20)),
    sa.Column("base_asset", sa.String(20)),
    sa.Column("quote_asset", sa.String(20)),
    sa.Column("price_precision", sa.Integer),
    # `metadata` is a reserved attribute name on Core objects, so the Python key differs.
    sa.Column("metadata", _JSON, key="meta", nullable=False, server_default=sa.text("'{}'")),
    sa.Column("created_at", _TS, server_default=sa.func.now()),
    sa.Column("updated_at", _TS, server_default=sa.func.now()),
    schema=TRADING,
)

api_providers = sa.Table(
    "api_providers",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
    sa.Column("base_url", sa.String(200)),
    sa.Column("created_at", _TS, server_default=sa.func.now()),
    schema=DATA_SOURCES,
)

data_sync_status = sa.Table(
    "data_sync_status",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("ticker_id", _ID, sa.ForeignKey(symbols.c.id), nullable=False),
    sa.Column("provider_id", _ID, sa.ForeignKey(api_providers.c.id), nullable=False),
    sa.Column("last_sync_timestamp", _TS),
    sa.Column("sync_status", sa.String(20), nullable=False, server_default="pending"),
    sa.Column("error_message", sa.Text),
    sa.Column("updated_at", _TS, server_default=sa.func.now()),
    sa.UniqueConstraint("ticker_id", "provider_id", name="uq_data_sync_status_ticker_provider"),
    sa.CheckConstraint(
        "sync_status IN ({})".format(", ".join(f"'{s}'" for s in SYNC_STATUSES)),
        name="ck_data_sync_status_sync_status",
    ),
    schema=DATA_SOURCES,
)

#: One row per stored quote, filed under the UTC day of its data time (`partition_date`).
quote_history = sa.Table(
    "quote_history",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("symbol_id", _ID, sa.ForeignKey(symbols.c.id), nullable=False),
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("partition_date", sa.Date, nullable=False),
    sa.Column("quote_time", _TS, nullable=False),
    sa.Column("bid", sa.Float),
    sa.Column("ask", sa.Float),
    sa.Column("spread", sa.Float),
    sa.Column("last_price", sa.Float),
    sa.Column("day_open", sa.Float),
    sa.Column("day_high", sa.Float),
    sa.Column("day_low", sa.Float),
    sa.Column("day_close", sa.Float),
    sa.Column("day_volume", sa.Float),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("fetched_at", _TS, nullable=False),
    _provider(),
    sa.UniqueConstraint("symbol_id", "quote_time", name="uq_quote_history_symbol_time"),
    sa.Index("ix_quote_history_symbol_partition", "symbol", "partition_date"),
    schema=TRADING,
)

#: A symbol's history: the bars of past days, one row per (symbol, bar start, bar size), written
#: idempotently by history partitions; `provider` says who served it, and is not in the key
#: (one series per symbol: revision 0003 says why). Never read by the live path:
#: `trading.symbols` and the events are the live quote's alone.
price_bars = sa.Table(
    "price_bars",
    metadata,
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("bar_start", _TS, primary_key=True),
    sa.Column("bar_seconds", sa.Integer, primary_key=True),
    sa.Column("open", sa.Float, nullable=False),
    sa.Column("high", sa.Float, nullable=False),
    sa.Column("low", sa.Float, nullable=False),
    sa.Column("close", sa.Float, nullable=False),
    sa.Column("volume", sa.Float),
    sa.Column("vwap", sa.Float),
    sa.Column("trades", sa.Integer),
    sa.Column("source", sa.String(50), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("fetched_at", _TS, nullable=False),
    _provider(),
    schema=TRADING,
)

#: Events written in the quote's transaction and published to Redis after the commit.
event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("sent_at", _TS),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    #: Its own publishing failures in a row (a Redis outage is not one); parked at MAX_FAILURES.
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    #: When it was parked: no relay tries it any more.
    sa.Column("parked_at", _TS),
    sa.Index("ix_event_outbox_pending", "sent_at", "id"),
    schema=DATA_SOURCES,
)

#: The Polygon budget's state when there is no Redis: one row per budget, one row per call.
api_budget_state = sa.Table(
    "api_budget_state",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("paused_until", sa.Float, nullable=False, server_default="0"),
    sa.Column("total_calls", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("total_waits", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_critical_at", sa.Float, nullable=False, server_default="0"),
    schema=DATA_SOURCES,
)

api_budget_calls = sa.Table(
    "api_budget_calls",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_api_budget_calls_name_at", "name", "at"),
    schema=DATA_SOURCES,
)

#: What the Polygon plan refused (a 403 on a kind of request), learnt once for every process and
#: re-probed rarely, so a plan without multi-ticker snapshots does not pay a 403 on every refresh.
api_refusals = sa.Table(
    "api_refusals",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("feature", sa.String(100), primary_key=True),
    sa.Column("refused_at", sa.Float, nullable=False),
    sa.Column("message", sa.Text),
    schema=DATA_SOURCES,
)


class SchemaError(RuntimeError):
    """The database does not hold the tables we write: a column is missing (the message names the
    table and column), or the migrations have not been run (it says how to run them)."""


#: The secondary queue. A table rather than a sensor cursor because run processes must update it
#: (requeue a failed symbol one tier lower) and only a sensor can write its own cursor.
refresh_queue = sa.Table(
    "refresh_queue",
    metadata,
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("tier", sa.String(20), nullable=False),
    sa.Column("base_tier", sa.String(20), nullable=False),
    sa.Column("tier_rank", sa.Integer, nullable=False),
    sa.Column("enqueued_at", _TS, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("batch_id", sa.String(64)),
    sa.Column("claimed_at", _TS),
    sa.Index("ix_refresh_queue_order", "status", "tier_rank", "enqueued_at"),
    schema=DATA_SOURCES,
)

#: One row per refresh run: what the status command reports as the last batch and the totals.
refresh_batches = sa.Table(
    "refresh_batches",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("ended_at", _TS, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("updated", sa.Text, nullable=False),
    sa.Column("failed", sa.Text, nullable=False),
    sa.Column("queue_processed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queue_remaining", sa.Integer, nullable=False, server_default="0"),
    sa.Column("api_calls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("budget_waits", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_refresh_batches_ended", "ended_at"),
    schema=DATA_SOURCES,
)
