"""The outbox's state in columns: `failures` (in a row) and `parked_at`, no longer in the text of
`last_error`.

Revision 0002, revises 0001, created 2026-12-01. Rows failing or parked by 0001's text ("failed N
of 5: ...", "parked after N failures: ...") carry their state over."""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

DATA_SOURCES = "data_sources"
_FAILED = re.compile(r"^(?:failed (\d+) of \d+|parked after (\d+) failures): ")


def _schema() -> str | None:
    """PostgreSQL's schema; SQLite keeps its tables flat in the file."""
    if context.is_offline_mode():
        return DATA_SOURCES
    return None if op.get_bind().dialect.name == "sqlite" else DATA_SOURCES


COLUMNS = {
    "failures": (sa.Integer, {"nullable": False, "server_default": "0"}),
    "parked_at": (sa.DateTime(timezone=True), {}),
}


def upgrade() -> None:
    """Add each column if missing: a table created by a newer `schema.py` (an embedded file from
    before the migrations, adopted by 0001) may have them already."""
    schema = _schema()
    if context.is_offline_mode():
        op.execute(
            f"ALTER TABLE {DATA_SOURCES}.event_outbox"
            " ADD COLUMN IF NOT EXISTS failures INTEGER NOT NULL DEFAULT 0,"
            " ADD COLUMN IF NOT EXISTS parked_at TIMESTAMP WITH TIME ZONE"
        )
        return
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("event_outbox", schema)}
    for name, (kind, options) in COLUMNS.items():
        if name not in have:
            op.add_column("event_outbox", sa.Column(name, kind, **options), schema=schema)
    _carry_over(op.get_bind(), schema)


def _carry_over(conn: sa.Connection, schema: str | None) -> None:
    outbox = sa.table(
        "event_outbox",
        sa.column("id"),
        sa.column("created_at"),
        sa.column("sent_at"),
        sa.column("last_error"),
        sa.column("failures"),
        sa.column("parked_at"),
        schema=schema,
    )
    rows = conn.execute(
        sa.select(outbox.c.id, outbox.c.created_at, outbox.c.last_error).where(
            outbox.c.sent_at.is_(None), outbox.c.last_error.is_not(None)
        )
    ).all()
    for row in rows:
        match = _FAILED.match(row.last_error)
        if match:
            failed, parked = match.groups()
            values = {"failures": int(failed or parked)}
            if parked:
                values["parked_at"] = row.created_at
            conn.execute(sa.update(outbox).where(outbox.c.id == row.id).values(**values))


def downgrade() -> None:
    schema = _schema()
    with op.batch_alter_table("event_outbox", schema=schema) as batch:
        batch.drop_column("parked_at")
        batch.drop_column("failures")
