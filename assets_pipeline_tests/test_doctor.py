"""`assets-pipeline doctor`: one line per check, a mark, what it found and the fix; exit 0 only
when nothing FAILed. The command runs as a subprocess, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from assets_pipeline.config.settings import Settings
from assets_pipeline.doctor import FAIL, OK, WARN, dagster_check, mask_key, mask_url
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline_tests.conftest import REDIS_URL, REPO
from assets_pipeline_tests.test_commands import fresh_env

CHECKS = [
    "settings",
    "database",
    "redis",
    "budget",
    "symbols",
    "feasibility",
    "plan",
    "providers",
    "dagster",
]
PASSWORD = "hunter2-not-for-print"
KEY = "sk-doctor-right-key"


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "assets_pipeline.cli", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def checks_of(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, str]], str]:
    """(exit code, each check by name, all the output) of `doctor --json`."""
    done = doctor(env, "--json", *args)
    doc = json.loads(done.stdout)
    assert doc["ok"] is (done.returncode == 0)
    return done.returncode, {c["check"]: c for c in doc["checks"]}, done.stdout + done.stderr


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_all_green_on_the_embedded_defaults(tmp_path):
    done = doctor(fresh_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    marks = {line.split()[1]: line.split()[0] for line in lines if line[:4].strip()}
    assert [name for name in marks if name in CHECKS] == CHECKS
    assert {marks[name] for name in CHECKS} == {OK}
    assert "fix:" not in done.stdout
    assert "defaults in use: embedded database, simulator, no Redis" in done.stdout
    assert "POLYGON_API_KEY: not set" in done.stdout
    assert "DAGSTER_HOME not set" in done.stdout and ".dagster_home" in done.stdout
    assert lines[-1] == "all checks hold"
    code, checks, _ = checks_of(fresh_env(tmp_path))
    assert code == 0 and list(checks) == CHECKS
    assert "9 symbols (critical 3, high 3, medium 3)" in checks["symbols"]["found"]
    assert "fits within the budget of 5" in checks["feasibility"]["found"]
    assert checks["budget"]["found"].startswith("database (sqlite): ")
    assert "forex: snapshots" in checks["plan"]["found"]


def test_a_database_on_a_closed_port_fails_its_line_and_the_others_are_still_reported(tmp_path):
    port = closed_port()
    env = fresh_env(
        tmp_path,
        TRADING_DATABASE_URL=f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/trading",
        POLYGON_BASE_URL="https://api.polygon.io",
        POLYGON_API_KEY=KEY,
    )
    done = doctor(env)
    assert done.returncode == 1
    database = next(i for i, line in enumerate(done.stdout.splitlines()) if " database " in line)
    line, fix = done.stdout.splitlines()[database : database + 2]
    assert line.startswith("FAIL") and f"127.0.0.1:{port}" in line
    assert fix.strip().startswith("fix:") and "TRADING_DATABASE_URL" in fix
    code, checks, output = checks_of(env)
    assert code == 1 and list(checks) == CHECKS
    assert {name: checks[name]["mark"] for name in ("redis", "symbols", "feasibility")} == {
        "redis": OK,
        "symbols": OK,
        "feasibility": OK,
    }
    assert checks["dagster"]["mark"] == OK
    assert checks["budget"]["mark"] == FAIL  # kept in that database
    assert "app:***@127.0.0.1" in checks["settings"]["found"]
    assert "set (…-key)" in checks["settings"]["found"]
    for shown in (done.stdout + done.stderr, output):
        assert PASSWORD not in shown and KEY not in shown


def test_a_database_not_migrated_fails_with_the_command_to_run(tmp_path, empty_pg_url):
    env = fresh_env(
        tmp_path,
        TRADING_DATABASE_URL=empty_pg_url,
        POLYGON_BASE_URL="https://api.polygon.io",
        POLYGON_API_KEY=KEY,
    )
    code, checks, _ = checks_of(env)
    assert code == 1
    assert checks["database"]["mark"] == FAIL
    assert "no assets_pipeline tables yet" in checks["database"]["found"]
    assert checks["database"]["fix"].startswith("assets-pipeline migrate")


def production_env(
    tmp_path: Path, pg_url: str, namespace: str, sim: PolygonSimulator, **extra: str
) -> dict[str, str]:
    """The production set on this machine's PostgreSQL and Redis, Polygon the simulator."""
    return fresh_env(
        tmp_path,
        TRADING_DATABASE_URL=pg_url,
        REDIS_URL=REDIS_URL,
        REDIS_NAMESPACE=namespace,
        POLYGON_BASE_URL=sim.url,
        POLYGON_API_KEY=KEY,
        **extra,
    )


def test_postgresql_and_redis_reachable_and_migrated(tmp_path, pg_url, redis_namespace):
    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        env = production_env(tmp_path, pg_url, redis_namespace, sim)
        code, checks, _ = checks_of(env)
    assert code == 0, checks
    assert "reachable, at revision" in checks["database"]["found"]
    assert checks["redis"]["found"] == "reachable at 127.0.0.1:6379"
    assert checks["budget"]["found"].startswith("redis: 5 of 5 calls left per 60s")


def test_providers_not_configured_in_production_warn_with_the_variables_to_set(
    tmp_path, pg_url, redis_namespace
):
    """Production asks only the providers it was given: without Kraken, Bitstamp or OANDA the
    forex and crypto symbols fall to Polygon's day bars, and the providers line says how to
    give them a live source."""
    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        env = production_env(tmp_path, pg_url, redis_namespace, sim)
        code, checks, _ = checks_of(env)
    line = checks["providers"]
    assert code == 0 and line["mark"] == WARN
    assert "kraken not configured" in line["found"] and "oanda not configured" in line["found"]
    assert (
        "KRAKEN_BASE_URL" in line["fix"] and "OANDA_API_TOKEN and OANDA_ACCOUNT_ID" in line["fix"]
    )
    assert line["fix"].startswith("XAUUSD, EURUSD, BTCUSD")


def test_the_providers_line_lists_each_ones_budget_health_and_symbols_never_a_token(
    tmp_path, pg_url, redis_namespace
):
    from assets_pipeline.simulator.oanda import DEFAULT_ACCOUNT, DEFAULT_TOKEN, OandaSimulator

    with PolygonSimulator(host="127.0.0.1", port=0) as sim, OandaSimulator(port=0) as oanda:
        env = production_env(
            tmp_path,
            pg_url,
            redis_namespace,
            sim,
            OANDA_BASE_URL=oanda.url,
            OANDA_API_TOKEN=DEFAULT_TOKEN,
            OANDA_ACCOUNT_ID=DEFAULT_ACCOUNT,
        )
        _, checks, output = checks_of(env)
    found = checks["providers"]["found"]
    assert "oanda practice account, live, budget 2 of 2 calls left per 1s, circuit closed" in found
    assert "polygon plan auto" in found and "budget 5 of 5 calls left per 60s" in found
    assert DEFAULT_TOKEN not in output


def test_redis_on_a_closed_port_fails_naming_redis(tmp_path):
    port = closed_port()
    env = fresh_env(tmp_path, REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    code, checks, output = checks_of(env)
    assert code == 1
    assert checks["redis"]["mark"] == FAIL
    assert f"Redis at 127.0.0.1:{port}" in checks["redis"]["found"]
    assert "unset REDIS_URL" in checks["redis"]["fix"]
    assert checks["budget"]["mark"] == FAIL  # the budget is kept in Redis when it is set
    assert checks["plan"]["mark"] == WARN  # what was learnt cannot be read; nothing is guessed
    assert checks["database"]["mark"] == OK and checks["symbols"]["mark"] == OK
    assert PASSWORD not in output


def test_a_broken_symbols_file_fails_naming_the_file_and_the_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("symbols:\n  - symbol: EURUSD\n    tier: [critical\n    name: x\n")
    code, checks, _ = checks_of(fresh_env(tmp_path, ASSETS_CONFIG=str(broken)))
    assert code == 1
    symbols = checks["symbols"]
    assert symbols["mark"] == FAIL
    assert symbols["found"] == (
        f"{broken}: line 4, column 9: not valid YAML: did not find expected ',' or ']'"
        " (while parsing a flow sequence begun on line 3, column 11)"
    )
    assert "unset ASSETS_CONFIG" in symbols["fix"]
    assert checks["feasibility"]["mark"] == WARN  # not checked without a symbols file
    assert checks["database"]["mark"] == OK


def test_a_budget_the_symbols_cannot_fit_in_fails_with_the_arithmetic(tmp_path):
    env = fresh_env(
        tmp_path,
        POLYGON_SNAPSHOT_MODE="per_ticker",
        POLYGON_RATE_LIMIT_CALLS="2",
        POLYGON_RATE_LIMIT_WINDOW_SECONDS="600",
    )
    code, checks, _ = checks_of(env)
    assert code == 1
    feasibility = checks["feasibility"]
    assert feasibility["mark"] == FAIL, feasibility
    assert "is more than the budget of 2" in feasibility["found"]
    assert "POLYGON_RATE_LIMIT_CALLS" in feasibility["fix"]
    assert checks["symbols"]["mark"] == OK  # the file itself is valid
    code, checks, _ = checks_of({**env, "POLYGON_BUDGET_CHECK": "warn"})
    assert checks["feasibility"]["mark"] == WARN


def test_a_refused_setting_fails_its_line_and_the_others_run_on_its_default(tmp_path):
    code, checks, _ = checks_of(fresh_env(tmp_path, POLYGON_PLAN="gold"))
    assert code == 1
    assert checks["settings"]["mark"] == FAIL
    assert "POLYGON_PLAN='gold'" in checks["settings"]["found"]
    assert checks["symbols"]["mark"] == OK and checks["dagster"]["mark"] == OK


def test_probe_with_a_wrong_key_says_the_key_is_wrong(tmp_path):
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as sim:
        env = fresh_env(tmp_path, POLYGON_BASE_URL=sim.url, POLYGON_API_KEY="sk-wrong-key-1234")
        code, checks, output = checks_of(env, "--probe")
        assert code == 1
        assert checks["key"]["mark"] == FAIL
        assert checks["key"]["found"].startswith("the key is wrong")
        assert checks["key"]["fix"] == "set POLYGON_API_KEY"
        assert "sk-wrong-key-1234" not in output
        code, checks, _ = checks_of({**env, "POLYGON_API_KEY": KEY}, "--probe")
        assert code == 0, checks
        assert checks["key"]["mark"] == OK and "1 call spent" in checks["key"]["found"]
        assert [r.path for r in sim.requests] == ["/v2/aggs/ticker/C:XAUUSD/prev"] * 2
    _, checks, _ = checks_of(env)
    assert "key" not in checks  # without --probe no call is spent


def test_secrets_are_masked():
    assert mask_key("") == "not set"
    assert mask_key("abcdefghijkl") == "set (…ijkl)"
    assert mask_url("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert mask_url("redis://:pw@cache:6379/0?password=pw") == "redis://:***@cache:6379/0?…"
    assert mask_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_dagster_instance_storage(tmp_path):
    def check(**environ: str):
        return dagster_check(Settings.from_env(environ), environ)

    missing = check(DAGSTER_HOME=str(tmp_path / "nowhere"))
    assert missing.mark == FAIL and "is not a directory" in missing.found
    assert check(DAGSTER_HOME=str(tmp_path)).mark == WARN  # no dagster.yaml: Dagster's defaults
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    local = check(DAGSTER_HOME=str(tmp_path))
    assert local.mark == OK and "storage SQLite" in local.found
    (tmp_path / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    port = closed_port()
    down = check(DAGSTER_HOME=str(tmp_path), DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(port))
    assert down.mark == FAIL and f"PostgreSQL at 127.0.0.1:{port}" in down.found
    up = check(DAGSTER_HOME=str(tmp_path), DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT="5432")
    assert up.mark == OK and "(reachable)" in up.found


def test_the_readme_lists_the_command():
    assert "assets-pipeline doctor" in Path(REPO / "README.md").read_text()
