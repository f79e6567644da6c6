"""The documented production deployment (docs/deployment.md), rehearsed: three services on
dagster-postgres.

The commands of its "Three services" block are read from the page and run as they
are (free ports instead of 4000 and 3000, so the test can run beside a deployment): the code
server, the webserver and the daemon, each a process of its own, against a PostgreSQL database
of the test's own for Dagster's storage, a trading database and a Redis namespace of its own,
and the simulator at 5 calls per 10 s. The webserver and the daemon get only Dagster's
variables: the project's settings reach the code server alone, as the page says.

It watches until a schedule has launched a run that succeeded, a sensor too, and three runs
launched at once through the webserver's GraphQL API have succeeded (one or two minutes: the
schedules fire on the minute), and gives up after `MAX_SECONDS` with what it saw. Then the
simulator's log must show no 429 and never more than the limit in any window. Timings are
printed, not asserted.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.simulator import PolygonSimulator
from assets_pipeline_tests.conftest import (
    REDIS_URL,
    REPO,
    always_open_symbols_file,
    max_in_any_window,
)

LIMIT, WINDOW = 5, 10.0
KEY = "services-test-key"
#: How long the whole rehearsal may take before it gives up, saying what it did not see.
MAX_SECONDS = 420.0
PARALLEL_RUNS = 3
SERVICES = ("dagster api grpc", "dagster-webserver", "dagster-daemon run")
DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def readme_commands() -> list[str]:
    """The command lines of the deployment page's "Three services" block, in order."""
    readme = (REPO / "docs" / "deployment.md").read_text()
    section = readme.split("### Three services", 1)
    assert len(section) == 2, "docs/deployment.md has no '### Three services' section"
    block = re.search(r"```bash\n(.*?)```", section[1], re.S)
    assert block, "docs/deployment.md's 'Three services' section has no ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_run_here(line: str, ports: dict[str, int]) -> str:
    """A documented line as this test runs it: this venv's executables, free ports."""
    line = line.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    for readme_port, port in ports.items():
        line = line.replace(f"-p {readme_port}", f"-p {port}")
    return line


class Services:
    """The processes the test started, each in a process group of its own (so the runs the code
    server starts go with it), all stopped on exit whatever happened."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen] = {}
        self.begun = time.monotonic()
        self.timings: dict[str, float] = {}

    def run(self, line: str, env: dict[str, str]) -> None:
        done = subprocess.run(
            ["bash", "-c", line], env=env, cwd=REPO, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"`{line}` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        self.timings[line.replace(f"{Path(sys.executable).parent}/", "")[:30]] = self.elapsed()

    def start(self, name: str, line: str, env: dict[str, str]) -> None:
        self.started[name] = subprocess.Popen(
            ["bash", "-c", f"exec {line}"],
            env=env,
            cwd=REPO,
            stdout=(self.logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.begun

    def check_alive(self) -> None:
        for name, process in self.started.items():
            if process.poll() is not None:
                pytest.fail(f"the {name} exited with {process.returncode}:\n{self.tails()}")

    def tails(self) -> str:
        return "\n".join(
            f"--- {path.name} (last lines)\n{path.read_text()[-1500:]}"
            for path in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Services(logs)
    try:
        yield running
    finally:
        running.stop()


def wait_for(what: str, ready, services: Services, deadline: float, pause: float = 1.0) -> None:
    """Poll `ready()` until it is true; fail, naming `what`, at the deadline or if a service
    died."""
    while not ready():
        services.check_alive()
        if services.elapsed() > deadline:
            pytest.fail(f"gave up after {deadline:.0f}s waiting for {what}\n{services.tails()}")
        time.sleep(pause)
    services.timings[what] = services.elapsed()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def health_check(line: str, env: dict[str, str]) -> bool:
    done = subprocess.run(["bash", "-c", line], env=env, cwd=REPO, capture_output=True, timeout=60)
    return done.returncode == 0


def environments(
    tmp_path: Path, dagster_pg_env: dict[str, str], project: dict[str, str], code_port: int
) -> tuple[dict[str, str], dict[str, str]]:
    """(the code server's environment, the webserver's and the daemon's), from a clean base:
    no setting of the caller's shell leaks in."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES and k[:7] != "DAGSTER"}
    dagster = {**base, **dagster_pg_env, "DAGSTER_HOME": str(home)}
    dagster["DAGSTER_DISABLE_TELEMETRY"] = "yes"
    ui_and_daemon = {
        **dagster,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(code_port),
    }
    return {**dagster, **project}, ui_and_daemon


def project_env(tmp_path: Path, sim_url: str, pg_url: str, redis_namespace: str) -> dict[str, str]:
    """The project's settings for the code server: a minute's critical cadence and freshness
    checks (schedules that fire on the minute), markets that never close."""
    tiers = {"critical": {"refresh": "direct", "every": "1m"}}
    symbols = always_open_symbols_file(tmp_path, tiers=tiers, quality={"check_every": "1m"})
    return {
        "ASSETS_CONFIG": str(symbols),
        "POLYGON_API_KEY": KEY,
        "POLYGON_BASE_URL": sim_url,
        "POLYGON_SNAPSHOT_MODE": "per_ticker",  # 3 calls a critical refresh: the budget is tight
        "POLYGON_RATE_LIMIT_CALLS": str(LIMIT),
        "POLYGON_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW),
        "TRADING_DATABASE_URL": pg_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_NAMESPACE": redis_namespace,
    }


def succeeded(instance: dg.DagsterInstance, tag: str) -> list[dg.DagsterRun]:
    """The successful runs carrying `tag` (Dagster's `dagster/schedule_name`, say)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
    return [run for run in runs if tag in run.tags]


def launched_runs_done(instance: dg.DagsterInstance, run_ids: list[str]) -> bool:
    runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
    return all(run is not None and run.status in DONE for run in runs)


def start_the_services(
    services: Services, lines: list[str], code_env: dict[str, str], ui_env: dict[str, str]
) -> None:
    """The page's block, line by line: set-up commands to completion, then the code server,
    and the webserver and the daemon once it answers its health check."""
    setup = [line for line in lines if not any(service in line for service in SERVICES)]
    for line in setup:
        services.run(line, code_env)
    by_name = {name: next(line for line in lines if name in line) for name in SERVICES}
    services.start("code server", by_name["dagster api grpc"], code_env)
    code_port = by_name["dagster api grpc"].split("-p ")[-1].split()[0]
    check = as_run_here(f".venv/bin/dagster api grpc-health-check -p {code_port}", {})
    wait_for("the code server", lambda: health_check(check, code_env), services, 240)
    services.start("webserver", by_name["dagster-webserver"], ui_env)
    services.start("daemon", by_name["dagster-daemon run"], ui_env)


def failures(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """Why each failed run failed: its step failures' and run failure's messages."""
    kinds = (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE)
    return {
        f"{run.job_name} {run.run_id[:8]}": [
            record.message or record.dagster_event.message or ""
            for record in instance.all_logs(run.run_id)
            if record.dagster_event and record.dagster_event.event_type in kinds
        ]
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    }


@pytest.mark.daemon
def test_the_readme_deployment_runs_schedules_sensors_and_launched_runs_within_the_budget(
    tmp_path: Path,
    pg_url: str,
    redis_namespace: str,
    dagster_pg_env: dict[str, str],
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
):
    from dagster_graphql import DagsterGraphQLClient

    ports = {"4000": free_port(), "3000": free_port()}
    lines = [as_run_here(line, ports) for line in readme_commands()]
    assert [s for s in SERVICES if not any(s in line for line in lines)] == [], lines
    with PolygonSimulator(
        host="127.0.0.1", port=0, rate_limit_calls=LIMIT, rate_limit_window=WINDOW, api_keys={KEY}
    ) as sim:
        project = project_env(tmp_path, sim.url, pg_url, redis_namespace)
        code_env, ui_env = environments(tmp_path, dagster_pg_env, project, ports["4000"])
        start_the_services(services, lines, code_env, ui_env)
        webserver = f"http://127.0.0.1:{ports['3000']}/server_info"
        wait_for("the webserver", lambda: answers(webserver), services, 300)

        client = DagsterGraphQLClient("127.0.0.1", port_number=ports["3000"])
        launched = [
            client.submit_job_execution(
                "refresh_critical", repository_location_name="assets_pipeline"
            )
            for _ in range(PARALLEL_RUNS)
        ]
        services.timings[f"{PARALLEL_RUNS} runs launched"] = services.elapsed()
        for key, value in dagster_pg_env.items():
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.from_config(ui_env["DAGSTER_HOME"]) as instance:
            watch(services, instance, launched)
            runs = [
                (run.job_name, launched_by(run, launched), run.status.value)
                for run in reversed(instance.get_runs())
            ]
            why = failures(instance)
        services.stop()
        calls = [r for r in sim.requests if not r.path.startswith("/_sim")]

    print(f"timings (s since start): { {k: round(v, 1) for k, v in services.timings.items()} }")
    print(f"runs (job, launched by, status): {runs}")
    print(f"{len(calls)} calls: {[(round(r.at - calls[0].at, 1), r.status) for r in calls]}")
    print(f"at most {max_in_any_window([r.at for r in calls], WINDOW)} calls in {WINDOW:g} s")
    # runs still in flight when the test stops are no failure; a failed or canceled one is
    assert [run for run in runs if run[2] in ("FAILURE", "CANCELED")] == [], (
        f"{why}\n{services.tails()}"
    )
    assert [run[2] for run in runs if run[1] == "GraphQL"] == ["SUCCESS"] * PARALLEL_RUNS, runs
    # the budget held across every process, by the simulator's own log
    assert [r.status for r in calls if r.status != 200] == [], services.tails()
    assert max_in_any_window([r.at for r in calls], WINDOW) <= LIMIT
    # the API key reached the simulator (which answers 401 to any other) and no file: no log of
    # a service or a run, nothing in Dagster's home
    assert files_quoting(KEY.encode(), tmp_path) == []


def files_quoting(secret: bytes, root: Path) -> list[str]:
    """The files under `root` (the services' logs, Dagster's home, its runs' compute logs) that
    hold `secret`."""
    return [str(path) for path in root.rglob("*") if path.is_file() and secret in path.read_bytes()]


def launched_by(run: dg.DagsterRun, launched: list[str]) -> str:
    if run.run_id in launched:
        return "GraphQL"
    return run.tags.get("dagster/schedule_name") or run.tags.get("dagster/sensor_name") or "?"


def watch(services: Services, instance: dg.DagsterInstance, launched: list[str]) -> None:
    """Until a schedule's run and a sensor's run have succeeded and the launched runs are done."""
    wait_for(
        "a sensor's run to succeed",
        lambda: succeeded(instance, "dagster/sensor_name"),
        services,
        MAX_SECONDS,
        2.0,
    )
    wait_for(
        "the launched runs to finish",
        lambda: launched_runs_done(instance, launched),
        services,
        MAX_SECONDS,
        2.0,
    )
    wait_for(
        "a schedule's run to succeed",
        lambda: succeeded(instance, "dagster/schedule_name"),
        services,
        MAX_SECONDS,
        2.0,
    )
