"""The code location is merged from small per-area definitions (`location.py`), and holds exactly
what the one `dg.Definitions` it replaced held: the same assets, checks, jobs, schedules, sensors
and resources, and the in-process executor; since live and history split, each symbol's history
asset and its IO manager too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg

from assets_pipeline.config.settings import VARIABLES, Settings
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
    "providers",
}


def test_the_merged_definitions_hold_what_the_code_location_always_held(registry):
    defs = build_definitions(registry, Settings.from_env())

    assert {key.to_user_string() for key in defs.resolve_all_asset_keys()} == {
        f"{family}/{spec.symbol}" for spec in registry for family in ("quotes", "history")
    }
    checks = {(key.asset_key.path[-1], key.name) for a in defs.assets for key in a.check_keys}
    assert checks == {(spec.symbol, name) for spec in registry for name in CHECKS} | {
        (spec.symbol, "primary_provider") for spec in registry.direct()
    }
    assert {job.name for job in defs.jobs} == JOBS
    assert {schedule.name for schedule in defs.schedules} == SCHEDULES
    assert {sensor.name for sensor in defs.sensors} == SENSORS
    assert set(defs.resources) == RESOURCES
    assert defs.executor is dg.in_process_executor
    dg.Definitions.validate_loadable(defs)


def _load_in_a_new_process(env: dict[str, str]) -> dict[str, object]:
    probe = (
        "import gc, json\n"
        "try:\n"
        "    import assets_pipeline.definitions as d\n"
        "    built = len(list(d.defs.resolve_all_asset_keys()))\n"
        "except Exception as exc:\n"
        "    built = type(exc).__name__\n"
        "print(json.dumps({'built': built, 'collecting': gc.isenabled(),"
        " 'frozen': gc.get_freeze_count()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_code_location_is_built_with_the_collector_paused_then_frozen_and_left_collecting(
    tmp_path,
):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["DAGSTER_HOME"] = str(tmp_path)
    loaded = _load_in_a_new_process(env)
    assert loaded["built"] == 18  # the nine default symbols, live and history
    assert loaded["collecting"] is True
    assert loaded["frozen"] > 100_000  # the definitions, never scanned again

    # a symbols file that cannot load: the import fails, and the collector runs again
    broken = tmp_path / "symbols.yaml"
    broken.write_text("symbols: [\n")
    failed = _load_in_a_new_process({**env, "ASSETS_CONFIG": str(broken)})
    assert failed == {"built": "RegistryError", "collecting": True, "frozen": 0}
