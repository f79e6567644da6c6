"""The Dagster UI, in a real browser: what a user does on `make dev`'s UI lands in the database.

`dagster dev` runs as the README starts it (the project's `dagster.yaml` in a `DAGSTER_HOME` of
the test's own, the webserver and the daemon together), against the test's PostgreSQL database,
Redis namespace and Polygon simulator. Debian's chromium, driven by Playwright, then does what a
user does: reads the asset catalog, filters it to the critical group, materializes its live
quotes, and launches a 3-day backfill of one symbol's history from the Materialize dialog of its
`history / <SYMBOL>` page. Both must succeed, as the UI shows them, their quotes and bars must be
in the trading database, and the symbol's live quote must still be a refresh's.

Marked `daemon` (`dagster dev` runs the daemon in real time; `make test` runs those alone) and
`browser` (`pytest -m browser` runs just this). Timings are not asserted: waits are bounded, and a
step that fails leaves a screenshot in the test's temporary directory, named in the error.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.persistence.schema import price_bars, quote_history
from assets_pipeline.rules import clock
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline_tests.conftest import REDIS_URL, always_open_symbols_file, get_engine
from assets_pipeline_tests.ui.pages import (
    backfill_succeeds,
    browser_page,
    filter_catalog,
    launch_backfill,
    materialize_listed,
    open_asset,
    open_catalog,
    run_succeeds,
    step,
)
from assets_pipeline_tests.ui.server import DagsterDev, dagster_dev, latest_materialization

pytestmark = [pytest.mark.daemon, pytest.mark.browser]

KEY = "ui-test-key"
CRITICAL = ["BTCUSD", "EURUSD", "XAUUSD"]
#: Crypto trades every day, so each backfilled day has bars whatever the weekday.
BACKFILLED = "BTCUSD"
DAYS = 3
#: The backfill's days must stay past days while it is launched and run.
CLEAR_OF_MIDNIGHT = dt.timedelta(minutes=10)


@pytest.fixture
def ui(tmp_path: Path, pg_url: str, redis_namespace: str) -> Iterator[DagsterDev]:
    """`dagster dev` on the test's database, Redis namespace and simulator. The budget is a
    paid plan's, so what the daemon's own cadences spend at start-up never holds the user up."""
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as simulator:
        env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        env.update(
            ASSETS_PIPELINE_HOME=str(tmp_path / "assets_pipeline"),
            ASSETS_CONFIG=str(always_open_symbols_file(tmp_path)),
            POLYGON_API_KEY=KEY,
            POLYGON_BASE_URL=simulator.url,
            POLYGON_RATE_LIMIT_CALLS="100",
            TRADING_DATABASE_URL=pg_url,
            REDIS_URL=REDIS_URL,
            REDIS_NAMESPACE=redis_namespace,
            DAGSTER_DISABLE_TELEMETRY="yes",
        )
        with dagster_dev(tmp_path / "dagster_home", env) as server:
            yield server


def today_clear_of_midnight() -> dt.date:
    """Today (UTC, the package clock), after waiting out midnight if it is near."""
    now = clock.utcnow()
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    if midnight - now < CLEAR_OF_MIDNIGHT:
        time.sleep((midnight - now).total_seconds() + 1)
    return clock.today()


def test_a_user_materializes_the_critical_tier_and_backfills_three_days_from_the_ui(
    ui: DagsterDev, tmp_path: Path, pg_url: str, registry
):
    shots = tmp_path / "screenshots"
    print(f"dagster dev ready: {time.monotonic() - ui.started:.1f} s")
    today = today_clear_of_midnight()
    days = [today - dt.timedelta(days=n) for n in range(DAYS, 0, -1)]
    with browser_page(shots) as page:
        with step(page, "the catalog lists every symbol", shots, ui):
            listed = open_catalog(page, ui, len(registry.symbols))
        assert listed == sorted(f"quotes / {s.symbol}" for s in registry.symbols)

        with step(page, "materialize the critical group's live quotes", shots, ui):
            critical = filter_catalog(page, 'group:"critical"', len(CRITICAL))
            run_id = materialize_listed(page, len(CRITICAL))
        assert critical == [f"quotes / {symbol}" for symbol in CRITICAL]
        with step(page, "the critical run succeeds", shots, ui):
            run_succeeds(page, ui, run_id)

        with step(page, f"launch a {DAYS}-day backfill of {BACKFILLED}'s history", shots, ui):
            open_asset(page, ui, f"history / {BACKFILLED}")
            backfill_id = launch_backfill(page, str(days[0]), str(days[-1]), DAYS)
        with step(page, "the backfill succeeds", shots, ui):
            backfill_runs = backfill_succeeds(page, ui, backfill_id)
        with step(page, f"{BACKFILLED}'s Overview still shows its live quote", shots, ui):
            # the latest is a refresh's (ours, or a cadence's since), never the backfill's
            latest, labels = latest_materialization(ui, f"quotes/{BACKFILLED}")
            assert latest is not None and latest not in backfill_runs
            assert "last_price" in labels and "bars" not in labels

    engine = get_engine(pg_url)
    with engine.connect() as conn:
        live = conn.execute(
            sa.select(
                quote_history.c.symbol, quote_history.c.partition_date, quote_history.c.quote_time
            ).where(quote_history.c.run_id == run_id)
        ).all()
        bars = conn.execute(
            sa.select(price_bars.c.bar_start).where(
                price_bars.c.symbol == BACKFILLED, price_bars.c.run_id.in_(backfill_runs)
            )
        ).scalars()
        bar_days = {start.astimezone(dt.UTC).date() for start in bars}
        backfill_quotes = conn.execute(
            sa.select(sa.func.count()).where(quote_history.c.run_id.in_(backfill_runs))
        ).scalar_one()
    # the run launched from the UI stored a live quote of each critical symbol, under its day
    assert {row.symbol for row in live} == set(CRITICAL)
    assert all(row.partition_date == row.quote_time.astimezone(dt.UTC).date() for row in live)
    # the backfill stored bars of each day it was given, and never a live quote
    assert bar_days == set(days), (bar_days, backfill_runs)
    assert backfill_quotes == 0
