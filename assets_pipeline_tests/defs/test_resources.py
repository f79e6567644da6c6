"""The resources are built once, at load: the local set or the production set, and what a run
config (the launchpad) sets of a resource leaves the deployment's endpoint, key and plan."""

from __future__ import annotations

import urllib.error
import urllib.request

import dagster as dg
import pytest

from assets_pipeline.config.settings import Deployment, Settings
from assets_pipeline.defs.resources import (
    EmbeddedSimulator,
    PolygonApi,
    PolygonBudgetResource,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.location import build_resources


def seen(polygon: PolygonResource, run_config: dict | None = None) -> dict:
    """What an op of a run sees of `polygon`, under `run_config`'s resource config."""
    captured: dict = {}

    @dg.op
    def look(polygon: PolygonResource) -> None:
        captured.update(
            max_retries=polygon.max_retries,
            mode=polygon.mode(),
            plan=polygon.resolved_plan(),
            endpoint=polygon.endpoint(),
            calls=polygon.budget.calls,
        )

    @dg.job(resource_defs={"polygon": polygon})
    def job() -> None:
        look()

    assert job.execute_in_process(run_config=run_config).success
    return captured


def loaded(sqlite_url: str) -> PolygonResource:
    database = TradingDatabase(url=sqlite_url)
    budget = PolygonBudgetResource(calls=7, redis=RedisResource(), database=database)
    api = PolygonApi(
        base_url="http://polygon.test", api_key="k", plan="free", snapshot_mode="per_ticker"
    )
    return PolygonResource(api=api, budget=budget, max_retries=5)


def test_run_config_of_one_field_resets_the_others_but_not_the_deployment(sqlite_url):
    polygon = loaded(sqlite_url)
    assert seen(polygon)["max_retries"] == 5
    changed = seen(polygon, {"resources": {"polygon": {"config": {"plan": "paid"}}}})
    # Dagster's way: run config replaces the resource's config, so a field given at load and
    # not in the run config is back at its default...
    assert changed["max_retries"] == 2
    # ...so the deployment's endpoint, key, plan, mode and budget are nested resources, which
    # run config of `polygon` leaves as loaded; the plan and mode here are only overrides
    assert changed["plan"] == "paid" and changed["mode"] == "per_ticker"
    assert changed["endpoint"] == ("http://polygon.test", "k") and changed["calls"] == 7


def test_a_bad_override_fails_the_run_naming_the_field(sqlite_url):
    with pytest.raises(
        dg.Failure,
        match=r"snapshot_mode='x': not a snapshot mode \(expected one of batch, per_ticker\)",
    ):
        seen(loaded(sqlite_url), {"resources": {"polygon": {"config": {"snapshot_mode": "x"}}}})


@pytest.mark.parametrize(
    ("environ", "deployment"),
    [
        ({}, Deployment.LOCAL),
        ({"POLYGON_BASE_URL": "https://api.polygon.io"}, Deployment.PRODUCTION),
        ({"TRADING_DATABASE_URL": "postgresql://db/trading"}, Deployment.PRODUCTION),
    ],
)
def test_the_set_is_chosen_by_whether_an_external_service_is_set(environ, deployment, tmp_path):
    settings = Settings.from_env({"ASSETS_PIPELINE_HOME": str(tmp_path), **environ})
    assert settings.deployment is deployment
    api = build_resources(settings)["polygon"].api
    assert isinstance(api, EmbeddedSimulator if deployment is Deployment.LOCAL else PolygonApi)


def test_the_local_set_is_the_embedded_file_and_a_simulator_stopped_with_the_run(tmp_path):
    resources = build_resources(Settings.from_env({"ASSETS_PIPELINE_HOME": str(tmp_path)}))
    assert resources["database"].url == f"sqlite:///{tmp_path / 'trading.sqlite'}"
    polygon = resources["polygon"]
    url, key = seen(polygon)["endpoint"]
    with pytest.raises(urllib.error.URLError):  # the run is over: its simulator is gone
        urllib.request.urlopen(f"{url}/v3/snapshot?apiKey={key}", timeout=2)


def test_the_production_set_never_starts_a_simulator(tmp_path):
    settings = Settings.from_env(
        {"ASSETS_PIPELINE_HOME": str(tmp_path), "TRADING_DATABASE_URL": "postgresql://db/t"}
    )
    polygon = build_resources(settings, secrets_as_env_vars=False)["polygon"]
    with pytest.raises(dg.Failure, match="embedded Polygon simulator only serves"):
        polygon.endpoint()


def test_a_run_makes_its_own_engine_and_disposes_of_it(sqlite_url):
    polygon = loaded(sqlite_url)
    engines = []

    @dg.op
    def write(polygon: PolygonResource) -> None:
        engines.append(polygon.budget.database.engine())
        polygon.budget.budget().stats()

    @dg.job(resource_defs={"polygon": polygon})
    def job() -> None:
        write()

    assert job.execute_in_process().success
    (engine,) = engines
    assert engine.pool.checkedin() == 0  # disposed of when the run ended
    assert polygon.budget.database._engine is None  # the loaded resource holds none


def test_a_runs_steps_share_its_quote_store_and_publishing_breaker(sqlite_url):
    # What the package keeps between steps it keeps on the run's resources: the symbol ids a
    # store has learnt, and the breaker that spares the run's later steps a dead Redis's timeout.
    seen = []

    @dg.op
    def step(database: TradingDatabase, redis: RedisResource) -> None:
        seen.append((database.quote_store("ns:"), redis.client().breaker))

    @dg.job(
        resource_defs={
            "database": TradingDatabase(url=sqlite_url),
            "redis": RedisResource(url="redis://127.0.0.1:1/0"),
        }
    )
    def job() -> None:
        step()
        step.alias("again")()

    assert job.execute_in_process().success
    (store, breaker), (store_again, breaker_again) = seen
    assert store is store_again and breaker is breaker_again
    assert job.execute_in_process().success  # the next run starts with its own
    assert seen[2][0] is not store and seen[2][1] is not breaker
