"""Alerts, against a real HTTP receiver on loopback and the real PostgreSQL: a failed refresh run
posts one alert naming its symbols and first error; a symbol whose `fresh` check turns stale posts
one alert per failure, judged by the sensor from the database whether or not the checks ran; a
webhook that fails or hangs is logged, without its URL, and the next tick tries again.

Runs are real (in-process, on the shared Dagster instance) and the sensors are evaluated as the
daemon evaluates them (`evaluate_tick`, cursor carried from tick to tick), so the dedupe under
test is the one production uses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from assets_pipeline.definitions import build_definitions
from assets_pipeline.defs.alerts import job_symbols
from assets_pipeline.defs.keys import quote_asset_key
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.rules.run_kinds import CRITICAL, run_tags
from assets_pipeline.simulator import Fault, PolygonSimulator
from assets_pipeline_tests.conftest import get_engine, quote

KEY = "alerts-key"
#: The webhook's secret: its path, as in a chat service's incoming-webhook URL.
TOKEN = "T0KEN-b7e1c9d2-DO-NOT-LEAK"


class Receiver:
    """An HTTP server on a free loopback port that records each POSTed JSON body. `answer` is
    the status it replies with; while `hang` is set it holds every request unanswered."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.answer = 200
        self.hang = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server calls it by this name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hang.is_set():
                    receiver.release.wait(30)
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(receiver.answer)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def sim():
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as simulator:
        yield simulator


@pytest.fixture
def deployment(monkeypatch, pg_url, sim, receiver, registry, dagster_instance):
    """The code location on a database of the test's own, the simulator, no Redis, and the
    webhook pointed at the receiver."""
    for name, value in {
        "POLYGON_API_KEY": KEY,
        "POLYGON_BASE_URL": sim.url,
        "POLYGON_RATE_LIMIT_CALLS": "100",
        "TRADING_DATABASE_URL": pg_url,
        "ALERT_WEBHOOK_URL": receiver.url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return build_definitions(registry)


class Sensor:
    """A sensor ticking as the daemon ticks it: each tick starts from the last one's cursor."""

    def __init__(self, defs: dg.Definitions, name: str, instance: dg.DagsterInstance) -> None:
        self.sensor = defs.resolve_sensor_def(name)
        self.resources = {
            "alert_webhook": defs.resources["alert_webhook"],
            "database": defs.resources["database"],
        }
        self.instance = instance
        self.cursor: str | None = None
        self.reasons: list[str] = []

    def tick(self) -> None:
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as context:
            data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        self.reasons.append(data.skip_message or "")


def run_critical(defs, instance, **selection):
    """A real refresh of the critical tier, tagged as its schedule tags it."""
    return defs.resolve_job_def("refresh_critical").execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags=run_tags(CRITICAL, tier="critical"),
        **selection,
    )


def test_a_failed_refresh_run_alerts_once_naming_its_symbols_and_first_error(
    deployment, sim, receiver, dagster_instance
):
    sensor = Sensor(deployment, "alert_on_failed_run", dagster_instance)
    sensor.tick()  # the first tick starts the cursor at the newest run event
    fine = run_critical(deployment, dagster_instance)
    assert fine.success
    sim.add_fault(Fault("unknown", ticker="C:EURUSD"))  # Polygon does not know it: never retried
    failed = run_critical(deployment, dagster_instance)
    assert not failed.success

    sensor.tick()
    sensor.tick()  # the same failure, seen again: no second alert

    assert len(receiver.bodies) == 1
    alert = receiver.bodies[0]
    assert alert["alert"] == "run_failed"
    assert (alert["job"], alert["run_id"]) == ("refresh_critical", failed.run_id)
    assert alert["kind"] == "critical" and alert["partition"] == failed.dagster_run.tags.get(
        "dagster/partition"
    )
    assert alert["symbols"] == ["BTCUSD", "EURUSD", "XAUUSD"]
    # each failed symbol's error, as the run's batch recorded it, and the batch's result tag
    assert alert["error"].startswith("EURUSD: ") and "C:EURUSD" in alert["error"]
    assert alert["result"].startswith("2 updated, 1 failed, ")
    assert alert["link"] == f"/runs/{failed.run_id}"


def test_a_failed_run_of_a_selection_names_the_symbols_it_selected_not_its_jobs(
    deployment, sim, receiver, dagster_instance
):
    sensor = Sensor(deployment, "alert_on_failed_run", dagster_instance)
    sensor.tick()
    sim.add_fault(Fault("unknown", ticker="C:EURUSD"))
    failed = run_critical(deployment, dagster_instance, asset_selection=[quote_asset_key("EURUSD")])
    assert not failed.success

    sensor.tick()

    [alert] = receiver.bodies
    assert alert["run_id"] == failed.run_id and alert["symbols"] == ["EURUSD"]


def test_each_job_that_refreshes_or_checks_quotes_knows_its_symbols_without_the_asset_graph(
    deployment, registry
):
    names = {job.name for job in deployment.jobs}
    by_job = job_symbols(registry)
    assert set(by_job) == {n for n in names if n.startswith("refresh_")} | {"check_freshness"}
    assert by_job["refresh_critical"] == ["XAUUSD", "EURUSD", "BTCUSD"]
    assert len(by_job["refresh_quotes"]) == len(list(registry))


def write_quotes(pg_url, registry, at, symbols):
    store = QuoteStore(get_engine(pg_url))
    for symbol in symbols:
        spec = registry.get(symbol)
        store.write_quote(spec, quote(symbol, spec.polygon_ticker, at))


def check_freshness(defs, instance):
    result = defs.resolve_job_def("check_freshness").execute_in_process(instance=instance)
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def test_a_stale_critical_symbol_alerts_once_though_the_checks_never_ran(
    deployment, pg_url, registry, receiver, dagster_instance, frozen_clock
):
    sensor = Sensor(deployment, "alert_on_failed_check", dagster_instance)
    now = frozen_clock.now
    others = [s.symbol for s in registry if s.symbol not in ("EURUSD", "GBPUSD")]
    write_quotes(pg_url, registry, now, others)
    # GBPUSD fetched just now, but its quote is 25 minutes old: past quote_age's 20 minutes (a
    # WARN, never alerted), inside its tier's 32 before it is stale
    spec = registry.get("GBPUSD")
    lagging = quote("GBPUSD", spec.polygon_ticker, now - dt.timedelta(minutes=25))
    QuoteStore(get_engine(pg_url)).write_quote(spec, lagging)
    # EURUSD, critical, was never refreshed: stale. The check job is never run here.

    sensor.tick()

    [alert] = receiver.bodies
    assert alert["alert"] == "checks_failed" and alert["symbols"] == ["EURUSD"]
    assert alert["checks"] == [
        {
            "asset": "quotes/EURUSD",
            "symbol": "EURUSD",
            "check": "fresh",
            "severity": "ERROR",
            "description": "EURUSD: no price yet while its market trades",
            "evaluated_at": "2026-11-25T12:00:00.000000Z",
            "link": "/assets/quotes/EURUSD?view=checks&checkDetail=fresh",
        }
    ]
    assert sensor.cursor == '["quotes/EURUSD:fresh"]'


def test_a_symbol_stale_on_every_tick_does_not_alert_again(
    deployment, pg_url, registry, receiver, dagster_instance, frozen_clock
):
    sensor = Sensor(deployment, "alert_on_failed_check", dagster_instance)
    write_quotes(pg_url, registry, frozen_clock.now, [s.symbol for s in registry][1:])
    sensor.tick()
    check_freshness(deployment, dagster_instance)  # the checks agree, and change nothing here
    frozen_clock.advance(60)
    sensor.tick()
    sensor.tick()

    assert len(receiver.bodies) == 1
    assert (
        sensor.reasons[1:] == ["no newly failing ERROR check (1 still failing, alerted before)"] * 2
    )


def test_a_symbol_that_recovers_then_turns_stale_alerts_again(
    deployment, pg_url, registry, receiver, dagster_instance, frozen_clock
):
    sensor = Sensor(deployment, "alert_on_failed_check", dagster_instance)
    everyone = [s.symbol for s in registry]
    write_quotes(pg_url, registry, frozen_clock.now, [s for s in everyone if s != "EURUSD"])
    sensor.tick()  # EURUSD never refreshed: alerted
    write_quotes(pg_url, registry, frozen_clock.advance(1), ["EURUSD"])
    sensor.tick()  # every check passes: nothing to say, EURUSD's failure is over
    assert len(receiver.bodies) == 1 and sensor.cursor == "[]"

    stale_after = registry.stale_after(registry.get("EURUSD").tier)
    frozen_clock.advance(stale_after + 1)
    sensor.tick()

    assert len(receiver.bodies) == 2
    assert "EURUSD" in receiver.bodies[1]["symbols"]


def test_a_failed_post_leaves_the_symbol_unalerted_and_the_next_tick_delivers_it(
    deployment, pg_url, registry, receiver, dagster_instance, frozen_clock
):
    sensor = Sensor(deployment, "alert_on_failed_check", dagster_instance)
    write_quotes(pg_url, registry, frozen_clock.now, [s.symbol for s in registry][1:])
    receiver.answer = 500
    sensor.tick()
    assert sensor.cursor == "[]"
    assert "not alerted (the webhook failed); next tick retries" in sensor.reasons[-1]

    receiver.answer = 200
    sensor.tick()

    assert len(receiver.bodies) == 2  # the refused POST, then the delivered one
    assert receiver.bodies[0] == receiver.bodies[1]
    assert sensor.cursor == json.dumps([f"quotes/{next(iter(registry)).symbol}:fresh"])


def everything_said(caplog, capsys, sensor, defs) -> str:
    out = capsys.readouterr()
    resources = repr(defs.resources) + json.dumps(
        defs.get_repository_def().get_sensor_def(sensor.sensor.name).metadata, default=str
    )
    return "\n".join(
        [caplog.text, out.out, out.err, *sensor.reasons, sensor.cursor or "", resources]
    )


@pytest.mark.parametrize(
    "trouble, logged",
    [
        ("answers 500", "answered HTTP 500"),
        ("hangs", "did not answer within 0.5s"),
        ("is down", "could not be reached (ConnectionRefusedError)"),
    ],
)
def test_a_failing_webhook_is_logged_without_its_url_and_the_sensor_goes_on(
    trouble, logged, deployment, pg_url, registry, receiver, dagster_instance, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    sensor = Sensor(deployment, "alert_on_failed_check", dagster_instance)
    sensor.resources = {
        **sensor.resources,
        "alert_webhook": type(deployment.resources["alert_webhook"])(
            url=dg.EnvVar("ALERT_WEBHOOK_URL"), timeout_seconds=0.5
        ),
    }
    if trouble == "answers 500":
        receiver.answer = 500
    elif trouble == "hangs":
        receiver.hang.set()
    else:
        receiver.__exit__()
    # nothing was ever refreshed: every symbol is stale

    sensor.tick()
    sensor.tick()  # not delivered: the next tick tries again

    said = everything_said(caplog, capsys, sensor, deployment)
    assert said.count(logged) == 2
    assert "not alerted (the webhook failed); next tick retries" in sensor.reasons[-1]
    assert TOKEN not in said and receiver.url not in said
    assert sensor.cursor == "[]"  # nothing counted as alerted


def test_with_the_webhook_unset_neither_sensor_sends_anything_and_the_tick_says_why(
    deployment, monkeypatch, registry, sim, receiver, dagster_instance, caplog, capsys
):
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("ALERT_WEBHOOK_URL")
    defs = build_definitions(registry)
    checks = Sensor(defs, "alert_on_failed_check", dagster_instance)
    runs = Sensor(defs, "alert_on_failed_run", dagster_instance)
    runs.tick()
    sim.add_fault(Fault("unknown", ticker="C:EURUSD"))
    assert not run_critical(defs, dagster_instance).success

    checks.tick()  # nothing was ever refreshed: every symbol is stale
    runs.tick()

    assert checks.reasons == ["ALERT_WEBHOOK_URL is not set: no alert is sent"]
    said = caplog.text + capsys.readouterr().err
    assert "failed; ALERT_WEBHOOK_URL is not set: no alert is sent" in said
    assert receiver.bodies == []
