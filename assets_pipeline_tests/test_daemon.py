"""The real thing, compressed: the Dagster daemon runs the cadences against the simulator.

5 calls per 10 seconds, the critical tier every 20 seconds, the secondary tiers enqueued at
start-up and drained every 5 seconds, one call per ticker, against the simulator (which answers
429 if the budget is ever exceeded), the real PostgreSQL and Redis.

It asserts what a user relies on, not how fast this machine is: no critical refresh waits for the
budget, the critical tier is refreshed again and again, every secondary symbol is refreshed, and
the budget holds by the simulator's own log. It watches until that has happened (at least a
minute, at most four), so a busy machine only makes it slower. Timings are printed, not asserted;
they belong in `bench/`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from assets_pipeline.config.registry import load_registry
from assets_pipeline.persistence.schema import quote_history, refresh_batches
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline_tests.conftest import REDIS_URL, get_engine, max_in_any_window

LIMIT, WINDOW = 5, 10.0
CRITICAL_EVERY = 20.0
#: Watch at least this long, so the budget is shared through a few critical cycles ...
MIN_OBSERVE_SECONDS = 60.0
#: ... and until every property can be judged, but no longer than this.
MAX_OBSERVE_SECONDS = 240.0
KEY = "daemon-test-key"
CRITICAL = ["XAUUSD", "EURUSD", "BTCUSD"]
SECONDARY = ["ETHUSDT", "GBPUSD", "USDJPY", "XAGUSD", "AUDUSD", "USDCAD"]


def batches(engine):
    """The refresh runs that finished, as recorded in data_sources.refresh_batches."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(refresh_batches).order_by(refresh_batches.c.ended_at)).all()
    return [(row.kind, json.loads(row.updated), row.budget_waits) for row in rows]


def refreshes(rows, kind):
    """How many runs of `kind` stored a new quote for each symbol."""
    counts: dict[str, int] = {}
    for row_kind, updated, _ in rows:
        if row_kind == kind:
            for symbol in updated:
                counts[symbol] = counts.get(symbol, 0) + 1
    return counts


def seen_enough(rows):
    critical, queued = refreshes(rows, "critical"), refreshes(rows, "queue")
    return all(critical.get(s, 0) >= 2 for s in CRITICAL) and all(s in queued for s in SECONDARY)


@pytest.mark.daemon
def test_the_daemon_refreshes_critical_without_waiting_and_drains_secondaries_within_budget(
    tmp_path: Path, pg_url: str, redis_namespace: str
):
    document = yaml.safe_load(Path(load_registry().source).read_text())
    document["tiers"] = {
        "critical": {"refresh": "direct", "every": f"{CRITICAL_EVERY:g}s"},
        # enqueued once at start-up (a sensor cadence fires at once) and not again while we
        # watch: as in production, where they are enqueued every 30 minutes and drain in a few
        "high": {"refresh": "queued", "every": "150s"},
        "medium": {"refresh": "queued", "every": "150s"},
    }
    document["queue"] = {"drain_every": "5s", "max_size": 100, "max_retries": 3}
    document["market_hours"] = {"forex": "always", "index": "always"}  # any weekday
    symbols_file = tmp_path / "symbols.yaml"
    symbols_file.write_text(yaml.safe_dump(document))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        (Path(__file__).resolve().parents[1] / "dagster.yaml").read_text()
    )

    with PolygonSimulator(
        host="127.0.0.1", port=0, rate_limit_calls=LIMIT, rate_limit_window=WINDOW, api_keys={KEY}
    ) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "ASSETS_CONFIG": str(symbols_file),
            "POLYGON_API_KEY": KEY,
            "POLYGON_BASE_URL": sim.url,
            "POLYGON_SNAPSHOT_MODE": "per_ticker",
            "POLYGON_RATE_LIMIT_CALLS": str(LIMIT),
            "POLYGON_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW),
            "TRADING_DATABASE_URL": pg_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_NAMESPACE": redis_namespace,
        }
        daemon = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-daemon"),
                "run",
                "-m",
                "assets_pipeline.definitions",
            ],
            env=env,
            cwd=tmp_path,
            stdout=(tmp_path / "daemon.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        engine = get_engine(pg_url)
        started, watched = time.monotonic(), 0.0
        try:
            while True:
                time.sleep(2)
                watched = time.monotonic() - started
                if watched >= MAX_OBSERVE_SECONDS:
                    break
                if watched >= MIN_OBSERVE_SECONDS and seen_enough(batches(engine)):
                    break
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        requests = [r for r in sim.requests if not r.path.startswith("/_sim")]

    log = (tmp_path / "daemon.log").read_text()
    rows = batches(engine)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(quote_history.c.symbol, quote_history.c.fetched_at)).all()
    # what happened when, for a reader (and bench/), not for an assertion
    first = min((r.at for r in requests), default=0.0)
    timeline: dict[str, list[float]] = {}
    for row in sorted(stored, key=lambda row: row.fetched_at):
        at = row.fetched_at.astimezone(dt.UTC).timestamp() - first
        timeline.setdefault(row.symbol, []).append(round(at, 1))
    calls = [(round(r.at - first, 1), r.path.rsplit("/", 1)[-1], r.status) for r in requests]
    report = f"watched {watched:.0f}s\nstored: {timeline}\ncalls: {calls}\nbatches: {rows}\n"
    (tmp_path / "timeline.txt").write_text(report)
    print(report)

    assert requests, f"the daemon made no call; its log:\n{log[-3000:]}"
    # the budget held, by the simulator's own log: zero 429s, never more than the limit in any
    # window
    assert [r.status for r in requests if r.status != 200] == [], log[-3000:]
    assert max_in_any_window([r.at for r in requests], WINDOW) <= LIMIT

    # no critical refresh ever waited for the budget: the queue left it its reserve
    critical_runs = [(updated, waits) for kind, updated, waits in rows if kind == "critical"]
    assert critical_runs, (rows, log[-3000:])
    assert [waits for _, waits in critical_runs] == [0] * len(critical_runs), rows

    # the critical tier is refreshed again and again (not only at start-up)
    critical = refreshes(rows, "critical")
    assert all(critical.get(s, 0) >= 2 for s in CRITICAL), (critical, rows, log[-2000:])

    # every secondary symbol is refreshed, through the queue
    queued = refreshes(rows, "queue")
    assert sorted(s for s in SECONDARY if s not in queued) == [], (queued, rows, log[-2000:])
