"""One SQLAlchemy engine per database URL per process, set up for both PostgreSQL and SQLite.

SQLite has no schemas, so `trading.*` and `data_sources.*` are translated to plain tables there.
On first use an engine checks the tables (see `migrate.py`): an external database (PostgreSQL, the
platform's) must already be at the newest revision, since the writer runs no DDL there; the
embedded SQLite file, which belongs to this project alone, is migrated to it.
Every SQLite transaction starts with `BEGIN IMMEDIATE`: it takes the write lock up front, which
makes read-then-write sequences (the budget, the stale-quote check) atomic across processes and
avoids the lock-upgrade deadlock that SQLite's default deferred transactions run into.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from assets_pipeline.persistence import migrate
from assets_pipeline.persistence.schema import DATA_SOURCES, TRADING

_engines: dict[str, sa.Engine] = {}
_ready: set[str] = set()
_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (the driver we ship)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_engine(url: str, *, check_schema: bool = True) -> sa.Engine:
    """The process-wide engine for `url`, its tables checked on first use (`prepare_tables`).
    `check_schema=False` only for the migration itself, and for helpers whose parent checked."""
    url = normalize_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        if check_schema and url not in _ready:
            prepare_tables(engine)
            _ready.add(url)
    return engine


def prepare_tables(engine: sa.Engine) -> None:
    """SQLite (embedded): migrate the file to the newest revision. Anything else: read its
    revision only, and raise `SchemaError` naming the database and `assets-pipeline migrate` if
    it is behind; no DDL, so the writer's role needs no CREATE."""
    if is_embedded(engine.url):
        with engine.connect() as conn:
            if migrate.current(conn) == migrate.head():
                return
        migrate.upgrade(engine)
    else:
        migrate.require_head(engine)


def is_embedded(url: sa.URL | str) -> bool:
    """A SQLite file: this project's own (the platform's database is never SQLite)."""
    return make_url(url).get_backend_name() == "sqlite"


def migrate_database(url: str) -> tuple[str | None, str | None]:
    """`assets-pipeline migrate`: bring the database at `url` to the newest revision, as the
    owner of its tables; (revision before, after)."""
    before, after = migrate.upgrade(get_engine(url, check_schema=False))
    with _lock:
        _ready.add(normalize_url(url))
    return before, after


def dispose_engine(url: str | None = None) -> None:
    """Close the engine for `url` (every engine: None) and its pooled connections."""
    with _lock:
        urls = [normalize_url(url)] if url is not None else list(_engines)
        engines = [_engines.pop(u, None) for u in urls]
        _ready.difference_update(urls)
    for engine in engines:
        if engine is not None:
            engine.dispose()


def _create_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        execution_options={"schema_translate_map": {TRADING: None, DATA_SOURCES: None}},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def db_epoch_seconds(conn: sa.Connection) -> float:
    """The database server's clock as epoch seconds: shared by every process that uses it."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    else:
        sql = "SELECT extract(epoch from clock_timestamp())"
    return float(conn.exec_driver_sql(sql).scalar_one())


def dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_*` on both PostgreSQL and SQLite."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def insert_ignore(conn: sa.Connection, table: sa.Table, values: dict[str, Any]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING."""
    return dialect_insert(conn, table).values(**values).on_conflict_do_nothing()
