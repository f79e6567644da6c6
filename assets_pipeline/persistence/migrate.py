"""Versioned migrations of the trading database's tables: Alembic, configured from code.

The owner runs them (`assets-pipeline migrate`, or `--sql` for a DBA); at run time the writer
only reads the revision (`require_head`) and, if the database is behind, stops with the command to
run. The embedded SQLite file is migrated on first use. An upgrade is one transaction under a lock
(advisory on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so migrating processes take turns."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import sqlalchemy as sa

from assets_pipeline.persistence.schema import DATA_SOURCES, VERSION_TABLE, SchemaError

if TYPE_CHECKING:  # Alembic is imported when a database is first used, not with the location
    from alembic.config import Config
    from alembic.script import ScriptDirectory

#: The revisions, shipped inside the package (package data in pyproject.toml).
MIGRATIONS = Path(__file__).parent / "migrations"
#: Names the advisory lock that serializes migrations across processes (any constant).
_MIGRATION_LOCK_KEY = 724_311_906


def _config(**attributes: object) -> Config:
    from alembic.config import Config

    config = Config(output_buffer=attributes.pop("output", None))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes.update(attributes)
    return config


def _script() -> ScriptDirectory:
    """The revisions as Alembic reads them (about 10 ms: read when a database is checked or
    migrated, a few times per process, so not kept)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this version of the package knows (one head: a fork is refused)."""
    found = _script().get_current_head()
    if found is None:  # pragma: no cover - the package ships its revisions
        raise SchemaError(f"no migration revisions in {MIGRATIONS}")
    return found


def current(conn: sa.Connection) -> str | None:
    """The database's revision, or None when it was never migrated."""
    schema = None if conn.dialect.name == "sqlite" else DATA_SOURCES
    options = {"version_table": VERSION_TABLE, "version_table_schema": schema}
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts=options).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to `revision`, as the owner of its tables; (revision before, after)."""
    with engine.begin() as conn:
        _take_turn(conn)
        before = current(conn)
        from alembic import command

        command.upgrade(_config(connection=conn), revision)
        return before, current(conn)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Undo the revisions after `revision` ("base": all). See each revision for what it keeps."""
    with engine.begin() as conn:
        _take_turn(conn)
        from alembic import command

        command.downgrade(_config(connection=conn), revision)


def upgrade_sql(output: TextIO) -> None:
    """Write the PostgreSQL script of the upgrade from nothing to head, for a DBA (offline)."""
    from alembic import command

    command.upgrade(_config(output=output), "head", sql=True)


def _take_turn(conn: sa.Connection) -> None:
    """Wait for other migrating processes; then make sure the version table's schema exists."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    if DATA_SOURCES not in sa.inspect(conn).get_schema_names():
        conn.exec_driver_sql(f'CREATE SCHEMA "{DATA_SOURCES}"')


def where(url: sa.URL) -> str:
    """The database, named without its password or query (which may hold one)."""
    bare = sa.URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    return bare.render_as_string(hide_password=False)


def behind(found: str | None, url: sa.URL) -> str | None:
    """Why a database at revision `found` cannot be used by this version, or None if it can."""
    wanted = head()
    if found == wanted:
        return None
    run = (
        "run `assets-pipeline migrate` with TRADING_DATABASE_URL set to it, as a role allowed"
        " to create tables (docs/deployment.md: Migrations and privileges)"
    )
    if found is None:
        return f"database {where(url)} has no assets_pipeline tables yet (needs {wanted}): {run}"
    if found not in {script.revision for script in _script().walk_revisions()}:
        return (
            f"database {where(url)} is at revision {found}, newer than this version of"
            f" assets_pipeline knows (its newest is {wanted}): upgrade assets_pipeline"
        )
    return f"database {where(url)} is at revision {found}, this version needs {wanted}: {run}"


def require_head(engine: sa.Engine) -> None:
    """At run time: read the revision, change nothing; SchemaError saying what to do if behind."""
    with engine.connect() as conn:
        found = current(conn)
    problem = behind(found, engine.url)
    if problem:
        raise SchemaError(problem)
