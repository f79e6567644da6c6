"""SQLAlchemy engines for PostgreSQL and the embedded SQLite file, each owned by whoever made it
(the database resource for its run, a command, `Engines` for tests and benchmarks). An engine
checks the tables' revision when made (migrating the embedded file), bounds every wait, and fails
as `DatabaseUnavailable` naming the database, never the password
(docs/design/one-database-two-engines.md)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from assets_pipeline.config.settings import (
    DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECONDS,
)
from assets_pipeline.persistence import migrate
from assets_pipeline.persistence.schema import DATA_SOURCES, TRADING

#: TCP keepalives on every PostgreSQL connection: after 30 s of silence the peer is probed every
#: 10 s, and the connection fails after 3 probes unanswered (a peer gone in about a minute).
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long a connection may take to be answered, and a statement (or a wait for a lock)
    to run (`TRADING_DATABASE_*_TIMEOUT_SECONDS`, given by the caller: nothing here reads them)."""

    connect_seconds: float = DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS
    statement_seconds: float = DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECONDS


class DatabaseUnavailable(sa.exc.OperationalError):
    """The database did not answer in time, or refused the connection: the message names it
    (driver, user, host:port, database: never the password) and the timeout that ran out."""

    def __init__(self, message: str, orig: BaseException | None) -> None:
        super().__init__(None, None, orig if orig is not None else Exception(message))
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return self.__class__, (self.message, None)


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (the driver we ship)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(
    url: str, timeouts: DatabaseTimeouts | None = None, *, check_schema: bool = True
) -> sa.Engine:
    """A new engine for `url`, its tables checked (`prepare_tables`): the caller owns it, and
    disposes of it (the Dagster resource, when its run ends). `check_schema=False` only for the
    migration itself, and for readers that report the revision they find."""
    engine = _create_engine(normalize_url(url), timeouts or DatabaseTimeouts())
    if check_schema:
        try:
            prepare_tables(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


@dataclass
class Engines:
    """One engine per URL for whoever holds this (a test session, a benchmark), each made on
    first use with its tables checked once; `dispose` closes one URL's, or all of them."""

    _engines: dict[str, sa.Engine] = field(default_factory=dict, init=False)
    _ready: set[str] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def get(
        self, url: str, *, check_schema: bool = True, timeouts: DatabaseTimeouts | None = None
    ) -> sa.Engine:
        """The engine for `url` (made with `timeouts`, else the defaults, the first time),
        its tables checked on first use unless `check_schema=False`."""
        url = normalize_url(url)
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                engine = _create_engine(url, timeouts or DatabaseTimeouts())
                self._engines[url] = engine
            if check_schema and url not in self._ready:
                prepare_tables(engine)
                self._ready.add(url)
        return engine

    def dispose(self, url: str | None = None) -> None:
        """Close the engine for `url` (every engine: None) and its pooled connections."""
        with self._lock:
            urls = [normalize_url(url)] if url is not None else list(self._engines)
            engines = [self._engines.pop(u, None) for u in urls]
            self._ready.difference_update(urls)
        for engine in engines:
            if engine is not None:
                engine.dispose()


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


def migrate_database(
    url: str, timeouts: DatabaseTimeouts | None = None
) -> tuple[str | None, str | None]:
    """`assets-pipeline migrate`: bring the database at `url` to the newest revision, as the
    owner of its tables, on an engine of its own; (revision before, after)."""
    engine = create_engine(url, timeouts, check_schema=False)
    try:
        return migrate.upgrade(engine)
    finally:
        engine.dispose()


def _create_engine(url: str, timeouts: DatabaseTimeouts) -> sa.Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        args = postgres_connect_args(parsed, timeouts.connect_seconds, timeouts.statement_seconds)
        engine = sa.create_engine(
            url, pool_pre_ping=True, pool_size=2, max_overflow=4, connect_args=args
        )
        connect = int(parsed.query.get("connect_timeout", args.get("connect_timeout", 0)))
        _name_failures(engine, connect, timeouts.statement_seconds)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    lock_wait = timeouts.statement_seconds
    engine = sa.create_engine(
        url,
        connect_args={"timeout": lock_wait, "check_same_thread": False},
        execution_options={"schema_translate_map": {TRADING: None, DATA_SOURCES: None}},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(lock_wait * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def postgres_connect_args(
    url: sa.URL, connect_seconds: float, statement_seconds: float
) -> dict[str, Any]:
    """libpq's parameters for the timeouts and keepalives (psycopg 3 and psycopg2 alike). The
    connect timeout is whole seconds (libpq's unit; it takes 2 for 1). The URL's own value of a
    parameter wins; its `options` keep theirs after ours, so they override ours."""
    statement_ms = int(statement_seconds * 1000)
    ours = f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}"
    args: dict[str, Any] = {"connect_timeout": max(2, math.ceil(connect_seconds)), **KEEPALIVES}
    args = {k: v for k, v in args.items() if k not in url.query}
    given = url.query.get("options") or ""
    args["options"] = f"{ours} {given if isinstance(given, str) else ' '.join(given)}".strip()
    return args


def _name_failures(engine: sa.Engine, connect_seconds: int, statement_seconds: float) -> None:
    """Turn a connection not answered (or refused) and a statement cancelled by a timeout into a
    `DatabaseUnavailable` that says which database, where, and which timeout ran out."""
    url = engine.url
    where = f"database {migrate.where(url)} ({url.host}:{url.port or 5432})"

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context: sa.engine.ExceptionContext) -> BaseException | None:
        orig = context.original_exception
        if context.is_pre_ping or not isinstance(
            orig, engine.dialect.loaded_dbapi.OperationalError
        ):
            return None
        text = _scrubbed(str(orig), url.password)
        if "statement timeout" in text or "lock timeout" in text:
            return DatabaseUnavailable(
                f"{where}: a statement (or its wait for a lock) ran past"
                f" {statement_seconds:g} s and was cancelled"
                " (TRADING_DATABASE_STATEMENT_TIMEOUT_SECONDS)",
                orig,
            )
        if context.connection is not None:
            return None  # a live connection's failure: SQLAlchemy's own message says it
        if "timeout expired" in text or "timed out" in text:
            return DatabaseUnavailable(
                f"{where} did not answer within {connect_seconds} s"
                " (TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS)",
                orig,
            )
        return DatabaseUnavailable(f"{where}: cannot connect: {_first_line(text)}", orig)


def _scrubbed(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else "no reason given"


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
