"""A database or a Redis that accepts connections and never answers stops every command within a
stated bound, naming what did not answer and never its password; a slow statement or a lock
held too long is cancelled by the statement timeout (issue 17, point 7).

The bounds: a command fails within the database's connect timeout (here 2 s, by
`TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS`) plus the process's start-up, and within 2 s + 5 s per
Redis command (`persistence/redis_client.py`; `status` makes two). The tests allow 60 s and 30 s:
before these timeouts the commands were still waiting after 120 s.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.persistence.database import (
    DatabaseUnavailable,
    postgres_connect_args,
)

BIN = Path(sys.executable).parent
PASSWORD = "secret"
DATABASE_BOUND_SECONDS = 60
REDIS_BOUND_SECONDS = 30


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def run(
    tmp_path: Path, *args: str, **settings: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`assets-pipeline ARGS` in a fresh shell (none of our variables but `settings`, a fresh
    `DAGSTER_HOME`); what it did and how long it took."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    env.update(
        ASSETS_PIPELINE_HOME=str(tmp_path / "home"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        **settings,
    )
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "assets-pipeline"), *args], env=env, capture_output=True, text=True, timeout=150
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
@pytest.mark.parametrize("command", [["status"], ["migrate"], ["relay"]])
def test_a_database_that_never_answers_fails_the_command_in_bounded_time(
    tmp_path, silent_port, driver, command
):
    done, took = run(
        tmp_path,
        *command,
        TRADING_DATABASE_URL=f"postgresql+{driver}://u:{PASSWORD}@127.0.0.1:{silent_port}/db",
        TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS="2",
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert took < DATABASE_BOUND_SECONDS
    assert f"(127.0.0.1:{silent_port}) did not answer within 2 s" in done.stderr
    assert "TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS" in done.stderr
    assert PASSWORD not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", [["budget"], ["status"]])
def test_a_redis_that_never_answers_fails_the_command_in_bounded_time(
    tmp_path, silent_port, command
):
    done, took = run(tmp_path, *command, REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{silent_port}/0")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert took < REDIS_BOUND_SECONDS
    assert f"Redis at 127.0.0.1:{silent_port} did not answer" in done.stderr
    assert PASSWORD not in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "url, expected",
    [
        (  # ours: the settings' timeouts (the connect one in whole seconds) and keepalives
            "postgresql+psycopg://u@h/db",
            {
                "connect_timeout": 3,
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "options": "-c statement_timeout=30000 -c lock_timeout=30000",
            },
        ),
        (  # the URL's own values win: a connect timeout and options after ours
            "postgresql+psycopg2://u@h/db?connect_timeout=9&keepalives=0"
            "&options=-c%20search_path%3Dx",
            {
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "options": "-c statement_timeout=30000 -c lock_timeout=30000 -c search_path=x",
            },
        ),
    ],
)
def test_every_postgresql_connection_has_timeouts_and_keepalives(url, expected):
    assert postgres_connect_args(sa.make_url(url), 2.5, 30) == expected


def test_libpq_takes_no_connect_timeout_under_two_seconds():
    assert postgres_connect_args(sa.make_url("postgresql://h/db"), 0.5, 1)["connect_timeout"] == 2


@pytest.fixture
def short_statements(pg_url) -> Iterator[sa.Engine]:
    """The test's PostgreSQL database, its statements and lock waits cut at 1 s by the
    variable, as the code location's database resource makes its engine."""
    from assets_pipeline.config.settings import Settings
    from assets_pipeline.location import build_resources

    environ = {"TRADING_DATABASE_URL": pg_url, "TRADING_DATABASE_STATEMENT_TIMEOUT_SECONDS": "1"}
    database = build_resources(Settings.from_env(environ), secrets_as_env_vars=False)["database"]
    yield database.engine()
    database.engine().dispose()


def test_a_statement_past_the_statement_timeout_is_cancelled_naming_the_database(
    short_statements,
):
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as cancelled, short_statements.connect() as conn:
        conn.exec_driver_sql("SELECT pg_sleep(20)")
    assert time.monotonic() - started < 10
    assert "a statement (or its wait for a lock) ran past 1 s and was cancelled" in str(
        cancelled.value
    )
    assert "TRADING_DATABASE_STATEMENT_TIMEOUT_SECONDS" in str(cancelled.value)
    assert f":{short_statements.url.port or 5432})" in str(cancelled.value)


def test_a_lock_held_past_the_timeout_is_given_up_naming_the_database(short_statements):
    with short_statements.connect() as holder, short_statements.connect() as waiter:
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("LOCK TABLE data_sources.event_outbox IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(DatabaseUnavailable, match=r"its wait for a lock\) ran past 1 s"):
            waiter.exec_driver_sql("SELECT count(*) FROM data_sources.event_outbox")
        holder.rollback()
