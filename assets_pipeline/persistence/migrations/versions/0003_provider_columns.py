"""Who served each history row: `provider` on `trading.quote_history` and `trading.price_bars`,
NOT NULL, existing rows (all Polygon's) backfilled `polygon` by the column's default.

Revision 0003, revises 0002. `provider` stays out of both keys: a symbol has one history (the
chart's series); a second provider's bar or quote for the same symbol and time replaces the
first (the column says whose), not two prices for one minute that every reader must choose."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

TRADING = "trading"
TABLES = ("quote_history", "price_bars")
#: The provider of every row written before this revision (a revision keeps its own words).
POLYGON = "polygon"


def _schema() -> str | None:
    """PostgreSQL's schema; SQLite keeps its tables flat in the file."""
    if context.is_offline_mode():
        return TRADING
    return None if op.get_bind().dialect.name == "sqlite" else TRADING


def _column() -> sa.Column:
    return sa.Column("provider", sa.String(50), nullable=False, server_default=POLYGON)


def upgrade() -> None:
    """Add the column where missing (an embedded file adopted by 0001 from a newer `schema.py`
    may have it); its default fills the rows already there, on both databases."""
    schema = _schema()
    if context.is_offline_mode():
        for table in TABLES:
            op.execute(
                f"ALTER TABLE {TRADING}.{table} ADD COLUMN IF NOT EXISTS"
                f" provider VARCHAR(50) NOT NULL DEFAULT '{POLYGON}'"
            )
        return
    inspector = sa.inspect(op.get_bind())
    for table in TABLES:
        if "provider" not in {c["name"] for c in inspector.get_columns(table, schema)}:
            op.add_column(table, _column(), schema=schema)


def downgrade() -> None:
    schema = _schema()
    for table in TABLES:
        with op.batch_alter_table(table, schema=schema) as batch:
            batch.drop_column("provider")
