"""The tables' versioned migrations, and the writer's least privileges, on the real PostgreSQL.

What the platform's owners rely on: the tables come from `assets-pipeline migrate` (or its SQL,
run by a DBA), never from the writer at run time; the platform's own tables are adopted, not
altered; and the writer works with a role that has only the GRANTs in `deploy/grants.sql`.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from assets_pipeline.history.store import read_bars, write_bars
from assets_pipeline.persistence import migrate
from assets_pipeline.persistence.database import migrate_database
from assets_pipeline.persistence.grants import TABLE_PRIVILEGES, grants_sql
from assets_pipeline.persistence.schema import VERSION_TABLE, SchemaError, metadata
from assets_pipeline_tests.conftest import dispose_engine, get_engine

OURS = {"trading", "data_sources"}


def raw(url: str) -> sa.Engine:
    """A plain connection as the database's owner, outside the package's engines."""
    return sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")


def tables_in(url: str) -> list[str]:
    engine = raw(url)
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_schema IN ('trading', 'data_sources') ORDER BY 1"
        ).scalars()
        found = list(found)
    engine.dispose()
    return found


def schemas_in(url: str) -> list[str]:
    engine = raw(url)
    with engine.connect() as conn:
        found = list(
            conn.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE nspname IN ('trading', 'data_sources')"
            ).scalars()
        )
    engine.dispose()
    return found


def differences(url: str, target: sa.MetaData) -> list:
    """What autogenerate would change to make the database hold `target`'s tables."""
    engine = raw(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "compare_type": True,
                "compare_server_default": True,
                "include_name": lambda name, kind, _parents: (
                    name in OURS if kind == "schema" else name != VERSION_TABLE
                ),
            },
        )
        found = compare_metadata(context, target)
    engine.dispose()
    return found


ALL_TABLES = sorted(table.fullname for table in metadata.sorted_tables)


# --- the revisions -------------------------------------------------------------------------------


def test_the_revisions_form_one_chain_whose_head_the_runtime_asks_for():
    script = migrate._script()
    assert script.get_heads() == [migrate.head()]  # a fork would need a merge revision
    assert [s.revision for s in script.walk_revisions()][-1] == "0001"  # the chain's base


def test_a_migrated_database_holds_exactly_the_tables_the_code_writes(empty_pg_url):
    before, after = migrate_database(empty_pg_url)
    assert (before, after) == (None, migrate.head())
    assert differences(empty_pg_url, metadata) == []  # schema.py and the revisions agree
    assert tables_in(empty_pg_url) == sorted([*ALL_TABLES, f"data_sources.{VERSION_TABLE}"])


def test_a_column_added_to_the_code_without_a_revision_is_noticed(empty_pg_url):
    # what the previous test guards against: schema.py moved on and no revision followed
    migrate_database(empty_pg_url)
    ahead = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(ahead)
    ahead.tables["trading.quote_history"].append_column(sa.Column("venue", sa.String(20)))
    assert [diff[0] for diff in differences(empty_pg_url, ahead)] == ["add_column"]


def test_migrating_twice_changes_nothing(pg_url):
    # pg_url is the template the migrations made, as `assets-pipeline migrate` makes a user's
    assert migrate_database(pg_url) == (migrate.head(), migrate.head())
    assert differences(pg_url, metadata) == []


def test_the_version_table_is_ours_and_leaves_the_platforms_alembic_alone(empty_pg_url):
    engine = raw(empty_pg_url)
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE public.alembic_version (version_num varchar(32))")
        conn.exec_driver_sql("INSERT INTO public.alembic_version VALUES ('platform_42')")
    migrate_database(empty_pg_url)
    with engine.connect() as conn:
        platform = conn.exec_driver_sql("SELECT version_num FROM public.alembic_version").all()
        ours = conn.exec_driver_sql(f"SELECT version_num FROM data_sources.{VERSION_TABLE}").all()
    engine.dispose()
    assert [tuple(r) for r in platform] == [("platform_42",)]
    assert [tuple(r) for r in ours] == [(migrate.head(),)]


# --- the platform's tables -----------------------------------------------------------------------


def test_a_platform_table_missing_a_column_we_write_is_named_and_nothing_is_created(empty_pg_url):
    engine = raw(empty_pg_url)
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "CREATE SCHEMA trading; CREATE TABLE trading.symbols"
            " (id serial PRIMARY KEY, symbol varchar(20) UNIQUE, metadata jsonb)"
        )
    engine.dispose()
    with pytest.raises(SchemaError, match=r"trading\.symbols exists without the column\(s\) name,"):
        migrate_database(empty_pg_url)
    assert tables_in(empty_pg_url) == ["trading.symbols"]  # one transaction: all or nothing
    assert schemas_in(empty_pg_url) == ["trading"]


def test_downgrade_drops_only_our_tables_and_keeps_the_platforms_with_their_rows(empty_pg_url):
    migrate_database(empty_pg_url)
    engine = raw(empty_pg_url)
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO trading.symbols (symbol) VALUES ('EURUSD')")
    migrate.downgrade(get_engine(empty_pg_url, check_schema=False), "base")
    assert tables_in(empty_pg_url) == [
        "data_sources.api_providers",
        "data_sources.assets_pipeline_alembic_version",
        "data_sources.data_sync_status",
        "trading.symbols",
    ]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT symbol FROM trading.symbols").scalars().all() == [
            "EURUSD"
        ]
        assert migrate.current(conn) is None
    engine.dispose()
    # and back up again: the kept tables are adopted, ours recreated
    assert migrate_database(empty_pg_url) == (None, migrate.head())
    assert differences(empty_pg_url, metadata) == []


# --- the runtime runs no DDL ---------------------------------------------------------------------


def test_the_writer_refuses_an_unmigrated_database_naming_it_and_creates_nothing(empty_pg_url):
    with_password = make_url(empty_pg_url).set(password="s3cret-pw")  # trust auth ignores it
    url = with_password.render_as_string(hide_password=False)
    with pytest.raises(SchemaError) as refused:
        get_engine(url)
    message = str(refused.value)
    database = make_url(empty_pg_url).database
    assert f"postgres@127.0.0.1:5432/{database} has no assets_pipeline tables yet" in message
    assert "run `assets-pipeline migrate`" in message
    assert "s3cret-pw" not in message
    assert tables_in(empty_pg_url) == [] and schemas_in(empty_pg_url) == []
    dispose_engine(url)


def test_the_writer_refuses_a_database_migrated_by_a_newer_version(pg_url):
    engine = raw(pg_url)
    with engine.connect() as conn:
        conn.exec_driver_sql(f"UPDATE data_sources.{VERSION_TABLE} SET version_num = '0099'")
    engine.dispose()
    with pytest.raises(SchemaError, match=r"at revision 0099, newer than this version .* knows"):
        get_engine(pg_url)


# --- the DBA's script ----------------------------------------------------------------------------


def offline_sql() -> str:
    out = io.StringIO()
    migrate.upgrade_sql(out)
    return out.getvalue()


def test_the_sql_for_a_dba_makes_the_same_database_as_migrate(empty_pg_url):
    engine = raw(empty_pg_url)
    with engine.connect() as conn:
        conn.exec_driver_sql(offline_sql())
    engine.dispose()
    assert differences(empty_pg_url, metadata) == []
    get_engine(empty_pg_url)  # the writer accepts it: the revision is recorded


def test_the_sql_for_a_dba_stops_on_a_platform_table_missing_a_column(empty_pg_url):
    engine = raw(empty_pg_url)
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "CREATE SCHEMA trading; CREATE TABLE trading.symbols (id serial PRIMARY KEY,"
            " symbol varchar(20) UNIQUE, metadata jsonb NOT NULL DEFAULT '{}')"
        )
        with pytest.raises(sa.exc.DBAPIError, match=r"writes: trading\.symbols\.name,"):
            conn.exec_driver_sql(offline_sql())
    engine.dispose()
    assert tables_in(empty_pg_url) == ["trading.symbols"]


# --- least privileges ----------------------------------------------------------------------------


def test_every_table_the_code_writes_has_its_privileges_decided():
    assert sorted(TABLE_PRIVILEGES) == ALL_TABLES


def test_a_role_name_that_is_not_a_plain_identifier_is_refused():
    with pytest.raises(ValueError, match=r"role 'x; DROP TABLE y': expected a plain PostgreSQL"):
        grants_sql("x; DROP TABLE y")


@pytest.fixture
def writer_url(empty_pg_url):
    """A fresh database migrated by its owner, and the URL of a new role that has only the
    writer's GRANTs on it (the role is dropped afterwards)."""
    migrate_database(empty_pg_url)
    role = f"ap_writer_{uuid.uuid4().hex[:10]}"
    owner = raw(empty_pg_url)
    with owner.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql(grants_sql(role))
    url = make_url(empty_pg_url).set(username=role).render_as_string(hide_password=False)
    yield url
    dispose_engine(url)
    with owner.connect() as conn:
        conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
        conn.exec_driver_sql(f'DROP ROLE "{role}"')
    owner.dispose()


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE trading.probe (x int)",
        "CREATE TABLE data_sources.probe (x int)",
        "CREATE SCHEMA probe",
        "ALTER TABLE trading.symbols ADD COLUMN probe int",
        "DROP TABLE data_sources.refresh_queue",
        "TRUNCATE trading.quote_history",
    ],
)
def test_the_writers_role_cannot_change_the_tables(writer_url, ddl):
    engine = raw(writer_url)
    with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match=r"denied|owner"):
        conn.exec_driver_sql(ddl)
    engine.dispose()


def test_the_writers_role_keeps_the_queue_bars_budget_and_statuses(writer_url, registry):
    from assets_pipeline.budget.fairness import CRITICAL_CALLER
    from assets_pipeline.budget.sql_store import SqlBudgetStore
    from assets_pipeline.persistence.quote_store import QuoteStore
    from assets_pipeline.persistence.refresh_queue import RefreshQueue
    from assets_pipeline.rules.taxonomy import Tier

    engine = get_engine(writer_url)  # reads the revision: allowed
    store = QuoteStore(engine)
    store.register_symbols(registry)
    store.record_failure(registry.get("GBPUSD"), "503 from Polygon")
    assert store.mark_stale({registry.get("EURUSD"): None}) == 1
    queue = RefreshQueue(engine, registry.queue)
    queue.enqueue([("GBPUSD", Tier.HIGH), ("USDJPY", Tier.HIGH)])
    assert [i.symbol for i in queue.claim(5, 1, "batch-1")] == ["GBPUSD", "USDJPY"]
    queue.fail("USDJPY", Tier.HIGH, "503", retryable=True)
    assert queue.complete(["GBPUSD"]) == 1
    budget = SqlBudgetStore(engine, "polygon")
    for _ in range(2):  # the second acquire deletes the first call, out of its tiny window
        budget.try_acquire(5, 1e-6, CRITICAL_CALLER)
    budget.pause(0.0)
    budget.record_wait()
    budget.refuse("snapshot", "403 NOT_AUTHORIZED")
    budget.refuse("snapshot", "403 again")  # an upsert
    day = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    bars = pd.DataFrame(
        [{"symbol": "EURUSD", "bar_start": day, "bar_seconds": 300, "open": 1.0, "high": 1.1,
          "low": 0.9, "close": 1.05, "volume": None, "vwap": None, "trades": None,
          "source": "test"}]
    )  # fmt: skip
    assert write_bars(engine, bars) == write_bars(engine, bars.assign(close=1.06)) == 1
    assert read_bars(engine, "EURUSD", [day.date()], 300)["close"].tolist() == [1.06]


def test_a_refresh_runs_as_a_role_with_only_the_writers_grants(
    writer_url, redis_namespace, tmp_path
):
    from assets_pipeline.config.settings import VARIABLES
    from assets_pipeline.simulator import PolygonSimulator
    from assets_pipeline_tests.conftest import REDIS_URL, always_open_symbols_file
    from assets_pipeline_tests.test_cli_production import command

    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        env.update(
            TRADING_DATABASE_URL=writer_url,
            REDIS_URL=REDIS_URL,
            REDIS_NAMESPACE=redis_namespace,
            POLYGON_BUDGET_STORE="database",  # the budget's tables too, not Redis
            POLYGON_BASE_URL=sim.url,
            POLYGON_API_KEY="sk-writer-role",
            ASSETS_PIPELINE_HOME=str(tmp_path),
            ASSETS_CONFIG=str(always_open_symbols_file(tmp_path)),
        )
        done = command(env, "refresh")
        assert done.returncode == 0, done.stderr
        assert "9 of 9 symbol(s) refreshed" in done.stdout
        assert command(env, "status", "--json").returncode == 0
    owner = raw(writer_url.replace(make_url(writer_url).username, "postgres", 1))
    with owner.connect() as conn:
        updated = conn.exec_driver_sql(
            "SELECT count(*) FROM trading.symbols WHERE metadata ? 'last_update'"
        ).scalar_one()
        unsent = conn.exec_driver_sql(
            "SELECT count(*) FROM data_sources.event_outbox WHERE sent_at IS NULL"
        ).scalar_one()
        calls = conn.exec_driver_sql("SELECT count(*) FROM data_sources.api_budget_calls")
        calls = calls.scalar_one()
    owner.dispose()
    assert (updated, unsent, calls) == (9, 0, 1)  # stored, announced, counted in the budget


# --- the command ---------------------------------------------------------------------------------


def test_the_grants_in_deploy_and_the_docs_are_the_ones_the_command_prints():
    from assets_pipeline.persistence.grants import DEFAULT_ROLE
    from assets_pipeline_tests.conftest import REPO

    script = grants_sql(DEFAULT_ROLE)
    assert (REPO / "deploy" / "grants.sql").read_text() == script
    assert f"```sql\n{script}```" in (REPO / "docs" / "deployment.md").read_text()


def test_migrate_check_says_behind_then_migrate_brings_it_to_the_head(empty_pg_url, tmp_path):
    from assets_pipeline.config.settings import VARIABLES
    from assets_pipeline_tests.test_cli_production import command

    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(TRADING_DATABASE_URL=empty_pg_url, ASSETS_PIPELINE_HOME=str(tmp_path))
    refused = command(env, "status")  # the writer's commands stop and say what to run
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "run `assets-pipeline migrate`" in refused.stderr
    behind = command(env, "migrate", "--check")
    assert behind.returncode == 1
    assert f"has no assets_pipeline tables yet (needs {migrate.head()})" in behind.stderr
    assert tables_in(empty_pg_url) == []  # a check changes nothing
    done = command(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"migrated from revision none to {migrate.head()}\n")
    again = command(env, "migrate")
    assert "(the newest): nothing to do" in again.stdout
    assert command(env, "migrate", "--check").returncode == 0
    grants = command(env, "migrate", "--grants", "reporting_writer")
    assert grants.stdout == grants_sql("reporting_writer")
    sql = command(env, "migrate", "--sql")
    assert sql.returncode == 0 and sql.stdout.strip() == offline_sql().strip()


# --- the embedded SQLite file --------------------------------------------------------------------


def test_the_embedded_file_is_migrated_on_first_use(sqlite_url):
    engine = get_engine(sqlite_url)
    with engine.connect() as conn:
        assert migrate.current(conn) == migrate.head()
        names = set(sa.inspect(conn).get_table_names())
    assert names == {t.name for t in metadata.sorted_tables} | {VERSION_TABLE}


def test_an_embedded_file_from_before_the_migrations_is_adopted_with_its_rows(sqlite_url):
    # what the earlier versions did at start-up: create_all, no version table
    old = sa.create_engine(
        sqlite_url,
        execution_options={"schema_translate_map": {"trading": None, "data_sources": None}},
    )
    metadata.create_all(old)
    with old.begin() as conn:
        conn.exec_driver_sql("INSERT INTO symbols (symbol) VALUES ('EURUSD')")
    old.dispose()
    engine = get_engine(sqlite_url)
    with engine.connect() as conn:
        assert migrate.current(conn) == migrate.head()
        assert conn.exec_driver_sql("SELECT symbol FROM symbols").scalars().all() == ["EURUSD"]


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_the_outbox_state_moves_from_its_error_text_to_columns(kind, empty_pg_url, tmp_path):
    # 0001 kept a row's failures and its parking in the text of `last_error`; 0002 keeps them in
    # `failures` and `parked_at`, and carries over what the text said
    url = empty_pg_url if kind == "postgresql" else f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = get_engine(url, check_schema=False)
    migrate.upgrade(engine, "0001")
    table = "data_sources.event_outbox" if kind == "postgresql" else "event_outbox"
    rows = {
        "a": "failed 2 of 5: JSONDecodeError: ...",
        "b": "parked after 5 failures: JSONDecodeError: ...",
        "c": "ConnectionError: Connection refused",  # an outage: not the row's failure
    }
    with engine.begin() as conn:
        for event_id, error in rows.items():
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} (event_id, channel, symbol, payload, created_at,"
                    " attempts, last_error) VALUES (:e, 'c', 'EURUSD', '{}', :t, 3, :err)"
                ),
                {"e": event_id, "t": dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "err": error},
            )
    assert migrate.upgrade(engine, "head") == ("0001", migrate.head())
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(f"SELECT event_id, failures, parked_at FROM {table} ORDER BY event_id")
        ).all()
    assert [(e, f, p is not None) for e, f, p in found] == [
        ("a", 2, False),
        ("b", 5, True),
        ("c", 0, False),
    ]
    migrate.downgrade(engine, "0001")  # and back: the columns go, the rows stay
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 3
    dispose_engine(url)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_0003_gives_history_rows_a_provider_polygon_for_those_before_and_back(
    kind, empty_pg_url, tmp_path
):
    # before 0003 every quote and bar was Polygon's: the rows already there say so, and stay
    url = empty_pg_url if kind == "postgresql" else f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = get_engine(url, check_schema=False)
    migrate.upgrade(engine, "0002")
    bars = "trading.price_bars" if kind == "postgresql" else "price_bars"
    at = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {bars} (symbol, bar_start, bar_seconds, open, high, low, close,"
                " source, fetched_at) VALUES ('EURUSD', :t, 86400, 1, 1, 1, 1, 'polygon:x', :t)"
            ),
            {"t": at},
        )
    assert migrate.upgrade(engine, "head") == ("0002", migrate.head())
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT provider FROM {bars}")).scalars().all() == ["polygon"]
    migrate.downgrade(engine, "0002")  # and back: the column goes, the row stays
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {bars}")).scalar_one() == 1
        columns = {
            c["name"] for c in sa.inspect(conn).get_columns("price_bars", bars[:-11] or None)
        }
    assert "provider" not in columns and "source" in columns
    dispose_engine(url)
