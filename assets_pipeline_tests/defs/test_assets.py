"""The asset factory: each entry of the symbols file becomes an asset, in its tier's group."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import yaml

from assets_pipeline.config.registry import load_registry
from assets_pipeline_tests.conftest import symbol_entry as entry


def test_adding_a_symbol_is_one_entry_and_it_becomes_an_asset(tmp_path):
    from assets_pipeline.definitions import build_definitions

    document = yaml.safe_load(Path(load_registry().source).read_text())
    document["symbols"].append(
        entry(symbol="NZDUSD", polygon_ticker="C:NZDUSD", tier="low", base_asset="NZD")
    )
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump(document))
    defs = build_definitions(load_registry(path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"quotes/NZDUSD", "history/NZDUSD"} <= keys and len(keys) == 2 * 10
    key = dg.AssetKey(["quotes", "NZDUSD"])
    assert defs.resolve_assets_def(key).specs_by_key[key].group_name == "low"
    history = dg.AssetKey(["history", "NZDUSD"])
    assert defs.resolve_assets_def(history).specs_by_key[history].group_name == "history"


def test_the_live_quote_has_no_partitions_and_history_only_past_days(frozen_clock):
    """Two families per symbol (docs/design/live-and-history.md): `quotes/<SYMBOL>` is the live
    quote, one unpartitioned asset whose latest materialization is the quote now, with its
    checks (a critical one also its provider's); `history/<SYMBOL>` holds past days only, ending yesterday (UTC): today's bars are not
    complete. History has no checks, and a backfill of it is one run."""
    from assets_pipeline.definitions import build_definitions

    defs = build_definitions(load_registry())
    graph = defs.resolve_asset_graph()
    live, past = dg.AssetKey(["quotes", "EURUSD"]), dg.AssetKey(["history", "EURUSD"])
    assert graph.get(live).partitions_def is None
    assert {c.name for c in graph.get_check_keys_for_assets({live})} == {
        "quote_quality",
        "fresh",
        "quote_age",
        "primary_provider",  # a critical symbol's
    }
    days = graph.get(past).partitions_def
    assert isinstance(days, dg.DailyPartitionsDefinition) and days.timezone == "UTC"
    today = frozen_clock.today
    keys = days.get_partition_keys(current_time=frozen_clock.now)
    assert keys[-1] == (today - dt.timedelta(days=1)).isoformat()
    assert today.isoformat() not in keys
    assert graph.get_check_keys_for_assets({past}) == set()
    assert isinstance(graph.get(past).backfill_policy, dg.BackfillPolicy)
    assert graph.get(past).backfill_policy.max_partitions_per_run is None  # single run


def test_every_job_runs_its_one_step_in_the_run_process_with_no_second_python():
    """A run already pays for one Python process (4-5 s to start here); a step process on top
    would double it. Each job is one step (the quotes multi-asset, checks included), so they
    all run in the run's own process."""
    from assets_pipeline.definitions import build_definitions

    defs = build_definitions(load_registry())
    jobs = defs.resolve_all_job_defs()
    for job in jobs:
        assert job.executor_def is dg.in_process_executor, job.name
        # Dagster's implicit asset job (the UI's Materialize) holds each family's one step
        steps = 2 if job.name == "__ASSET_JOB" else 1
        assert len(job.graph.node_defs) == steps, job.name
    asset_jobs = [j for j in jobs if j.name.startswith("refresh_") or j.name == "check_freshness"]
    assert len(asset_jobs) >= 4
    for job in asset_jobs:
        assert [node.name for node in job.graph.node_defs] == ["quotes"], job.name


def test_the_definitions_hold_the_resources_built_from_the_settings_they_were_given():
    from assets_pipeline.config.settings import Settings
    from assets_pipeline.definitions import build_definitions

    registry = load_registry()
    changed = Settings.from_env({**os.environ, "POLYGON_RATE_LIMIT_CALLS": "7"})
    assert build_definitions(registry, changed).resources["polygon"].budget.calls == 7


def test_loading_the_code_location_and_the_cli_leaves_pandas_to_the_history_runs():
    """pandas (with numpy) costs as much to import as a third of Dagster; only a past day's bars
    need it. Loading the location, the CLI and a refresh's code path must not import it, nor the
    exchange calendars (which import pandas: market hours load them on first use)."""
    import subprocess
    import sys

    probe = (
        "import sys, assets_pipeline.definitions as d, assets_pipeline.cli;"
        " d.defs.resolve_asset_graph();"
        " d.defs.resolve_job_def('refresh_quotes');"
        " print(sorted(m for m in ('pandas', 'numpy', 'exchange_calendars') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
