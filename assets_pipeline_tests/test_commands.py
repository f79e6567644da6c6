"""What a user types: the demo refresh, a Dagster CLI materialization, run-batch and status.

The commands run as subprocesses, on the wall clock: a frozen clock does not reach them.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from assets_pipeline.cli import INSTANCE_LOCK_FILE
from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.persistence.quote_store import QuoteStore, as_utc
from assets_pipeline.persistence.schema import quote_history
from assets_pipeline_tests.conftest import always_open_symbols_file, get_engine

BIN = Path(sys.executable).parent
SETTINGS = tuple(v for v in VARIABLES if v != "ASSETS_PIPELINE_HOME")


def fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """A shell with none of our settings: the embedded defaults, in a home of the test's own
    (and markets that never close, so the weekday does not matter)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["ASSETS_PIPELINE_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    env["ASSETS_CONFIG"] = str(always_open_symbols_file(home))
    env.update(extra)
    return env


def test_the_demo_refreshes_every_symbol_on_the_embedded_defaults(tmp_path):
    done = subprocess.run(
        [str(BIN / "assets-pipeline"), "refresh"],
        env=fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SYMBOL"))
    assert lines[header].split() == [
        "SYMBOL",
        "BID",
        "ASK",
        "LAST",
        "DATA",
        "TIME",
        "(UTC)",
        "PROVIDER",
        "RESULT",
    ]  # no API CALLS column: one call serves the batch; the summary line counts the calls
    rows = [line.split() for line in lines[header + 1 : header + 10]]
    assert [r[0] for r in rows] == [
        "XAUUSD",
        "EURUSD",
        "BTCUSD",
        "ETHUSDT",
        "GBPUSD",
        "USDJPY",
        "XAGUSD",
        "AUDUSD",
        "USDCAD",
    ]
    assert all(r[-1] == "stored" for r in rows)
    # each market from its free live provider's simulator: forex and metals from OANDA, crypto
    # from Kraken (whose order book gives BTCUSD a bid and an ask)
    assert {r[0]: r[-2] for r in rows} == {
        **{r[0]: "oanda" for r in rows},
        "BTCUSD": "kraken",
        "ETHUSDT": "kraken",
    }
    assert "-" not in rows[2][1:3]
    # one OANDA pricing call for the seven pairs, Kraken's clock and one ticker call for two
    assert "9 of 9 symbol(s) refreshed, 3 API call(s)." in done.stdout
    assert lines[-1] == (
        "The prices are simulated (the embedded simulator: POLYGON_BASE_URL is unset)."
    )
    assert (tmp_path / "trading.sqlite").exists()
    store = QuoteStore(get_engine(f"sqlite:///{tmp_path / 'trading.sqlite'}"))
    assert store.sync_status("USDCAD")["sync_status"] == "success"


def test_dagster_materializes_in_its_own_run_process_on_the_defaults(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    done = subprocess.run(  # the live quotes have no partition to name
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "assets_pipeline.definitions",
            "--select",
            "quotes/XAUUSD,quotes/BTCUSD",
        ],
        env=fresh_env(tmp_path / "ap", DAGSTER_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    store = QuoteStore(get_engine(f"sqlite:///{tmp_path / 'ap' / 'trading.sqlite'}"))
    assert store.latest_quote("XAUUSD") is not None and store.latest_quote("BTCUSD") is not None
    assert store.latest_quote("EURUSD") is None  # not selected, not fetched
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(quote_history.c.partition_date, quote_history.c.quote_time))
        for day, quote_time in rows:  # each filed under its own data time's day (UTC)
            assert day == as_utc(quote_time).date()


def test_backfill_stores_past_days_bars_in_one_run_and_refuses_today(tmp_path):
    from assets_pipeline.history.store import read_bars
    from assets_pipeline.rules import clock

    env = fresh_env(tmp_path)
    backfill = [str(BIN / "assets-pipeline"), "backfill", "--symbol", "BTCUSD"]
    first, last = clock.today() - dt.timedelta(days=3), clock.today() - dt.timedelta(days=1)
    done = subprocess.run(
        [*backfill, "--from", str(first), "--to", str(last)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["SYMBOL  DAYS  BARS", "BTCUSD  3     864 "]
    assert f"{first} to {last}: 1 of 1 symbol(s) stored." in done.stdout
    engine = get_engine(f"sqlite:///{tmp_path / 'trading.sqlite'}")
    assert len(read_bars(engine, "BTCUSD", [first, last], 300)) == 3 * 288
    assert QuoteStore(engine).latest_quote("BTCUSD") is None  # history is not the live quote
    # today is no history partition: its bars are not complete
    today = subprocess.run(
        [*backfill, "--from", str(first), "--to", str(clock.today())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert today.returncode == 2 and "to " + str(last) + " (yesterday, UTC)" in today.stderr


def test_run_batch_then_status_reports_the_batch_queue_schedules_and_budget(tmp_path):
    env = fresh_env(tmp_path)
    done = subprocess.run(
        [str(BIN / "assets-pipeline"), "run-batch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "3 of 3 symbol(s) refreshed, 3 API call(s)." in done.stdout  # OANDA 1, Kraken 2

    status = subprocess.run(
        [str(BIN / "assets-pipeline"), "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    last = doc["last_batch"]
    assert last["kind"] == "critical" and last["symbols_updated"] == ["XAUUSD", "EURUSD", "BTCUSD"]
    assert last["api_calls"] == 3 and last["symbols_failed"] == {} and last["duration_ms"] >= 0
    assert doc["priority_symbols"] == ["XAUUSD", "EURUSD", "BTCUSD"]
    assert {r["schedule"] for r in doc["next_scheduled_runs"]} == {
        "refresh_critical_every_5m",
        "enqueue_high_every_30m",
        "enqueue_medium_every_30m",
        "check_freshness_every_5m",
    }
    assert doc["queue"]["waiting"] == 0 and doc["queue"]["oldest_item_age_seconds"] is None
    assert doc["totals"]["batches"] == 1 and doc["totals"]["api_calls"] == 3
    budget = doc["budget"]  # Polygon's: the live providers served the critical tier
    assert (budget["limit"], budget["window_seconds"], budget["remaining"]) == (5, 60.0, 5)
    assert budget["total_calls"] == 0 and budget["reset_at"] is None  # nothing to reset
    providers = {row["provider"]: row for row in doc["providers"]}
    assert providers["oanda"]["serving"] == ["EURUSD", "XAUUSD"]
    assert providers["kraken"]["serving"] == ["BTCUSD"]
    assert providers["kraken"]["budget"].startswith("58 of 60 calls left per 60s")
    assert providers["oanda"]["health"] == "circuit closed"
    assert providers["polygon"]["serving"] == []

    table = subprocess.run(
        [str(BIN / "assets-pipeline"), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for label in (
        "last batch",
        "priority       XAUUSD, EURUSD, BTCUSD",
        "next run",
        "queue ",
        "totals         1 batches",
        "budget         5 of 5 calls left per 60s",
        "kraken         public market data (no key) (simulated), live; serves BTCUSD",
        "oanda          practice account (simulated), live; serves EURUSD, XAUUSD",
    ):
        assert label in table.stdout


def test_status_shows_a_running_backfill_and_its_partitions(tmp_path, monkeypatch, registry):
    import dagster as dg

    from assets_pipeline.cli import _status_lines, status_document
    from assets_pipeline.config.settings import Settings
    from assets_pipeline_tests.defs.conftest import create_run_for_test

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in ("TRADING_DATABASE_URL", "REDIS_URL", "POLYGON_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASSETS_PIPELINE_HOME", str(tmp_path / "embedded"))
    tags = {
        "dagster/backfill": "abcdefgh",
        "dagster/asset_partition_range_start": "2025-11-01",
        "dagster/asset_partition_range_end": "2026-10-31",
    }
    with dg.DagsterInstance.get() as instance:
        create_run_for_test(instance, "__ASSET_JOB", dg.DagsterRunStatus.STARTED, tags)
    doc = status_document(registry, Settings.from_env())
    (running,) = doc["running_backfills"]
    assert running["backfill"] == "abcdefgh" and running["partitions"] == "2025-11-01 to 2026-10-31"
    assert any(line.startswith("backfill       abcdefgh started") for line in _status_lines(doc))


def test_status_shows_the_plan_learnt_per_market_and_each_tiers_cadence(
    pg_url, monkeypatch, registry
):
    # a free key on `auto`, once its forex and crypto snapshots were refused (remembered in the
    # budget store): status says so per market, and a critical refresh costs 2 grouped calls
    from assets_pipeline.budget.limiter import PolygonBudget
    from assets_pipeline.budget.sql_store import SqlBudgetStore
    from assets_pipeline.cli import _status_lines, status_document
    from assets_pipeline.config.settings import Settings
    from assets_pipeline.polygon.client import snapshot_feature
    from assets_pipeline.rules.taxonomy import AssetType

    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRADING_DATABASE_URL", pg_url)
    monkeypatch.setenv("POLYGON_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("POLYGON_API_KEY", "unused")
    budget = PolygonBudget(SqlBudgetStore(get_engine(pg_url)), 5, 60)
    for kind in (AssetType.FOREX, AssetType.CRYPTO):
        budget.refuse(snapshot_feature(kind), "403 NOT_AUTHORIZED")

    doc = status_document(registry, Settings.from_env())
    plan = doc["plan"]
    assert (plan["plan"], plan["day_bar_markets"], plan["critical_refresh_calls"]) == (
        "auto",
        ["crypto", "forex"],
        2,
    )
    lines = "\n".join(_status_lines(doc))
    assert "plan auto (learnt from the key's 403s): forex: end-of-day bars" in lines
    assert "a critical refresh costs 2 call(s); that many are kept free for it" in lines
    assert "cadence        critical: one call per market once a session's bar is published" in (
        lines
    )
    # the budget's arithmetic on the plan as learnt: no tier left counting snapshot calls
    assert "critical 2 call(s) once a day on end-of-day bars" in doc["budget_need"]["arithmetic"]
    assert doc["budget_need"]["mode"] == "end-of-day bars"


#: Refreshes started at once on one fresh DAGSTER_HOME (nine failed 1 to 7 of 9 before the lock;
#: each takes seconds of CPU: on a shared 2-core machine six took 80 s, so four run here).
CONCURRENT_REFRESHES = 4


def test_refreshes_started_at_once_on_a_fresh_dagster_home_all_succeed(tmp_path):
    """Dagster creates its SQLite databases when its instance is first opened; commands doing
    that at once failed on each other's half-made schema. They open it under a file lock."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = fresh_env(tmp_path / "ap", DAGSTER_HOME=str(home))
    command = [str(BIN / "assets-pipeline"), "refresh"]
    started = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(CONCURRENT_REFRESHES)
    ]
    done = [(p.wait(timeout=300), *p.communicate()) for p in started]
    failed = [err[-2000:] for code, _, err in done if code != 0]
    assert failed == []
    assert (home / INSTANCE_LOCK_FILE).exists()


def holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (Linux: its /proc/PID/fd links)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except OSError:  # a descriptor closed while looked at
        return False


def test_a_command_opens_dagsters_instance_only_under_its_lock(tmp_path):
    """Deterministic where the race above is not: while the lock is held elsewhere, a refresh
    waits for it and creates none of Dagster's databases; once released, it runs to the end."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    lock = home / INSTANCE_LOCK_FILE
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            [str(BIN / "assets-pipeline"), "refresh"],
            env=fresh_env(tmp_path / "ap", DAGSTER_HOME=str(home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not holds_open(waiting.pid, lock) and waiting.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)
        assert waiting.poll() is None
        assert list(home.rglob("*.db")) == []
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err[-2000:]
    assert list(home.rglob("*.db"))
