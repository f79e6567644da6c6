"""The least privileges the writer's role needs on an external database: its GRANT script.

Rows only: USAGE on the two schemas, on each table just the statements the code runs on it,
SELECT on the migration version table, USAGE on the id sequences; no CREATE, ALTER or DROP.
`assets-pipeline migrate --grants ROLE` prints it (`grants_sql`); `deploy/grants.sql` and
docs/deployment.md hold it for `assets_pipeline_writer`, and a test keeps the three the same."""

from __future__ import annotations

import re

from assets_pipeline.persistence.schema import DATA_SOURCES, TRADING, VERSION_TABLE, metadata

#: The role docs/deployment.md and `deploy/grants.sql` grant to.
DEFAULT_ROLE = "assets_pipeline_writer"

_READ_WRITE = ("SELECT", "INSERT", "UPDATE")

#: What the writer does on each table. Every table of `schema.metadata` is here (a test checks).
TABLE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    # the platform's: symbols are added if missing and their `metadata.last_update` rewritten
    "trading.symbols": _READ_WRITE,
    "data_sources.api_providers": ("SELECT", "INSERT"),
    "data_sources.data_sync_status": _READ_WRITE,
    # this project's
    "trading.quote_history": ("SELECT", "INSERT", "UPDATE"),  # a correction replaces its row
    "trading.price_bars": _READ_WRITE,  # bars are upserted: a day refetched replaces its bars
    "data_sources.event_outbox": _READ_WRITE,
    "data_sources.api_budget_state": _READ_WRITE,
    "data_sources.api_budget_calls": ("SELECT", "INSERT", "DELETE"),
    "data_sources.api_refusals": _READ_WRITE,
    "data_sources.refresh_queue": (*_READ_WRITE, "DELETE"),
    "data_sources.refresh_batches": ("SELECT", "INSERT"),
}

_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


def id_sequences() -> list[str]:
    """The sequences of the generated ids, as PostgreSQL names a `BIGSERIAL`'s."""
    return [
        f"{table.schema}.{table.name}_{column.name}_seq"
        for table in metadata.sorted_tables
        for column in table.columns
        if column.autoincrement is True
    ]


def grants_sql(role: str = DEFAULT_ROLE) -> str:
    """The GRANT statements that give `role` what the writer needs and nothing more."""
    if not _ROLE.fullmatch(role):
        raise ValueError(
            f"role {role!r}: expected a plain PostgreSQL identifier (letters, digits, _ and $,"
            " not starting with a digit, at most 63 characters)"
        )
    who = f'"{role}"'
    lines = [
        f"-- The least privileges of assets_pipeline's writer, role {role}: rows only, no DDL.",
        "-- Run by the tables' owner after `assets-pipeline migrate`. The role also needs",
        "-- CONNECT on the database (PUBLIC has it unless it was revoked).",
        f"GRANT USAGE ON SCHEMA {TRADING}, {DATA_SOURCES} TO {who};",
        *(
            f"GRANT {', '.join(privileges)} ON {table} TO {who};"
            for table, privileges in TABLE_PRIVILEGES.items()
        ),
        f"GRANT SELECT ON {DATA_SOURCES}.{VERSION_TABLE} TO {who};",
        "-- The generated ids (if the platform's tables use other sequences, grant those).",
        "GRANT USAGE ON SEQUENCE",
        *(f"    {name}," for name in id_sequences()[:-1]),
        f"    {id_sequences()[-1]}",
        f"    TO {who};",
    ]
    return "\n".join(lines) + "\n"
