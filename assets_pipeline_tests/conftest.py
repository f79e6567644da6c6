"""Shared fixtures: real PostgreSQL and Redis on this machine, each test in its own space.

PostgreSQL: every test that asks for it gets a fresh database cloned from a template that
already holds our schema (cloning is fast), dropped afterwards. Redis: every test gets its own
key and channel namespace, deleted afterwards. The Polygon boundary is the project's simulator
over real HTTP on loopback.
"""

from __future__ import annotations

import ast
import collections
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import redis
import sqlalchemy as sa

from assets_pipeline.config.registry import Registry, load_registry
from assets_pipeline.persistence.database import Engines, migrate_database
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import Quote
from assets_pipeline_tests import event_contract

REPO = Path(__file__).resolve().parents[1]
#: Polygon bodies the parser and the simulator are checked against: test data kept in the
#: repository (where each came from: PROVENANCE.md beside them).
RESPONSES = Path(__file__).resolve().parent / "data" / "polygon" / "responses"
PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: The tests' engines, one per database URL (its tables checked on first use), each disposed of
#: with its test's database by the fixtures below: the test session owns them.
ENGINES = Engines()
get_engine = ENGINES.get
dispose_engine = ENGINES.dispose


def _admin_engine() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _pg_url(database: str) -> str:
    return sa.engine.make_url(PG_ADMIN_URL).set(database=database).render_as_string(False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database holding our schema, used as the template for each test's database. Prepared
    the way a user prepares theirs: the migrations (`assets-pipeline migrate`)."""
    name = f"ap_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    migrate_database(url)
    dispose_engine(url)
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# --- the event contract: every event a test leaves behind is checked (event_contract.py) ------

#: The `user_properties` entry where a test's teardown counts the events it checked, by version.
EVENTS_CHECKED = "events_checked"
_events_checked: collections.Counter[str] = collections.Counter()


def _check_events(
    request: pytest.FixtureRequest, source: str, checked: Iterable[tuple[int | None, str | None]]
) -> list[str]:
    """Count the checked events (by where they were and their version) on the test's report and
    return the failures; nothing is checked in a test marked `allow_invalid_events`."""
    if request.node.get_closest_marker(event_contract.MARKER):
        return []
    counts: collections.Counter[str] = collections.Counter()
    failures = []
    for version, failure in checked:
        counts[f"{source} v{'?' if version is None else version}"] += 1
        if failure:
            failures.append(failure)
    request.node.user_properties.append((EVENTS_CHECKED, dict(counts)))
    return failures


def _fail_on(failures: list[str]) -> None:
    if failures:
        shown = "\n".join(failures[:5])
        more = f"\n... and {len(failures) - 5} more" if len(failures) > 5 else ""
        pytest.fail(
            f"{len(failures)} event(s) break the price_update contract"
            f" (assets_pipeline/events, docs/events.md):\n{shown}{more}",
            pytrace=False,
        )


def _outbox_events(url: str) -> Iterator[tuple[int | None, str | None]]:
    """Each outbox row's event as the relay would announce it, checked: those that never
    reached Redis too. Nothing when the database has no outbox (not migrated, or dropped)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return
    schema = None if url.startswith("sqlite") else "data_sources"
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("event_outbox", schema=schema):
                return
            table = sa.table("event_outbox", sa.column("event_id"), sa.column("payload"))
            table.schema = schema
            rows = conn.execute(sa.select(table.c.event_id, table.c.payload)).all()
    finally:
        engine.dispose()
    for event_id, payload in rows:
        where = f"outbox row {event_id}"
        yield event_contract.check_text(event_contract.as_announced(payload), where)


def _stream_events(
    client: redis.Redis, keys: list[bytes]
) -> Iterator[tuple[int | None, str | None]]:
    """Every entry of every stream among `keys` (the event stream `{ns}asset:{updates}`), checked."""
    for key in keys:
        if client.type(key) != b"stream":
            continue
        for entry_id, fields in client.xrange(key):
            yield event_contract.check_stream_entry(entry_id, fields, key.decode())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        for name, counts in report.user_properties:
            if name == EVENTS_CHECKED:
                _events_checked.update(counts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _events_checked:
        return
    counts = ", ".join(f"{n} from the {kind}" for kind, n in sorted(_events_checked.items()))
    terminalreporter.write_sep("-", "price_update events checked against the contract")
    terminalreporter.write_line(counts)


@pytest.fixture
def pg_url(pg_template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database with our schema, dropped after the test; every event left in
    its outbox must keep the event contract."""
    name = f"ap_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    url = _pg_url(name)
    yield url
    try:
        failures = _check_events(request, "outbox", _outbox_events(url))
    finally:
        dispose_engine(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    _fail_on(failures)


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database with nothing in it (not migrated)."""
    name = f"ap_empty_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    yield url
    dispose_engine(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An embedded database file of the test's own; every event left in its outbox must keep
    the event contract."""
    url = f"sqlite:///{tmp_path / 'trading.sqlite'}"
    yield url
    try:
        failures = _check_events(request, "outbox", _outbox_events(url))
    finally:
        dispose_engine(url)
    _fail_on(failures)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test on both the embedded SQLite default and the real PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def redis_namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key and channel prefix of the test's own, deleted afterwards. Before that, every event
    in the namespace's stream (whoever published it: the test, a Dagster run, a CLI subprocess)
    must keep the event contract, or the test fails with the event and what is wrong."""
    namespace = f"test:{uuid.uuid4().hex[:10]}:"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}*"))
    try:
        failures = _check_events(request, "stream", _stream_events(client, keys))
    finally:
        if keys:
            client.delete(*keys)
        client.close()
    _fail_on(failures)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def simulator() -> Iterator[object]:
    """The project's Polygon simulator on a free loopback port, with no budget of its own."""
    from assets_pipeline.simulator import PolygonSimulator

    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        yield sim


def symbol_entry(**overrides: object) -> dict[str, object]:
    """One valid symbols-file entry (EURUSD, critical), with the fields a test changes."""
    return {
        "symbol": "EURUSD",
        "polygon_ticker": "C:EURUSD",
        "asset_type": "forex",
        "tier": "critical",
        "name": "Euro / US Dollar",
        "base_asset": "EUR",
        "quote_asset": "USD",
        "price_precision": 5,
        **overrides,
    }


#: A quote's time, and its day (UTC), for tests that store quotes (`quote()`).
T0 = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
DAY = T0.date()


def quote(symbol="EURUSD", ticker="C:EURUSD", at=T0, bid=1.0800, ask=1.0802, **extra) -> Quote:
    """A valid quote of EURUSD at `T0` with a full day bar, with the fields a test changes."""
    return Quote(
        ticker=ticker,
        symbol=symbol,
        data_time=at,
        source="polygon:test",
        bid=bid,
        ask=ask,
        last_price=(bid + ask) / 2 if bid and ask else extra.pop("last_price", None),
        day_open=1.07,
        day_high=1.09,
        day_low=1.06,
        day_close=1.0801,
        **{"fetched_at": at + dt.timedelta(seconds=2), "plan": "paid", **extra},
    )


def max_in_any_window(times: list[float], window: float) -> int:
    """The most calls (by their times, in seconds) that fall in any one `window` of seconds."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + window))
    return best


ALWAYS_OPEN = {"forex": "always", "index": "always"}


@pytest.fixture(scope="session", autouse=True)
def markets_always_open() -> Iterator[None]:
    """Tests that are not about market hours must not depend on the weekday they run on: every
    registry loaded in-process sees markets that never close. Market hours have tests of their
    own (`rules/test_market_hours.py`, and the schedule tests that set a Saturday clock)."""
    import assets_pipeline.config.registry as registry_module
    from assets_pipeline.rules.market_hours import parse_market_hours

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            registry_module,
            "parse_market_hours",
            lambda document, where: parse_market_hours(document or ALWAYS_OPEN, where),
        )
        yield


def always_open_symbols_file(tmp_path: Path, **changes: object) -> Path:
    """The packaged symbols file with markets that never close (for subprocess tests)."""
    import yaml

    document = yaml.safe_load(Path(load_registry().source).read_text())
    document["market_hours"] = ALWAYS_OPEN
    document.update(changes)
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def registry(markets_always_open: None) -> Registry:
    return load_registry()


# --- Dagster ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_dagster_instance() -> Iterator[dg.DagsterInstance]:
    """One persistent Dagster test instance for every test of this process (each xdist worker has
    its own), instead of one `instance_for_test()` per test: creating and removing an instance's
    home and SQLite storages is the slow part. Persistent, not ephemeral, because a schedule's
    evaluation context opens its instance from a reference, which an in-memory one has not.
    Tests take it through `dagster_instance`, which wipes it first."""
    with dg.instance_for_test(set_dagster_home=False) as instance:
        yield instance


@pytest.fixture
def dagster_instance(
    shared_dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> dg.DagsterInstance:
    """The shared instance with nothing of earlier tests in it, as a fresh `instance_for_test()`
    would be: no run (queued, in flight or over), run tag, backfill, daemon heartbeat, event,
    asset record, tick or instigator state (`DagsterInstance.wipe()` empties run and event
    storage, `schedule_storage.wipe()` the rest), and `DAGSTER_HOME` pointing at it for the test.
    A test that needs an instance with settings of its own (`dagster.yaml`), or a second one
    beside it (a restarted daemon), still makes it."""
    instance = shared_dagster_instance
    instance.wipe()
    instance.schedule_storage.wipe()
    assert instance.get_runs(limit=1) == [], "the shared Dagster instance was not wiped"
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    monkeypatch.setenv("DAGSTER_DISABLE_TELEMETRY", "yes")
    return instance


@pytest.fixture
def dagster_pg_env() -> Iterator[dict[str, str]]:
    """An empty PostgreSQL database for Dagster's own storage, dropped after the test, as the
    `DAGSTER_PG_*` variables `deploy/dagster.yaml` reads."""
    name = f"ap_dagster_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(PG_ADMIN_URL)
    yield {
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_DB": name,
        "DAGSTER_PG_PORT": str(url.port or 5432),
    }
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# --- time ----------------------------------------------------------------------------------------

#: Where a frozen clock starts: a Wednesday at noon UTC, when forex and crypto both trade, far
#: from midnight.
FROZEN_AT = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


class FrozenClock:
    """The package's one clock (`assets_pipeline.rules.clock`), stopped: every `clock.utcnow()` in this
    process, Dagster runs executed in-process included, answers `now` until the test moves it.
    Subprocesses and the budget (which counts on its store's clock) still read real time."""

    def __init__(self, start: dt.datetime, move: Callable[[dt.datetime], None]) -> None:
        self._now = start
        self._move = move

    @property
    def now(self) -> dt.datetime:
        return self._now

    @property
    def today(self) -> dt.date:
        return self._now.date()

    def move_to(self, moment: dt.datetime) -> dt.datetime:
        self._move(moment)
        self._now = moment.astimezone(dt.UTC)
        return self._now

    def advance(self, seconds: float) -> dt.datetime:
        return self.move_to(self._now + dt.timedelta(seconds=seconds))


@pytest.fixture
def frozen_clock() -> Iterator[FrozenClock]:
    """The clock frozen at `FROZEN_AT` for the test; it moves only when the test moves it."""
    with clock.frozen_at(FROZEN_AT) as move:
        yield FrozenClock(FROZEN_AT, move)


def parse_source(source: str, filename: str = "<source>") -> ast.Module:
    """`ast.parse`, retried on CPython 3.11's spurious "AST constructor recursion depth mismatch"
    (its AST recursion counter is shared by threads, and an earlier test's threads may still be
    running in this worker; fixed in later releases). Any other error is raised at once."""
    for attempt in range(5):
        try:
            return ast.parse(source, filename=filename)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")
