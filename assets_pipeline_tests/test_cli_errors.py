"""How each command fails, read as specifications: the last lines printed (the operation, the
root cause, the fix), the exit code, no traceback without `--verbose`, and no secret."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from assets_pipeline.persistence import migrate
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline_tests.conftest import REPO, always_open_symbols_file

CLOSED = "127.0.0.1:5439"  # nothing listens here
PASSWORD = "hunter2-db"
REDIS_PASSWORD = "hunter2-redis"
WRONG_KEY = "sk-wrong-0123456789"
DB_FIX = "  fix:   start PostgreSQL there, or set TRADING_DATABASE_URL to a database that answers"
REDIS_FIX = "start Redis there, or set REDIS_URL to one that answers"


@pytest.fixture
def env(tmp_path):
    """The embedded defaults in a home of the test's own; the worktree's code on the path."""
    home = tmp_path / "home"
    home.mkdir()
    names = ("TRADING_DATABASE_URL", "REDIS_URL", "POLYGON_API_KEY", "POLYGON_BASE_URL")
    base = {k: v for k, v in os.environ.items() if k not in names and k != "DAGSTER_HOME"}
    return {
        **base,
        "PYTHONPATH": str(REPO),
        "ASSETS_PIPELINE_HOME": str(home),
        "ASSETS_CONFIG": str(always_open_symbols_file(home)),
    }


def run(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "assets_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def last_lines(done, n=3):
    return done.stderr.rstrip("\n").splitlines()[-n:]


def clean(done, *secrets):
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "Stack Trace" not in out and "dagster._core" not in out
    for secret in secrets:
        assert secret not in out


@pytest.fixture
def database_down(env):
    return {**env, "TRADING_DATABASE_URL": f"postgresql://writer:{PASSWORD}@{CLOSED}/trading"}


@pytest.mark.parametrize("command", [["queue", "list"], ["relay"], ["budget"]])
def test_a_database_down_ends_in_its_cause_and_fix(database_down, command):
    done = run(database_down, *command)
    assert done.returncode == 1
    assert last_lines(done) == [
        f"error: {' '.join(command)} failed",
        f"  cause: database {CLOSED} refused the connection",
        DB_FIX,
    ]
    clean(done, PASSWORD)


def test_refresh_with_the_database_down_ends_in_a_paragraph_not_dagster_traces(database_down):
    done = run(database_down, "refresh")
    assert done.returncode == 1
    assert last_lines(done) == [
        "error: refresh failed",
        f"  cause: database {CLOSED} refused the connection",
        DB_FIX,
    ]
    assert len(done.stderr.splitlines()) == 3
    assert done.stdout.rstrip().endswith(
        "The prices are simulated (the embedded simulator: POLYGON_BASE_URL is unset)."
    )
    clean(done, PASSWORD)


def test_verbose_shows_the_trace_and_still_ends_in_the_paragraph(database_down):
    done = run(database_down, "--verbose", "refresh")
    assert done.returncode == 1
    assert "Stack Trace" in done.stderr or "Traceback" in done.stderr
    assert last_lines(done)[0] == "error: refresh failed"
    assert PASSWORD not in done.stdout + done.stderr


def test_status_with_the_database_down_shows_the_rest_and_says_what_is_missing(database_down):
    done = run(database_down, "status")
    assert done.returncode == 1
    assert "priority       " in done.stdout and "next run" in done.stdout
    assert last_lines(done, 2) == [
        f"error: database {CLOSED} refused the connection: the last batch, queue and totals,"
        " the plan, the budget and the providers are not shown",
        DB_FIX.replace("fix:   ", "fix: "),
    ]
    clean(done, PASSWORD)


def test_a_database_not_migrated_says_to_run_migrate(env, empty_pg_url):
    done = run({**env, "TRADING_DATABASE_URL": empty_pg_url}, "refresh")
    assert done.returncode == 1
    cause, fix = last_lines(done, 2)
    assert cause.startswith("  cause: database postgresql+psycopg://")
    assert cause.endswith(f"has no assets_pipeline tables yet (needs {migrate.head()})")
    assert fix == (
        "  fix:   run `assets-pipeline migrate` with TRADING_DATABASE_URL set to it, as the"
        " tables' owner"
    )
    clean(done)


@pytest.fixture
def redis_down(env):
    return {**env, "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6390/0"}


def test_budget_with_redis_down(redis_down):
    done = run(redis_down, "budget")
    assert done.returncode == 1
    assert last_lines(done) == [
        "error: budget failed",
        "  cause: Redis at 127.0.0.1:6390 is unreachable",
        f"  fix:   {REDIS_FIX}",
    ]
    clean(done, REDIS_PASSWORD)


def test_status_with_redis_down_shows_the_database_parts(redis_down):
    done = run(redis_down, "status")
    assert done.returncode == 1
    assert "totals         0 batches" in done.stdout and "budget    " not in done.stdout
    assert last_lines(done, 2) == [
        "error: Redis at 127.0.0.1:6390 is unreachable: the budget is not shown",
        f"  fix: {REDIS_FIX}",
    ]
    clean(done, REDIS_PASSWORD)


def test_a_wrong_key_says_to_set_it_and_counts_the_call(env):
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={"right"}) as sim:
        done = run({**env, "POLYGON_BASE_URL": sim.url, "POLYGON_API_KEY": WRONG_KEY}, "refresh")
    assert done.returncode == 1
    assert "0 of 9 symbol(s) refreshed, 1 API call(s)." in done.stdout
    assert "simulated" not in done.stdout  # a Polygon of its own: not the embedded demo
    assert last_lines(done) == [
        "error: refresh failed",
        "  cause: Polygon refused the API key (HTTP 401: unknown or wrong key)",
        "  fix:   set POLYGON_API_KEY to your key from polygon.io (Dashboard, API Keys)",
    ]
    clean(done, WRONG_KEY)


def test_a_broken_symbols_file_quotes_the_parser_and_the_line(env, tmp_path):
    broken = tmp_path / "symbols.yaml"
    broken.write_text("symbols:\n  - [EURUSD, GBPUSD\n")
    done = run({**env, "ASSETS_CONFIG": str(broken)}, "status")
    assert done.returncode == 2
    assert last_lines(done) == [
        "error: status failed",
        f"  cause: {broken}: not valid YAML: line 3: did not find expected ',' or ']'"
        " (while parsing a flow sequence, line 2)",
        "  fix:   correct the symbols file (ASSETS_CONFIG names it)",
    ]
    clean(done)


def test_a_plan_that_refuses_the_data_says_which_setting_to_change(env):
    # POLYGON_PLAN=paid on a free key: every snapshot is refused, and nothing is learnt
    with PolygonSimulator(host="127.0.0.1", port=0, plan="free") as sim:
        done = run(
            {
                **env,
                "POLYGON_BASE_URL": sim.url,
                "POLYGON_API_KEY": WRONG_KEY,
                "POLYGON_PLAN": "paid",
            },
            "refresh",
            "--tier",
            "critical",
        )
    assert done.returncode == 1
    assert "0 of 3 symbol(s) refreshed" in done.stdout
    assert last_lines(done) == [
        "error: refresh --tier critical failed",
        "  cause: Polygon refused the request: the plan does not include this data (HTTP 403)",
        "  fix:   take the markets your plan lacks out of the symbols file, set POLYGON_PLAN to"
        " the plan you have, or upgrade the plan",
    ]
    clean(done, WRONG_KEY)
