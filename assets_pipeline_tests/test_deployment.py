"""Dagster's documented deployment: its storage in PostgreSQL with dagster-postgres, configured by
`deploy/dagster.yaml`, runs a refresh (the psycopg 3 / NOTIFY clash is avoided by the shipped
scheme), and the instance's settings are the ones the project relies on."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from assets_pipeline_tests.conftest import REPO

DEPLOY = REPO / "deploy" / "dagster.yaml"


@pytest.fixture
def dagster_pg(dagster_pg_env, tmp_path, monkeypatch):
    """A DAGSTER_HOME with the shipped production instance, on a database of the test's own."""
    env = {
        **dagster_pg_env,
        "DAGSTER_HOME": str(tmp_path),
        "ASSETS_PIPELINE_HOME": str(tmp_path / "embedded"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("TRADING_DATABASE_URL", "REDIS_URL", "POLYGON_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "dagster.yaml").write_text(DEPLOY.read_text())
    return dagster_pg_env["DAGSTER_PG_DB"]


def test_a_refresh_runs_on_the_shipped_dagster_postgres_instance(dagster_pg):
    from assets_pipeline.location import build_definitions
    from assets_pipeline.rules.run_kinds import CRITICAL, run_tags

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        job = build_definitions().resolve_job_def("refresh_critical")
        result = job.execute_in_process(instance=instance, tags=run_tags(CRITICAL))
        assert result.success
        stored = instance.get_run_by_id(result.run_id)
        assert stored.status == dg.DagsterRunStatus.SUCCESS
        assert len(result.asset_materializations_for_node("quotes")) == 3
        assert instance.run_monitoring_enabled and instance.run_retries_enabled


def test_the_shipped_instance_keeps_the_projects_run_queue_and_retention():
    settings = yaml.safe_load(DEPLOY.read_text())
    assert settings["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    limits = settings["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "dagster/backfill", "limit": 1} in limits
    assert settings["run_retries"]["retry_on_asset_or_op_failure"] is False
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert settings["run_coordinator"] == local["run_coordinator"]  # the same queue everywhere
    assert settings["run_monitoring"] == local["run_monitoring"]
