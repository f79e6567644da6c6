"""How the code location is assembled: assets, checks, jobs, schedules, sensors and resources.

`definitions.py` calls `build_definitions()` once for Dagster; the CLI calls it for its own run,
without building the definitions twice.

Secrets (`POLYGON_API_KEY`, and the database and Redis URLs, which may hold passwords) are passed
as `dg.EnvVar` when set, so the UI shows the variable's name and never its value. Unset, each
setting falls back to the embedded default described in `settings.py`.
"""

from __future__ import annotations

import warnings

import dagster as dg

from assets_pipeline.config.registry import Registry, load_registry
from assets_pipeline.config.settings import Settings
from assets_pipeline.defs.alerts import build_check_failure_alert, build_run_failure_alert
from assets_pipeline.defs.assets import build_quote_assets
from assets_pipeline.defs.checks import freshness_job, freshness_schedule
from assets_pipeline.defs.io_manager import QuoteIOManager
from assets_pipeline.defs.jobs import (
    enqueue_job,
    refresh_all_job,
    refresh_queue_job,
    refresh_tier_jobs,
)
from assets_pipeline.defs.keys import QUOTE_IO_MANAGER_KEY
from assets_pipeline.defs.resources import (
    AlertWebhook,
    PolygonBudgetResource,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.defs.retention import prune_daily, prune_old_rows
from assets_pipeline.defs.schedules import (
    build_cadences,
    build_market_open_sensor,
    build_queue_catch_up_sensor,
)
from assets_pipeline.defs.sensors import build_drain_sensor, event_outbox_relay, relay_outbox

# Dagster warns that `owners` is in beta when it binds resources to the jobs of a sensor that
# targets job definitions (the market-open sensor's two jobs), though none is given.
warnings.filterwarnings("ignore", "Parameter `owners`", dg.BetaWarning)


def build_resources(
    settings: Settings | None = None, *, secrets_as_env_vars: bool = True
) -> dict[str, object]:
    """The resources, from the one `Settings`. For the code location secrets are passed as
    `dg.EnvVar`, so the UI shows the variable's name and never its value; the CLI, which uses
    the resources outside Dagster, asks for the values themselves."""
    settings = settings or Settings.from_env()

    def secret(name: str, value: str) -> str | dg.EnvVar:
        return dg.EnvVar(name) if value and secrets_as_env_vars else value

    database = TradingDatabase(url=secret("TRADING_DATABASE_URL", settings.trading_database_url))
    redis = RedisResource(
        url=secret("REDIS_URL", settings.redis_url), namespace=settings.redis_namespace
    )
    budget = PolygonBudgetResource(
        calls=settings.rate_limit_calls,
        window_seconds=settings.rate_limit_window_seconds,
        store=settings.budget_store,
        redis=redis,
        database=database,
    )
    polygon = PolygonResource(
        api_key=secret("POLYGON_API_KEY", settings.polygon_api_key),
        base_url=settings.polygon_base_url,
        snapshot_mode=settings.snapshot_mode,
        plan=settings.polygon_plan,
        budget=budget,
    )
    return {
        "polygon": polygon,
        "database": database,
        "redis": redis,
        QUOTE_IO_MANAGER_KEY: QuoteIOManager(database=database),
        "alert_webhook": AlertWebhook(url=secret("ALERT_WEBHOOK_URL", settings.alert_webhook_url)),
    }


#: What `build_definitions` made in this process: (registry, settings) -> definitions.
_built: list[tuple[Registry, Settings, dg.Definitions]] = []


def build_definitions(
    registry: Registry | None = None, settings: Settings | None = None
) -> dg.Definitions:
    """The code location: every definition, from the symbols file and the settings.

    Built once per process for one registry and one set of settings (the CLI's `run-batch`
    refreshes each direct tier through the same definitions): with thousands of symbols,
    building them is most of a code location's load time.
    """
    settings = settings or Settings.from_env()
    registry = registry or load_registry(settings=settings)
    for built_registry, built_settings, defs in _built:
        if built_registry is registry and built_settings == settings:
            return defs
    defs = _assemble(registry, settings)
    _built[:] = [(registry, settings, defs)]
    return defs


def _assemble(registry: Registry, settings: Settings) -> dg.Definitions:
    schedules, sensors = build_cadences(registry)
    assets = build_quote_assets(registry)
    check_cadence = freshness_schedule(registry)
    if isinstance(check_cadence, dg.ScheduleDefinition):
        schedules.append(check_cadence)
    else:
        sensors.append(check_cadence)
    tier_jobs = refresh_tier_jobs(registry)
    enqueue = enqueue_job(registry)
    jobs = [
        refresh_all_job(registry),
        refresh_queue_job(registry),
        *tier_jobs,
        freshness_job(registry),
    ]
    upkeep = [enqueue, relay_outbox, prune_old_rows]
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs, *upkeep],
        schedules=[*schedules, prune_daily],
        sensors=[
            *sensors,
            build_drain_sensor(registry),
            build_market_open_sensor(registry, [*tier_jobs, enqueue]),
            build_queue_catch_up_sensor(registry),
            event_outbox_relay,
            build_run_failure_alert([*jobs, *upkeep]),
            build_check_failure_alert([key for a in assets for key in a.check_keys]),
        ],
        resources=build_resources(settings),
        # Every job here is one step (one per 250 symbols, see assets.py): running the steps in
        # the run's own process saves starting a Python per step, most of a refresh's cost.
        executor=dg.in_process_executor,
    )
