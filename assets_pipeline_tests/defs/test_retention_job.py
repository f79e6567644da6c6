"""The pruning job prunes as the command does, with the retention from ASSETS_RETENTION_DAYS
(or the run's own), and its daily schedule starts switched off."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from assets_pipeline.definitions import build_definitions
from assets_pipeline.persistence.batches import BatchResult, recent_batches, record_batch
from assets_pipeline_tests.conftest import get_engine


@pytest.fixture
def old_batches(pg_url, monkeypatch, frozen_clock):
    """Critical batches that ended 3, 10 and 40 days before the frozen now."""
    monkeypatch.setenv("TRADING_DATABASE_URL", pg_url)
    engine = get_engine(pg_url)
    for age in (3, 10, 40):
        ended = frozen_clock.now - dt.timedelta(days=age)
        record_batch(engine, BatchResult(f"c-{age}", "critical", None, ended, ended))
    return engine


def run_prune(registry, instance, **config):
    job = build_definitions(registry).resolve_job_def("prune_old_rows")
    return job.execute_in_process(
        instance=instance,
        run_config={"ops": {"prune_tables": {"config": config}}},
        raise_on_error=False,
    )


def test_the_job_prunes_with_the_retention_of_the_environment(
    old_batches, registry, monkeypatch, dagster_instance
):
    monkeypatch.setenv("ASSETS_RETENTION_DAYS", "7")
    result = run_prune(registry, dagster_instance)
    assert result.success
    assert [b.batch_id for b in recent_batches(old_batches, 10)] == ["c-3"]
    [output] = [e for e in result.all_events if e.is_successful_output]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert metadata["retention"] == "7d" and metadata["dry_run"] is False
    assert metadata["rows/data_sources.refresh_batches"] == 2


def test_a_run_may_set_its_own_age_or_only_count(old_batches, registry, dagster_instance):
    counted = run_prune(registry, dagster_instance, older_than="5d", dry_run=True)
    assert counted.success and len(recent_batches(old_batches, 10)) == 3
    assert run_prune(registry, dagster_instance, older_than="5d").success
    assert [b.batch_id for b in recent_batches(old_batches, 10)] == ["c-3"]


def test_a_bad_age_fails_the_run_naming_it(old_batches, registry, dagster_instance):
    result = run_prune(registry, dagster_instance, older_than="5")
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "older_than: '5' is not an age such as 30d or 36h" in (
        failure.step_failure_data.error.message
    )
    assert len(recent_batches(old_batches, 10)) == 3


def test_the_daily_schedule_starts_switched_off(registry):
    schedule = build_definitions(registry).resolve_schedule_def("prune_old_rows_daily")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (schedule.cron_schedule, schedule.job_name) == ("17 3 * * *", "prune_old_rows")
