"""The code location is merged from small per-area definitions (`location.py`), and holds exactly
what the one `dg.Definitions` it replaced held: the same assets, checks, jobs, schedules, sensors
and resources, and the in-process executor; since live and history split, each symbol's history
asset and its IO manager too."""

from __future__ import annotations

import dagster as dg

from assets_pipeline.config.settings import Settings
from assets_pipeline.location import build_definitions

CHECKS = {"quote_quality", "fresh", "quote_age"}
JOBS = {
    "check_freshness",
    "enqueue_refreshes",
    "prune_old_rows",
    "refresh_critical",
    "refresh_high",
    "refresh_medium",
    "refresh_queue",
    "refresh_quotes",
    "relay_outbox",
}
SCHEDULES = {
    "check_freshness_every_5m",
    "enqueue_high_every_30m",
    "enqueue_medium_every_30m",
    "prune_old_rows_daily",
    "refresh_critical_every_5m",
}
SENSORS = {
    "alert_on_failed_check",
    "alert_on_failed_run",
    "enqueue_overdue_at_start_up",
    "event_outbox_relay",
    "refresh_at_market_open",
    "refresh_critical_at_start_up",
    "refresh_queue_drain",
}
RESOURCES = {
    "polygon",
    "database",
    "redis",
    "quote_io_manager",
    "history_io_manager",
    "alert_webhook",
}


def test_the_merged_definitions_hold_what_the_code_location_always_held(registry):
    defs = build_definitions(registry, Settings.from_env())

    assert {key.to_user_string() for key in defs.resolve_all_asset_keys()} == {
        f"{family}/{spec.symbol}" for spec in registry for family in ("quotes", "history")
    }
    checks = {(key.asset_key.path[-1], key.name) for a in defs.assets for key in a.check_keys}
    assert checks == {(spec.symbol, name) for spec in registry for name in CHECKS}
    assert {job.name for job in defs.jobs} == JOBS
    assert {schedule.name for schedule in defs.schedules} == SCHEDULES
    assert {sensor.name for sensor in defs.sensors} == SENSORS
    assert set(defs.resources) == RESOURCES
    assert defs.executor is dg.in_process_executor
    dg.Definitions.validate_loadable(defs)
