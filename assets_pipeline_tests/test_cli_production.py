"""Every command against a real PostgreSQL and Redis, as in production: the settings' values, not
their names, reach the database and Redis clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline_tests.conftest import REDIS_URL

BIN = Path(sys.executable).parent


@pytest.fixture
def production_env(pg_url, redis_namespace, tmp_path):
    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        env = {
            **os.environ,
            "TRADING_DATABASE_URL": pg_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_NAMESPACE": redis_namespace,
            "POLYGON_BASE_URL": sim.url,
            "POLYGON_API_KEY": "sk-production-like",
            "ASSETS_PIPELINE_HOME": str(tmp_path),
        }
        env.pop("DAGSTER_HOME", None)
        yield env


def command(env, *args):
    return subprocess.run(
        [str(BIN / "assets-pipeline"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_status_relay_and_budget_work_with_postgresql_and_redis_urls(production_env):
    status = command(production_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["budget"]["backend"] == "redis"
    need = doc["budget_need"]  # what the tiers need of the budget, with the arithmetic
    assert need["feasible"] and need["limit"] == 5 and "per 60s window" in need["arithmetic"]
    relay = command(production_env, "relay")
    assert relay.returncode == 0, relay.stderr
    assert relay.stdout.startswith("published 0 event(s)")
    budget = command(production_env, "budget", "--json")
    assert budget.returncode == 0, budget.stderr
    assert json.loads(budget.stdout)["limit"] == 5


def test_refresh_stores_in_postgresql_and_announces_on_redis(production_env):
    done = command(production_env, "run-batch")
    assert done.returncode == 0, done.stderr
    assert "3 of 3 symbol(s) refreshed" in done.stdout
    status = json.loads(command(production_env, "status", "--json").stdout)
    assert status["last_batch"]["kind"] == "critical"
    assert status["budget"]["total_calls"] == 1


def test_a_bad_setting_stops_the_command_with_the_variables_name(production_env):
    broken = {**production_env, "POLYGON_RATE_LIMIT_CALLS": "lots"}
    done = command(broken, "status")
    assert done.returncode == 2
    assert "POLYGON_RATE_LIMIT_CALLS='lots': expected a whole number" in done.stderr
    assert "Traceback" not in done.stderr
