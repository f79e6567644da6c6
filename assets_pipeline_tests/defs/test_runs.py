"""Dead runs: a run in flight past its maximum runtime no longer holds its cadence, even when its
process was killed, and the instance settings (`dagster.yaml`) fail such runs."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from assets_pipeline.rules import clock
from assets_pipeline.rules.run_kinds import CRITICAL, MAX_RUNTIME_TAG, run_tags
from assets_pipeline_tests.conftest import REPO
from assets_pipeline_tests.defs.conftest import create_run_for_test


@pytest.mark.parametrize(
    ("job", "cadence", "kind"),
    [
        # the critical schedule, which skips while a critical refresh is in flight
        ("refresh_critical", "refresh_critical_every_5m", CRITICAL),
        # the queue drain, which skips while a queue batch is in flight
        ("refresh_queue", "refresh_queue_drain", "queue"),
    ],
)
def test_a_run_in_flight_past_its_maximum_runtime_no_longer_holds_its_cadence(
    deployment, job, cadence, kind
):
    deployment.enqueue("enqueue_high_every_30m")
    run = create_run_for_test(deployment.instance, job, dg.DagsterRunStatus.STARTED, run_tags(kind))
    created = deployment.instance.get_run_record_by_id(run.run_id).create_timestamp
    limit = float(run.tags[MAX_RUNTIME_TAG])
    tick = deployment.schedule if cadence.endswith("5m") else deployment.sensor
    with clock.frozen_at(created + dt.timedelta(seconds=limit - 1)):
        assert isinstance(tick(cadence), dg.SkipReason)  # alive: wait for it
    with clock.frozen_at(created + dt.timedelta(seconds=limit + 1)):
        assert isinstance(tick(cadence), dg.RunRequest)  # dead: refresh again


@pytest.mark.slow
def test_after_a_refresh_runs_process_is_killed_the_next_tick_refreshes(deployment, tmp_path):
    # A critical refresh run whose process is killed mid-call stays STARTED in Dagster's storage.
    # Until its maximum runtime the schedule waits for it; after it, the next tick refreshes.
    import os
    import signal
    import subprocess
    import sys
    import time

    from assets_pipeline.simulator import Fault, PolygonSimulator

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    script = (
        "import dagster as dg\n"
        "from assets_pipeline.definitions import defs\n"
        "from assets_pipeline.rules.run_kinds import CRITICAL, run_tags\n"
        "defs.resolve_job_def('refresh_critical').execute_in_process(\n"
        "    instance=dg.DagsterInstance.get(), tags=run_tags(CRITICAL))\n"
    )
    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        sim.add_fault(Fault("timeout", delay=60))  # the call hangs: the run is in flight
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "POLYGON_BASE_URL": sim.url,
            "POLYGON_API_KEY": "k",
            "ASSETS_PIPELINE_HOME": str(tmp_path / "embedded"),
        }
        for name in ("TRADING_DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        worker = subprocess.Popen([sys.executable, "-c", script], env=env)
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                deadline = time.monotonic() + 120
                while not any(r.path.startswith("/v3/snapshot") for r in sim.requests):
                    assert worker.poll() is None and time.monotonic() < deadline
                    time.sleep(0.2)
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()
                (run,) = instance.get_runs()
                assert run.status == dg.DagsterRunStatus.STARTED  # nobody will ever finish it
                deployment.instance = instance
                record = instance.get_run_record_by_id(run.run_id)
                started = dt.datetime.fromtimestamp(record.start_time, dt.UTC)
                with clock.frozen_at(started + dt.timedelta(seconds=60)):
                    assert isinstance(
                        deployment.schedule("refresh_critical_every_5m"), dg.SkipReason
                    )
                with clock.frozen_at(started + dt.timedelta(seconds=301)):
                    request = deployment.schedule("refresh_critical_every_5m")
        finally:
            if worker.poll() is None:
                worker.kill()
    assert isinstance(request, dg.RunRequest)
    assert [k.path[-1] for k in request.asset_selection] == ["XAUUSD", "EURUSD", "BTCUSD"]


def test_the_instance_settings_fail_dead_runs_and_limit_backfills():
    import yaml

    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=settings) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 3600
    limits = settings["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "dagster/backfill", "limit": 1} in limits
