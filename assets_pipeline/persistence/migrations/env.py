"""Alembic's environment for assets_pipeline, configured from code (no alembic.ini).

`migrate.py` runs it: online on a connection already inside the caller's transaction (which holds
the migration lock), or offline (`--sql`), writing PostgreSQL for a DBA. Its version table is
`data_sources.assets_pipeline_alembic_version`, never the platform's `public.alembic_version`."""

from __future__ import annotations

from alembic import context

from assets_pipeline.persistence.schema import DATA_SOURCES, VERSION_TABLE

config = context.config


def _version_schema(dialect: str) -> str | None:
    return None if dialect == "sqlite" else DATA_SOURCES


def run_offline() -> None:
    """The SQL a DBA runs by hand: PostgreSQL, literal values, one transaction."""
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        transactional_ddl=True,
        version_table=VERSION_TABLE,
        version_table_schema=DATA_SOURCES,
    )
    with context.begin_transaction():
        # The version table is created before the first revision runs: its schema must exist.
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{DATA_SOURCES}"')
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    dialect = connection.dialect.name
    context.configure(
        connection=connection,
        transactional_ddl=True,
        render_as_batch=dialect == "sqlite",  # SQLite alters a table by copying it
        version_table=VERSION_TABLE,
        version_table_schema=_version_schema(dialect),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
